"""Every key madspatial reads from or writes into AnnData / SpatialData, spelled once.

Import the names, never retype the strings: ``from madspatial._constants import
OBSM_MAD``. The tests grep the sources for stray literals of these keys
(``tests/test_conventions.py::test_no_stray_key_literals``).

The choices of string options (training mode, precision, ...) are spelled here too, once,
as ``Literal`` types: the tuple the library validates against (``PRECISIONS``) is read
from the type (``typing.get_args``), and the annotations of :class:`~madspatial.train.
TrainConfig` and :func:`madspatial.tl.pretrain` use the type, so the command line offers
the same choices without importing torch.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# --- SpatialData elements (synthetic tissue and defaults) ----------------------
IMAGE_KEY: Final = "morphology"
CELL_LABELS_KEY: Final = "cell_labels"
NUCLEUS_LABELS_KEY: Final = "nucleus_labels"
TABLE_KEY: Final = "table"
NORMALIZED_SUFFIX: Final = "_normalized"
COORDINATE_SYSTEM: Final = "global"
REGION_KEY: Final = "region"
INSTANCE_KEY: Final = "instance_id"

# --- obs columns ---------------------------------------------------------------
OBS_CELL_TYPE: Final = "cell_type"
OBS_MORPH_CLASS: Final = "morph_class"
OBS_NICHE: Final = "niche"
OBS_TRAJECTORY: Final = "trajectory"
OBS_SLIDE: Final = "slide"
OBS_SAMPLE: Final = "sample"
OBS_AREA: Final = "area"
OBS_TUMOUR_DISTANCE: Final = "tumour_distance"  # synthetic tissue: px to nest edge
OBS_BORDER: Final = "mad_border"
# label value of each row when cell views rasterized shapes whose ids are not integers
OBS_LABEL_ID: Final = "mad_label_id"
OBS_SPLIT: Final = "mad_split"
#: Value of ``obs[OBS_SPLIT]`` for cells in the band between spatial-block splits (no split).
SPLIT_GUARD: Final = "guard"
OBS_LOUVAIN: Final = "mad_louvain"
OBS_KMEANS: Final = "mad_kmeans"
OBS_PSEUDOTIME: Final = "mad_pseudotime"
OBS_PRED_PREFIX: Final = "mad_pred_"
# tl.predict: obs[<prediction key> + OBS_IN_SAMPLE_SUFFIX] is True for cells the decoder
# that predicted them trained on (e.g. "mad_pred_cell_type_in_sample", "mad_pred_in_sample")
OBS_IN_SAMPLE_SUFFIX: Final = "_in_sample"

# --- obsm ----------------------------------------------------------------------
OBSM_SPATIAL: Final = "spatial"
OBSM_MAD: Final = "X_mad"
OBSM_MORPHOLOGY_SUFFIX: Final = "_morphology"
OBSM_MICROENVIRONMENT_SUFFIX: Final = "_microenvironment"
OBSM_MAD_MORPHOLOGY: Final = OBSM_MAD + OBSM_MORPHOLOGY_SUFFIX
OBSM_MAD_MICROENVIRONMENT: Final = OBSM_MAD + OBSM_MICROENVIRONMENT_SUFFIX
# tl.embed(weights=...): class tokens of a pretrained backbone with no MAD training
OBSM_ZEROSHOT: Final = "X_zeroshot"
OBSM_CCA_SUFFIX: Final = "_cca"
OBSM_CCA_EXPRESSION_SUFFIX: Final = "_cca_expression"  # tl.cca: expression-side variates
# UMAP of an embedding: obsm[OBSM_UMAP_PREFIX + use_rep] (so UMAPs of several reps coexist)
OBSM_UMAP_PREFIX: Final = "X_umap_"

# --- layers --------------------------------------------------------------------
LAYER_COUNTS: Final = "counts"
LAYER_PRED: Final = "mad_pred"

# --- uns -----------------------------------------------------------------------
UNS_VIEWS: Final = "mad_views"
UNS_MAD: Final = "mad"
UNS_MODEL: Final = "model"
UNS_DECODER_PREFIX: Final = "mad_decoder_"
# tl.embed(weights=...): uns[UNS_ZEROSHOT][key_added] describes each zero-shot embedding
UNS_ZEROSHOT: Final = "mad_zeroshot"
UNS_CCA: Final = "mad_cca"
UNS_DE: Final = "mad_de"
UNS_EVALUATE: Final = "mad_evaluate"
UNS_SPLIT: Final = "mad_split"
UNS_GENE_SETS: Final = "gene_sets"
UNS_SYNTHETIC: Final = "synthetic_tissue"  # generation parameters of the synthetic tissue
UNS_COLORS_SUFFIX: Final = "_colors"  # scanpy: uns[f"{obs_key}_colors"]
# neighbour graph of an embedding: uns/obsp under UNS_NEIGHBORS_PREFIX + use_rep
UNS_NEIGHBORS_PREFIX: Final = "neighbors_"

# --- view store (zarr / in-memory) and the reference implementation's H5 --------
VIEW_MORPHOLOGY: Final = "morphology"
VIEW_MICROENVIRONMENT: Final = "microenvironment"
VIEWS: Final = (VIEW_MORPHOLOGY, VIEW_MICROENVIRONMENT)
STORE_INSTANCE_ID: Final = "instance_id"
STORE_CENTROID: Final = "centroid"
STORE_WINDOW_PX: Final = "window_px"
# folder of a SpatialData zarr holding the views of its tables: <root>/mad_views/<table>/<key>.zarr
SDATA_VIEWS_DIR: Final = "mad_views"
# attrs key of a zarr view store (and of an in-memory store's record) naming its parameters
STORE_ATTRS_KEY: Final = "mad_views"
# attrs key of a normalized image: the normalisation record (pp.normalize / pp.cell_views)
NORMALIZE_ATTR: Final = "mad_normalize"
H5_MORPHOLOGY: Final = "morphology"
H5_NEIGHBORHOOD: Final = "neighborhood"
H5_CELL_IDS: Final = "cell_ids"

# --- training modes --------------------------------------------------------------
MODE_MAD: Final = "mad"
MODE_MORPHOLOGY: Final = VIEW_MORPHOLOGY
MODE_MICROENVIRONMENT: Final = VIEW_MICROENVIRONMENT
Mode = Literal["mad", "morphology", "microenvironment"]
MODES: Final = get_args(Mode)
assert MODES == (MODE_MAD, MODE_MORPHOLOGY, MODE_MICROENVIRONMENT)

# --- choices of training options (validated against these tuples) ------------------
#: ``precision``: autocast dtype ("auto": bf16 where the hardware computes it natively)
Precision = Literal["auto", "bf16", "fp16", "fp32"]
PRECISIONS: Final = get_args(Precision)
#: ``centering``: teacher centering (running mean as in DINO, or Sinkhorn-Knopp)
Centering = Literal["center", "sinkhorn"]
CENTERINGS: Final = get_args(Centering)
#: ``cross_terms``: which cross-view terms of the MAD loss are on ("both": the paper's;
#: "to_microenvironment": the microenvironment student learns from the morphology
#: teacher only; "to_morphology": the reverse)
CrossTerms = Literal["both", "to_microenvironment", "to_morphology"]
CROSS_TERMS: Final = get_args(CrossTerms)
#: ``strategy``: multi-process wrapping
Strategy = Literal["auto", "none", "ddp", "fsdp"]
STRATEGIES: Final = get_args(Strategy)
#: ``pixel_stats``: standardise inputs with the data's channel statistics or MADConfig's
#: fixed 0.5 / 0.25
PixelStats = Literal["data", "fixed"]
PIXEL_STATS: Final = get_args(PixelStats)
#: ``preset`` of :func:`madspatial.tl.pretrain` (see :data:`madspatial.train.PRESETS`)
Preset = Literal["paper", "cpu", "auto"]
PRESET_NAMES: Final = get_args(Preset)
#: ``recipe`` of :func:`madspatial.tl.pretrain`: the loss and crops (see
#: :data:`madspatial.train.RECIPES`; "paper": the paper's shared head, "predictor_heads":
#: one head per view, student-only predictor heads, microenvironment crops around the cell;
#: "auto": "predictor_heads" for runs from random weights of at least
#: ``AUTO_RECIPE_MIN_STEPS`` steps, else "paper"; a model trained further keeps its heads)
Recipe = Literal["auto", "paper", "predictor_heads"]
RECIPE_NAMES: Final = get_args(Recipe)

# --- model files -------------------------------------------------------------------
MODEL_CONFIG_FILE: Final = "config.json"
MODEL_WEIGHTS_FILE: Final = "model.safetensors"
MODEL_HISTORY_FILE: Final = "history.json"

# The ViT patch size: both view sizes must be multiples of it.
PATCH_SIZE: Final = 14
