"""``madspatial prepare SDATA.zarr --out views.zarr``: normalize + cell views.

The options are those of :func:`madspatial.pp.normalize` and
:func:`madspatial.pp.cell_views` (one option per keyword parameter, shared ones such as
``--image-key`` and ``--n-jobs`` once), so what works in Python works here. A table over
several regions (CosMx: one image and one labels element per FOV) is prepared as
``cell_views`` cuts it: every image the regions need is normalized once, and the views of
every region go into the one store ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_options

#: Parameters the command sets itself: the image handed from one step to the next, where
#: the views go and how they are recorded.
_SKIP_NORMALIZE = ("key_added",)
_SKIP_VIEWS = ("store", "inplace", "key_added", "max_memory_gb")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``SDATA``, ``--out`` and the options of ``normalize`` and ``cell_views``."""
    from ..pp import cell_views, normalize

    p.add_argument("sdata", metavar="SDATA", help="SpatialData .zarr (image, segmentation, table)")
    p.add_argument("--out", required=True, help="zarr view store to write (views.zarr)")
    p.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="cut views from --image-key as it is (already normalized to [0, 1], or uint8); "
        "by default images not named '*_normalized' are normalized first",
    )
    p.add_argument(
        "--write-table",
        action="store_true",
        help="also write the table (with the views' record, .uns['mad_views'], pointing at "
        "--out) back into SDATA, so `madspatial pretrain SDATA` / `embed SDATA` use these views",
    )
    seen: set[str] = set()
    views = add_options(
        p.add_argument_group("cell views (mad.pp.cell_views)"),
        cell_views,
        skip=_SKIP_VIEWS,
        seen=seen,
        docs={
            "image_key": "image to normalize and cut views from (default: the only image)",
            "labels_key": "cell segmentation (default: the one the table annotates)",
            "table_key": "table annotating the segmentation (default: the one that does)",
        },
    )
    norm = add_options(
        p.add_argument_group("normalization (mad.pp.normalize)"),
        normalize,
        skip=_SKIP_NORMALIZE,
        seen=seen,
    )
    p.set_defaults(_options={"views": views, "normalize": norm})


def _write_table(sdata, table_key: str, where: str) -> None:
    """Replace the table in the zarr (spatialdata cannot overwrite an element in place)."""
    sdata.delete_element_from_disk(table_key)
    try:
        sdata.write_element(table_key)
    except Exception as err:
        # the table is in memory only now: keep it somewhere before giving up
        backup = Path(where).with_name(f"{Path(where).stem}.{table_key}.h5ad")
        sdata.tables[table_key].write_h5ad(backup)
        raise RuntimeError(
            f"writing table {table_key!r} back into {where} failed ({err}); it was saved to "
            f"{backup} (read it with anndata.read_h5ad)."
        ) from err


def _normalized(sdata, images: dict[str, str], norm: dict, enabled: bool) -> dict[str, str]:
    """Normalize every image the regions need (once each); ``{region: image to cut}``."""
    from .. import pp
    from .._constants import NORMALIZED_SUFFIX

    done: dict[str, str] = {}
    for key in dict.fromkeys(images.values()):
        if not enabled or key.endswith(NORMALIZED_SUFFIX):
            done[key] = key
            continue
        pp.normalize(sdata, image_key=key, **norm)
        done[key] = key + NORMALIZED_SUFFIX
    return {region: done[key] for region, key in images.items()}


def run(args: argparse.Namespace) -> int:
    """Normalize (unless asked not to), cut the views into ``--out``, report what was done."""
    from .. import pp
    from .._constants import UNS_VIEWS
    from .._elements import _check_named
    from ..pp._regions import region_images
    from ._data import read_sdata

    sdata = read_sdata(args.sdata)
    views = args._options["views"].given(args)
    norm = args._options["normalize"].given(args)
    keys = {k: views.pop(k, None) for k in ("image_key", "labels_key", "table_key")}
    named = {k: v for k, v in keys.items() if isinstance(v, str)}
    _check_named(sdata, args.sdata, **named)
    if isinstance(keys["image_key"], dict):  # --image-key '{"region": "image", ...}'
        for key in keys["image_key"].values():
            _check_named(sdata, args.sdata, image_key=key)
    # the regions cell_views will cut (several: CosMx FOVs, samples) and the image of each
    table_key, images = region_images(sdata, regions=views.get("regions"), **keys)
    norm.pop("image_key", None)
    if "n_jobs" in views:  # one --n-jobs for both steps
        norm["n_jobs"] = views["n_jobs"]
    images = _normalized(sdata, images, norm, args.normalize)
    several = len(images) > 1
    (labels_key, image_key), *_ = images.items()
    # an absolute path: the table's record must find the store from any working directory
    store = Path(args.out).resolve()
    pp.cell_views(
        sdata,
        image_key=images if several else image_key,
        labels_key=keys["labels_key"],
        table_key=table_key,
        store=store,
        **views,
    )
    table = sdata.tables[table_key]
    if args.write_table:
        _write_table(sdata, table_key, args.sdata)
    info = table.uns[UNS_VIEWS]
    what = (
        f"{len(images)} regions: " + ", ".join(f"{r!r} / {i!r}" for r, i in images.items())
        if several
        else f"{image_key!r} / {labels_key!r}"
    )
    print(
        f"wrote the views of {table.n_obs} cells of table {table_key!r} ({what}; "
        f"{info['morphology_size']} px morphology, "
        f"{info['microenvironment_size']} px microenvironment) to {args.out}"
        + (f"; table written back to {args.sdata}" if args.write_table else "")
    )
    return 0
