"""madspatial.metrics: scores of embeddings and predictions (arrays in, numbers out)."""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "bootstrap_ci": "._bootstrap",
    "ari": "._clustering",
    "contingency_table": "._clustering",
    "purity": "._clustering",
    "mae_per_gene": "._expression",
    "mse_per_gene": "._expression",
    "pearson_per_gene": "._expression",
    "within_patch_heterogeneity": "._heterogeneity",
    "knn_accuracy": "._probe",
    "linear_probe_accuracy": "._probe",
    "probe_predictions": "._probe",
    "recall_at_k": "._retrieval",
    "retrieval_ranks": "._retrieval",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
