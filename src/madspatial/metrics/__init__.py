"""madspatial.metrics: scores of embeddings and predictions (arrays in, numbers out)."""

from ._bootstrap import bootstrap_ci
from ._clustering import ari, contingency_table, purity
from ._expression import mae_per_gene, mse_per_gene, pearson_per_gene
from ._heterogeneity import within_patch_heterogeneity
from ._probe import knn_accuracy, linear_probe_accuracy, probe_predictions
from ._retrieval import recall_at_k, retrieval_ranks

__all__ = [
    "ari",
    "bootstrap_ci",
    "contingency_table",
    "knn_accuracy",
    "linear_probe_accuracy",
    "mae_per_gene",
    "mse_per_gene",
    "pearson_per_gene",
    "probe_predictions",
    "purity",
    "recall_at_k",
    "retrieval_ranks",
    "within_patch_heterogeneity",
]
