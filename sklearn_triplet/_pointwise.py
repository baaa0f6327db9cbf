"""PointwiseTransformer: a transformer of points applied to every point of pairs and triplets."""

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._validation import HasMethods, check_array, fit_context, invalid


class PointwiseTransformer(TransformerMixin, BaseEstimator):
    """Fit a transformer on the points of pairs or triplets, and apply it to each point.

    scikit-learn's transformers read one sample per row, ``(n_samples, n_features)``; the
    estimators that learn from given tuples read ``(n_tuples, k, n_features)``, the features of the
    ``k`` points of each pair (``k = 2``) or triplet (``k = 3``). This step stands in front of them
    in a :class:`~sklearn.pipeline.Pipeline`: ``fit`` fits a clone of ``transformer`` on the points
    of the training tuples (a point in several tuples counts once per tuple), ``transform`` applies
    it to each point of each tuple, and to single points ``(n_samples, n_features)``, which is what
    the embedder's ``transform`` embeds. So a grid search fits the scaler on the training folds'
    tuples only.

    When ``X`` holds integer index tuples into the embedder's ``points``, transform the points
    themselves instead, once: ``PairEmbedder(points=StandardScaler().fit_transform(points))``.

    Parameters
    ----------
    transformer : estimator with ``fit`` and ``transform``
        Applied point by point, e.g. :class:`~sklearn.preprocessing.StandardScaler` or
        :class:`~sklearn.impute.SimpleImputer`. It is fitted without ``y``: the labels of tuples
        are not labels of points.

    Attributes
    ----------
    transformer_ : estimator
        The fitted clone of ``transformer``.
    n_features_in_ : int
        Number of features of a point.

    See Also
    --------
    PairEmbedder : Learns from pairs labelled similar or dissimilar.
    ComparisonEmbedder : Learns from triplets "a is more like b than like c".

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_triplet import PairEmbedder, PointwiseTransformer
    >>> rng = np.random.default_rng(0)
    >>> pairs = rng.normal(loc=50, scale=10, size=(200, 2, 5))  # (n_pairs, 2, n_features)
    >>> scaler = PointwiseTransformer(StandardScaler()).fit(pairs)
    >>> scaler.transform(pairs).shape
    (200, 2, 5)
    >>> y = np.where(rng.random(200) < 0.5, 1, -1)
    >>> model = make_pipeline(
    ...     PointwiseTransformer(StandardScaler()),
    ...     PairEmbedder(n_components=2, max_iter=2, random_state=0),
    ... ).fit(pairs, y)
    >>> # Single points, scaled then embedded. These labels are random, so training cannot beat
    >>> # the scaled features on held-out pairs, and do_no_harm keeps those 5 features.
    >>> model.transform(pairs[:, 0]).shape
    (200, 5)
    """

    _parameter_constraints: dict = {"transformer": [HasMethods(["fit", "transform"])]}

    def __init__(self, transformer):
        self.transformer = transformer

    @fit_context(
        # the inner transformer is validated by its own fit
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y=None):
        """Fit ``transformer`` on the points of the tuples ``X``.

        Parameters
        ----------
        X : array-like of shape (n_tuples, k, n_features)
            The features of the ``k`` points of each tuple.
        y : None
            Ignored: the labels of the tuples are not handed to ``transformer``.

        Returns
        -------
        self : object
            The fitted step.
        """
        X = check_array(
            X, allow_nd=True, dtype=None, ensure_all_finite=False, input_name="X", estimator=self
        )
        if X.ndim != 3:
            raise invalid(
                "X",
                f"tuples of points for {type(self).__name__}.fit, an array of shape "
                "(n_tuples, k, n_features). Index tuples into an embedder's points need no such "
                "step: transform the points themselves, e.g. "
                "PairEmbedder(points=StandardScaler().fit_transform(points))",
                f"shape {X.shape}",
            )
        self.n_features_in_ = X.shape[2]
        transformer: Any = clone(self.transformer)  # the type checker reads clone's union
        self.transformer_ = transformer.fit(X.reshape(-1, X.shape[2]))
        return self

    def transform(self, X):
        """Transform each point of the tuples ``X``, or the points ``X``.

        Parameters
        ----------
        X : array-like of shape (n_tuples, k, n_features) or (n_samples, n_features)
            Tuples of points, or single points.

        Returns
        -------
        X_new : ndarray of shape (n_tuples, k, n_features_out) or (n_samples, n_features_out)
            The transformed points, in the shape of ``X``.
        """
        check_is_fitted(self)
        X = check_array(
            X, allow_nd=True, dtype=None, ensure_all_finite=False, input_name="X", estimator=self
        )
        if X.ndim not in (2, 3) or X.shape[-1] != self.n_features_in_:
            raise invalid(
                "X",
                f"tuples of shape (n_tuples, k, {self.n_features_in_}) or points of shape "
                f"(n_samples, {self.n_features_in_}), with the n_features of the points "
                f"{type(self).__name__} was fitted on",
                f"shape {X.shape}",
            )
        points = self.transformer_.transform(X.reshape(-1, X.shape[-1]))
        if sparse.issparse(points):
            points = points.toarray()
        points = np.asarray(points)
        return points.reshape(*X.shape[:-1], points.shape[-1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = True  # the transformer decides (an imputer accepts NaN)
        return tags
