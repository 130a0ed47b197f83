"""madspatial.tl"""

from ._cluster import kmeans, louvain
from ._decoder import Decoder, fit_decoder, predict

__all__ = ["Decoder", "fit_decoder", "kmeans", "louvain", "predict"]
