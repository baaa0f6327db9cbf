"""Deep metric learning (triplet and contrastive losses) as scikit-learn transformers."""

from ._base import EmbeddingCollapseWarning
from ._comparison import ComparisonEmbedder
from ._guard import RawFeaturesKeptWarning
from ._loading import load
from ._pair import PairEmbedder
from ._pointwise import PointwiseTransformer
from ._siamese import SiameseEmbedder
from ._triplet import TripletEmbedder
from ._version import __version__

__all__ = [
    "ComparisonEmbedder",
    "EmbeddingCollapseWarning",
    "PairEmbedder",
    "PointwiseTransformer",
    "RawFeaturesKeptWarning",
    "SiameseEmbedder",
    "TripletEmbedder",
    "__version__",
    "load",
]
