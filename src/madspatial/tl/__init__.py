"""madspatial.tl: tools on embeddings (pretraining, embedding, clustering, decoders)."""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "cca": "._cca",
    "kmeans": "._cluster",
    "louvain": "._cluster",
    "differential_expression": "._de",
    "Decoder": "._decoder",
    "fit_decoder": "._decoder",
    "predict": "._decoder",
    "embed": "._embed",
    "enrich": "._enrich",
    "evaluate": "._evaluate",
    "pretrain": "._pretrain",
    "pseudotime": "._pseudotime",
    "umap": "._umap",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
