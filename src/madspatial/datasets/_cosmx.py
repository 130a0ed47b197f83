"""Loader for the small real CosMx lung data set shipped beside the project (shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._constants import OBS_SAMPLE, OBS_SLIDE

#: Where the CosMx crops lie relative to their field of view: the crop's x origin
#: (local px) for each FOV; rows are flipped (image row = FOV_HEIGHT - y_local_px).
_CROP_X0 = {2: 4800, 3: 0}
_FOV_HEIGHT = 3648
#: Label ids are unique within a FOV only; the combined image uses fov * ID_STRIDE + cell_ID.
ID_STRIDE = 10_000
#: Zero columns between the FOVs, so no microenvironment window mixes two FOVs' pixels.
FOV_GAP_PX = 64


#: Environment variable naming the data folder when ``path`` is not given.
PATH_ENV = "MADSPATIAL_COSMX"


def _resolve_path(path: str | Path | None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get(PATH_ENV)
    if env:
        return Path(env)
    raise ValueError(
        "cosmx_lung_mini needs the folder of the data (it is not shipped with the package): "
        f"pass path=... or set the environment variable {PATH_ENV}; in a checkout of the "
        "project it is ../shared/data/cosmx_lung_mini."
    )


def cosmx_lung_mini(path: str | Path | None = None, *, fovs: tuple[int, ...] = (2, 3)):
    """Real CosMx NSCLC data (sample Lung12, two fields of view, 120 cells) as SpatialData.

    The files are not part of the package: they are read from ``path`` (default: the
    folder named by the environment variable ``MADSPATIAL_COSMX``; in a checkout of the
    project, ``../shared/data/cosmx_lung_mini``). The fields of view
    are placed side by side in one image with a gap of ``FOV_GAP_PX`` zero
    columns, so one image, one label image and one table hold both.

    Parameters
    ----------
    path
        Folder holding ``CellComposite/``, ``CellLabels/`` and ``Lung12_tx_file.csv``
        (default: ``$MADSPATIAL_COSMX``; neither given raises a ``ValueError``).
    fovs
        Which fields of view to load (2 and/or 3).

    Returns
    -------
    SpatialData with image ``"morphology"`` (3 channels: the RGB composite,
    blue = nuclear stain), labels ``"cell_labels"`` (id = ``fov * 10000 +
    cell_ID``), points ``"transcripts"`` (image pixel coordinates) and table
    ``"table"``: counts of the 960 genes in ``X`` and ``layers["counts"]``,
    ``obs["fov"]``, ``obs["cell_ID"]``, ``obs["negprobe_counts"]`` (sum of the
    20 negative probes), ``obs["slide"]``, ``obs["sample"]`` (one per FOV),
    ``obsm["spatial"]``.
    """
    import tifffile
    from skimage.io import imread
    from spatialdata.models import PointsModel

    from ..io import sdata_from_arrays

    root = _resolve_path(path)
    if not (root / "Lung12_tx_file.csv").is_file():
        raise FileNotFoundError(
            f"CosMx data not found in {root}: expected CellComposite/, CellLabels/ and "
            "Lung12_tx_file.csv. Pass path= to the cosmx_lung_mini folder."
        )
    tx = pd.read_csv(root / "Lung12_tx_file.csv")
    images, labels, offsets = [], [], []
    x0 = 0
    for fov in fovs:
        if fov not in _CROP_X0:
            raise ValueError(f"fov must be among {sorted(_CROP_X0)}, got {fov}.")
        img = imread(root / "CellComposite" / f"CellComposite_F{fov:03d}.jpg")
        lab = tifffile.imread(root / "CellLabels" / f"CellLabels_F{fov:03d}.tif")
        lab = np.where(lab > 0, lab.astype(np.int64) + fov * ID_STRIDE, 0)
        images.append(np.moveaxis(img, -1, 0))
        labels.append(lab)
        offsets.append(x0)
        x0 += img.shape[1] + FOV_GAP_PX
    height = max(i.shape[1] for i in images)
    image = np.zeros((3, height, x0 - FOV_GAP_PX), dtype=np.uint8)
    label = np.zeros((height, x0 - FOV_GAP_PX), dtype=np.int64)
    for img, lab, off in zip(images, labels, offsets):
        image[:, : img.shape[1], off : off + img.shape[2]] = img
        label[: lab.shape[0], off : off + lab.shape[1]] = lab

    tx = tx[tx["fov"].isin(fovs)]
    in_cell = tx[tx["cell_ID"] > 0]
    is_neg = in_cell["target"].str.startswith("NegPrb")
    ids = in_cell["fov"].to_numpy() * ID_STRIDE + in_cell["cell_ID"].to_numpy()
    counts = pd.crosstab(ids[~is_neg.to_numpy()], in_cell.loc[~is_neg, "target"].to_numpy())
    genes = sorted(tx.loc[~tx["target"].str.startswith("NegPrb"), "target"].unique())
    present = np.unique(label)
    present = present[present > 0]
    counts = counts.reindex(index=present, columns=genes, fill_value=0)
    neg = pd.Series(ids[is_neg.to_numpy()]).value_counts().reindex(present, fill_value=0)
    obs = pd.DataFrame(
        {
            "fov": pd.Categorical([str(i // ID_STRIDE) for i in present]),
            "cell_ID": present % ID_STRIDE,
            "negprobe_counts": neg.to_numpy(),
            OBS_SLIDE: pd.Categorical(["Lung12"] * len(present)),
            OBS_SAMPLE: pd.Categorical([f"Lung12_fov{i // ID_STRIDE}" for i in present]),
        },
        index=present,
    )
    sdata = sdata_from_arrays(
        image,
        label,
        counts.astype(np.float32),
        channel_names=["red", "green", "blue_nuclear"],
        obs=obs,
        pixel_size=0.18,
    )
    # Transcripts in the combined image's pixel frame, for squidpy/spatialdata users.
    off = dict(zip(fovs, offsets))
    pts = pd.DataFrame(
        {
            "x": tx["x_local_px"].to_numpy()
            - tx["fov"].map(_CROP_X0).to_numpy()
            + tx["fov"].map(off).to_numpy(),
            "y": _FOV_HEIGHT - tx["y_local_px"].to_numpy(),
            "gene": pd.Categorical(tx["target"].to_numpy()),
            "instance_id": np.where(
                tx["cell_ID"].to_numpy() > 0,
                tx["fov"].to_numpy() * ID_STRIDE + tx["cell_ID"].to_numpy(),
                0,
            ),
        }
    )
    sdata["transcripts"] = PointsModel.parse(pts, feature_key="gene")
    return sdata
