"""madspatial.tl"""

from ._cca import cca
from ._cluster import kmeans, louvain
from ._de import differential_expression
from ._decoder import Decoder, fit_decoder, predict
from ._embed import embed
from ._enrich import enrich
from ._evaluate import evaluate
from ._pretrain import pretrain
from ._pseudotime import pseudotime
from ._umap import umap

__all__ = [
    "Decoder",
    "cca",
    "differential_expression",
    "embed",
    "enrich",
    "evaluate",
    "fit_decoder",
    "kmeans",
    "louvain",
    "predict",
    "pretrain",
    "pseudotime",
    "umap",
]
