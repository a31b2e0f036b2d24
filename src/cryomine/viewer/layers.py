"""cryomine's results as napari layers, without importing napari: ``(data, kwargs, layer_type)`` tuples (napari's
``LayerDataTuple``), which the reader plugin (:mod:`cryomine.viewer.napari_reader`) hands to napari as they are.

A **tomogram folder** of ``cryomine run`` (``tomograms/<name>/`` with ``summary.json``) gives four layers, all in
the tomogram's voxel frame ``(z, y, x)`` scaled by its voxel size (Å), so napari's axes read in Å:

- ``<name>``: the tomogram (image, grey, contrast at its 1st-99th percentiles);
- ``<name> masks``: DSM-Net's segmentation masks at the picks (labels; label ``k + 1`` = class ``k``, each in its
  class colour);
- ``<name> atlas``: the atlas label map (the predicted structures placed at the picks; hidden at first);
- ``<name> picks``: the picks (points at their voxel positions, face coloured by predicted class, sized by the
  class's bundled structure, with the class, probability and score as features).

A **project folder** (``project.json``) gives the layers of every finished tomogram, the first one visible and read
at once, the others dask arrays read when first shown (a project of many tomograms opens without reading them). Colours
are those of the report (:func:`cryomine.report.figures.class_colours` over the project's classes, sorted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask import delayed

from cryomine.errors import InputError
from cryomine.io.mrc import read_mrc
from cryomine.io.star import coordinates_xyz_voxels, read_particles
from cryomine.io.volume import open_volume, read_volume
from cryomine.report.figures import class_colours
from cryomine.structures import bundled_radius_a

__all__ = ["LayerData", "folder_kind", "layer_data"]

LayerData = tuple[Any, dict[str, Any], str]
DEFAULT_RADIUS_A = 50.0


def folder_kind(path: str | os.PathLike[str]) -> str | None:
    """``"tomogram"`` (a tomogram folder of ``cryomine run``), ``"project"`` (a project run folder) or None."""
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "project.json").is_file() and (p / "tomograms").is_dir():
        return "project"
    if (p / "summary.json").is_file() and (p / "picks.star").is_file():
        return "tomogram"
    return None


def _summary(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "summary.json").read_text())
        return data if isinstance(data, dict) and "tomogram" in data else {}
    except (OSError, ValueError):
        return {}


def _class_names(folders: list[Path]) -> list[str]:
    names: set[str] = set()
    for folder in folders:
        names.update(_summary(folder).get("class_counts", {}))
    return sorted(names)


def _tomogram_layers(folder: Path, colours: dict[str, tuple], visible: bool) -> list[LayerData]:
    summary = _summary(folder)
    if not summary:
        raise InputError("not a finished cryomine tomogram folder (summary.json)", folder)
    name, vs = summary["tomogram"]["name"], float(summary["voxel_size_a"])
    scale = (vs, vs, vs)
    path = summary["tomogram"]["path"]
    if visible:  # read now, once
        volume = read_volume(path, vs).data
        shape, central = volume.shape, volume[volume.shape[0] // 2]
    else:  # only its header and central slice now (an MRC is memory-mapped); read when first shown
        with open_volume(path, vs) as mapped:
            shape, central = tuple(int(n) for n in mapped.data.shape), np.array(mapped.data[mapped.data.shape[0] // 2])
        volume = _lazy(lambda: read_volume(path, vs).data, shape, np.float32)
    lo, hi = (float(v) for v in np.percentile(central, [1, 99]))  # contrast from the central slice
    layers: list[LayerData] = [(volume, {"name": name, "scale": scale, "colormap": "gray", "contrast_limits": (lo, hi if hi > lo else lo + 1),
                                         "visible": visible, "metadata": {"cryomine": summary}}, "image")]  # fmt: skip
    atlas = summary.get("atlas_classes", [])
    colour = {0: (0.0, 0.0, 0.0, 0.0), None: (0.5, 0.5, 0.5, 1.0)}
    colour.update({k + 1: colours.get(c, (0.5, 0.5, 0.5, 1.0)) for k, c in enumerate(atlas)})
    for file, suffix, shown in (("segmentation_labels.mrc", "masks", visible), ("atlas_labels.mrc", "atlas", False)):
        if (folder / file).is_file():
            labels = (read_mrc(folder / file).data.astype(np.int32) if shown
                      else _lazy(lambda f=folder / file: read_mrc(f).data.astype(np.int32), shape, np.int32))  # fmt: skip
            layers.append((labels, {"name": f"{name} {suffix}", "scale": scale, "opacity": 0.5, "colormap": dict(colour), "visible": shown,
                                    "metadata": {"classes": {k + 1: c for k, c in enumerate(atlas)}}}, "labels"))  # fmt: skip
    star = folder / "predict" / "predictions.star"
    if star.is_file():
        table = read_particles(star)
        zyx = coordinates_xyz_voxels(table)[:, ::-1]
        classes = table.particles["rlnClassName"].astype(str).to_numpy()
        sizes = np.array([2 * (bundled_radius_a(c) or DEFAULT_RADIUS_A) / vs for c in classes])
        features = {"class": classes}
        for column, key in (("cmClassProbability", "probability"), ("rlnAutopickFigureOfMerit", "score")):
            if column in table.particles:
                features[key] = table.particles[column].astype(float).to_numpy()
        layers.append((zyx, {"name": f"{name} picks", "scale": scale, "size": sizes, "features": features, "opacity": 0.7,
                             "face_color": np.array([colours.get(c, (0.5, 0.5, 0.5, 1.0)) for c in classes]).reshape(-1, 4),
                             "visible": visible}, "points"))  # fmt: skip
    return layers


def _lazy(load, shape: tuple[int, ...], dtype: type) -> Any:
    """A dask array read by ``load()`` when napari first shows it (projects of many tomograms open at once)."""
    return da.from_delayed(delayed(load)(), shape=shape, dtype=dtype)


def layer_data(path: str | os.PathLike[str]) -> list[LayerData]:
    """The layers of a tomogram or project folder (module docstring); :class:`InputError` for anything else."""
    p = Path(path)
    kind = folder_kind(p)
    if kind is None:
        raise InputError("not a cryomine run folder (a project run with project.json, or one of its tomograms/<name>/)", p)
    folders = [p] if kind == "tomogram" else sorted(f for f in (p / "tomograms").iterdir() if (f / "summary.json").is_file())
    colours = class_colours(_class_names(folders))
    layers: list[LayerData] = []
    for i, folder in enumerate(folders):
        layers += _tomogram_layers(folder, colours, visible=i == 0)
    return layers
