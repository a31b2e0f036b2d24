"""Extract subtomograms around picks into a cryomine dataset (HDF5), so ``predict`` and ``discover`` run on picks.

Each pick gives one ``size``³ box whose voxel ``size // 2`` is the pick's position rounded to the nearest voxel;
parts of a box outside the tomogram are filled with the tomogram's mean. Row ``i`` of the dataset is pick ``i``
of the STAR file (``coords_xyz`` holds its position, x, y, z voxels), so predictions join back on the row.
``class_id`` is the pick's ``rlnClassName`` (as an index into the dataset's ``class_names``) when the picks
carry one (template matching), else -1 (unknown). The tomogram is read through a memory map, in batches.
DSM-Net expects protein-bright boxes: ``invert`` negates the boxes of a protein-dark tomogram (a tomogram that
looks protein-dark after it gives a :class:`~cryomine.pick.contrast.ContrastWarning`), and ``voxel_size_a``
supplies the voxel size when the tomogram's header has none (or a wrong one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryomine import __version__
from cryomine.errors import InputError
from cryomine.geometry.boxes import cut_boxes
from cryomine.io.atomic import atomic_output
from cryomine.io.star import coordinates_xyz_voxels
from cryomine.io.subtomo_h5 import create_dataset, write_rows
from cryomine.pick.contrast import tomogram_contrast, warn_if_dark
from cryomine.pick.peaks import read_picks
from cryomine.pick.tiles import open_mrc_mmap, volume_stats

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


def extract_subtomograms(
    tomogram: str | os.PathLike[str], picks: str | os.PathLike[str], out: str | os.PathLike[str], size: int,
    *, invert: bool = False, voxel_size_a: float | None = None,
) -> ExtractResult:
    """Write a dataset of ``size``³ boxes around every pick of ``picks`` (STAR, voxel coordinates of ``tomogram``).

    ``invert`` negates the boxes (protein-dark tomograms); ``voxel_size_a`` (Å) overrides the header's. Raises
    :class:`InputError` for an empty STAR, a box size < 4 or larger than the tomogram, picks outside the
    tomogram, or an unset header voxel size without ``voxel_size_a``. The output is written atomically
    (nothing is left behind on failure).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 4:
        raise InputError(f"box size must be an integer >= 4 voxels, got {size!r}", "--size")
    table = read_picks(picks)
    coords_zyx = coordinates_xyz_voxels(table)[:, ::-1]
    names = table.particles["rlnClassName"].astype(str).to_numpy() if "rlnClassName" in table.particles else None
    class_names = sorted(set(names)) if names is not None else []
    class_id = np.array([class_names.index(n) for n in names], np.int32) if names is not None else np.full(len(table), -1, np.int32)
    if not isinstance(invert, bool):
        raise InputError(f"must be true or false, got {invert!r}", "--invert")
    with open_mrc_mmap(tomogram, voxel_size_a, option="--voxel-size") as (vol, vs):
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
        config = {"source": "cryomine extract", "tomogram": str(tomogram), "picks": str(picks), "size": size,
                  "invert": invert, "voxel_size_a": vs}  # fmt: skip
        with atomic_output(out) as tmp:
            create_dataset(tmp, n=len(table), size=size, voxel_size_a=vs, class_names=class_names,
                           config=config, cryomine_version=__version__, has_ground_truth=False, with_coords=True)  # fmt: skip
            for start in range(0, len(table), _BATCH):
                sl = slice(start, start + _BATCH)
                boxes = sign * cut_boxes(vol, coords_zyx[sl], size, fill=mean)
                xyz = coordinates_xyz_voxels(table)[sl].astype(np.float32)
                write_rows(tmp, start, {"subtomograms": boxes, "coords_xyz": xyz, "class_id": class_id[sl]})
    return ExtractResult(Path(out), len(table), size, vs, class_names)
