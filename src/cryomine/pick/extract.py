"""Extract subtomograms around picks into a cryomine dataset (HDF5), so ``predict`` and ``discover`` run on picks.

Each pick of the tomogram gives one ``size``³ box around its centre (``rlnCoordinate`` minus
``rlnOrigin*Angst``; :func:`cryomine.geometry.cut_boxes`: voxel ``size // 2`` on the nearest voxel, the tomogram's
mean outside it), the same boxes ``average`` cuts from the STAR and the tomogram. Row ``i`` of the dataset is the
tomogram's pick ``i`` (``coords_xyz`` holds its centre, x, y, z voxels of the tomogram), so every later step
writes the particle's position and tomogram name. ``class_id`` is the pick's ``rlnClassName`` (as an index into
the dataset's ``class_names``) when the picks carry one (template matching), else -1 (unknown). The tomogram is
read through a memory map, in batches. DSM-Net expects protein-bright boxes: a protein-dark tomogram (``--invert``
or its metadata) is negated, and one that still looks protein-dark gives a
:class:`~cryomine.pick.contrast.ContrastWarning`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cryomine import __version__
from cryomine.acquisition import Acquisition, tomogram_acquisition
from cryomine.errors import InputError
from cryomine.geometry.boxes import cut_boxes
from cryomine.io.atomic import atomic_output
from cryomine.io.subtomo_h5 import create_dataset, write_rows
from cryomine.io.tomo_particles import particle_centres_xyz, select_tomogram
from cryomine.io.volume import open_volume
from cryomine.pick.contrast import tomogram_contrast, warn_if_dark
from cryomine.pick.peaks import read_picks
from cryomine.pick.tiles import volume_stats

__all__ = ["ExtractResult", "extract_subtomograms"]

_BATCH = 64


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract_subtomograms` wrote: ``path``, ``n`` boxes of ``size``³, ``voxel_size_a``, classes."""

    path: Path
    n: int
    size: int
    voxel_size_a: float
    class_names: list[str]
    acquisition: Acquisition
    inverted: bool


def extract_subtomograms(
    tomogram: str | os.PathLike[str], picks: str | os.PathLike[str], out: str | os.PathLike[str], size: int,
    *, overrides: Acquisition | None = None, files: Sequence[str | os.PathLike[str]] = (), tomo_name: str | None = None,
) -> ExtractResult:
    """Write a dataset of ``size``³ boxes around the picks of ``picks`` (STAR, voxel coordinates of ``tomogram``)
    that belong to the tomogram (``rlnTomoName``; ``tomo_name`` defaults to the tomogram's stem).

    The tomogram's :class:`~cryomine.acquisition.Acquisition` comes from ``overrides`` (the flags), the
    ``files``, the metadata beside the tomogram and its header (:func:`~cryomine.acquisition.tomogram_acquisition`)
    and is stored in the dataset's config (``acquisition``), so ``average``, ``predict`` and ``discover`` use the
    tomogram's wedge, optics and voxel size. A protein-dark tomogram (``polarity`` dark, e.g. ``--invert`` or a
    RELION tomograms.star) is inverted: the stored boxes are protein bright, as DSM-Net expects, and the stored
    acquisition says so. Raises :class:`InputError` for an empty STAR, a box size < 4 or larger than the tomogram,
    picks outside the tomogram, or an unknown voxel size. Written atomically (nothing is left behind on failure).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 4:
        raise InputError(f"box size must be an integer >= 4 voxels, got {size!r}", "--size")
    table, name = select_tomogram(read_picks(picks), tomo_name or Path(tomogram).stem, picks)
    acq = tomogram_acquisition(tomogram, overrides, files, tomo_name=tomo_name or name)
    coords_zyx = particle_centres_xyz(table, acq.voxel_size_a)[:, ::-1]
    names = table.particles["rlnClassName"].astype(str).to_numpy() if "rlnClassName" in table.particles else None
    class_names = sorted(set(names)) if names is not None else []
    class_id = np.array([class_names.index(n) for n in names], np.int32) if names is not None else np.full(len(table), -1, np.int32)
    invert = acq.polarity == "dark"
    with open_volume(tomogram, acq.voxel_size_a) as tomo:
        vol, vs = tomo.data, tomo.voxel_size_a
        if any(size > s for s in vol.shape):
            raise InputError(f"box size {size} is larger than the tomogram {'x'.join(map(str, vol.shape))}", "--size")
        outside = ((coords_zyx < -0.5) | (coords_zyx > np.asarray(vol.shape) - 0.5)).any(axis=1)
        if outside.any():
            i = int(np.argmax(outside))
            raise InputError(f"{int(outside.sum())} picks lie outside the tomogram {'x'.join(map(str, vol.shape))} "
                             f"(e.g. row {i}: x,y,z = {np.round(coords_zyx[i, ::-1], 1).tolist()})", picks)  # fmt: skip
        mean, _ = volume_stats(vol, tomogram)
        warn_if_dark(tomogram_contrast(vol, invert), tomogram, "--invert", invert)
        sign = np.float32(-1.0 if invert else 1.0)
        stored = replace(acq, polarity="bright" if acq.polarity is not None else None)
        config = {"source": "cryomine extract", "tomogram": str(tomogram), "picks": str(picks), "size": size,
                  "tomo_name": name, "invert": invert, "voxel_size_a": vs, "acquisition": stored.to_dict()}  # fmt: skip
        with atomic_output(out) as tmp:
            create_dataset(tmp, n=len(table), size=size, voxel_size_a=vs, class_names=class_names,
                           config=config, cryomine_version=__version__, has_ground_truth=False, with_coords=True)  # fmt: skip
            for start in range(0, len(table), _BATCH):
                sl = slice(start, start + _BATCH)
                boxes = sign * cut_boxes(vol, coords_zyx[sl], size, fill=mean)
                xyz = coords_zyx[sl, ::-1].astype(np.float32)
                write_rows(tmp, start, {"subtomograms": boxes, "coords_xyz": xyz, "class_id": class_id[sl]})
    return ExtractResult(Path(out), len(table), size, vs, class_names, stored, invert)
