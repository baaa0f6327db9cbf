"""Deep metric learning (triplet and contrastive losses) as scikit-learn transformers."""

from importlib.metadata import PackageNotFoundError, version

from ._base import EmbeddingCollapseWarning
from ._comparison import ComparisonEmbedder
from ._guard import RawFeaturesKeptWarning
from ._pair import PairEmbedder
from ._persistence import load
from ._siamese import SiameseEmbedder
from ._triplet import TripletEmbedder

try:
    __version__ = version("sklearn-triplet")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ComparisonEmbedder",
    "EmbeddingCollapseWarning",
    "PairEmbedder",
    "RawFeaturesKeptWarning",
    "SiameseEmbedder",
    "TripletEmbedder",
    "__version__",
    "load",
]
