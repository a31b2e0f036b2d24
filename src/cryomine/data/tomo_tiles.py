"""Training tiles for the learned picker: crops of simulated tomograms and their class maps.

A training tomogram is what ``cryomine simulate tomogram`` writes: ``NAME.mrc`` (protein bright), its class map
``NAME_classes.mrc`` (int8: 0 background, ``rlnClassNumber`` inside each particle, the last label in membranes)
and ``NAME.json`` (``class_map_labels`` names every label). Tomograms are read through memory maps and
standardised with their own whole-volume mean and standard deviation, exactly as
:func:`cryomine.pick.learned.label_tomogram` standardises the tomogram it labels.

Sampling (:meth:`TileSampler.batch`): half the tiles are centred (up to a random shift of a quarter tile) on a
voxel of a class drawn uniformly among the classes, so that small and rare complexes are seen as often as
ribosomes; the other half anywhere. Each tile is flipped along each axis with probability 1/2 (flips map the
missing wedge about y, beam along z, onto itself), image and labels together. The draw depends only on the
generator passed in, so a resumed run can repeat it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
from scipy import ndimage

from cryomine.errors import InputError
from cryomine.geometry.validate import volume_stats

__all__ = ["TrainingTomogram", "TileSampler", "expected_voxels", "open_training_tomogram"]


@dataclass
class TrainingTomogram:
    """One tomogram (``(d, h, w)`` memory map), its int8 class map of the same shape, the standardisation
    (``mean``, ``std``), the label names (index = label) and, per label ``>= 1``, the voxel indices ``(n, 3)``
    of a subsample of its voxels (for class-balanced sampling)."""

    path: Path
    volume: np.ndarray
    labels: np.ndarray
    mean: float
    std: float
    names: tuple[str, ...]
    voxels_of: dict[int, np.ndarray]
    voxel_size_a: float = 0.0


def open_training_tomogram(path: str | os.PathLike[str], max_voxels_per_class: int = 20000, seed: int = 0) -> TrainingTomogram:
    """Open ``NAME.mrc`` with ``NAME_classes.mrc`` and ``NAME.json`` beside it (module docstring); InputError
    naming the file that is missing or does not fit."""
    p = Path(path)
    labels_path, meta_path = p.with_name(f"{p.stem}_classes.mrc"), p.with_suffix(".json")
    for need in (p, labels_path, meta_path):
        if not need.is_file():
            raise InputError("missing: a training tomogram needs NAME.mrc, NAME_classes.mrc and NAME.json "
                             "(cryomine simulate tomogram writes them)", need)  # fmt: skip
    try:
        table = json.loads(meta_path.read_text())["class_map_labels"]
        names = tuple(table[str(i)] for i in range(len(table)))
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError("no readable class_map_labels (0..n)", meta_path) from None
    try:  # kept open (read-only memory maps) for the whole training
        handle = mrcfile.mmap(p, mode="r")
        volume, labels, voxel_size_a = handle.data, mrcfile.mmap(labels_path, mode="r").data, float(handle.voxel_size.x)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable MRC file ({' '.join(str(exc).split())[:120]})", p) from None
    if volume.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"need a 3-D tomogram and an integer class map, got {volume.shape} and {labels.dtype}", labels_path)
    if labels.shape != volume.shape:
        raise InputError(f"class map shape {labels.shape} differs from the tomogram's {volume.shape}", labels_path)
    mean, std = volume_stats(volume, p)
    rng = np.random.default_rng(seed)
    voxels_of: dict[int, np.ndarray] = {}
    for c in range(1, len(names)):
        idx = np.flatnonzero(np.asarray(labels).reshape(-1) == c)
        if len(idx):
            pick = rng.choice(idx, size=min(len(idx), max_voxels_per_class), replace=False)
            voxels_of[c] = np.stack(np.unravel_index(np.sort(pick), labels.shape), axis=1)
    if not voxel_size_a > 0:
        raise InputError("the header records no voxel size: the picker must know the voxel size it learns", p)
    return TrainingTomogram(p, volume, labels, float(mean), float(std), names, voxels_of, voxel_size_a)


def expected_voxels(tomograms: Sequence[TrainingTomogram]) -> dict[str, float]:
    """Per class name: the median size (voxels) of its connected regions in the class maps (one per particle,
    except where particles of one class touch), for the learned picker's size check."""
    sizes: dict[str, list[np.ndarray]] = {}
    for t in tomograms:
        labels = np.asarray(t.labels)
        for c in range(1, len(t.names)):
            regions, n = ndimage.label(labels == c)
            if n:
                sizes.setdefault(t.names[c], []).append(np.bincount(regions.reshape(-1))[1:])
    return {name: float(np.median(np.concatenate(v))) for name, v in sizes.items()}


class TileSampler:
    """Batches of ``(n, 1, t, t, t)`` float32 standardised tiles and ``(n, t, t, t)`` int64 labels from training
    tomograms that share one label table (module docstring)."""

    def __init__(self, tomograms: Sequence[TrainingTomogram], tile: int) -> None:
        if not tomograms:
            raise InputError("no training tomograms", "--tomograms")
        names, vs = tomograms[0].names, tomograms[0].voxel_size_a
        for t in tomograms:
            if abs(t.voxel_size_a / vs - 1.0) > 0.02:
                raise InputError(f"voxel size {t.voxel_size_a:g} Å differs from {vs:g} Å of {tomograms[0].path.name}", t.path)
            if t.names != names:
                raise InputError(f"labels {list(t.names)} differ from {list(names)} of {tomograms[0].path.name}", t.path)
            if min(t.volume.shape) < tile:
                raise InputError(f"tomogram {t.volume.shape} is smaller than the {tile}-voxel tiles", t.path)
        self.tomograms, self.tile, self.names, self.voxel_size_a = list(tomograms), int(tile), names, vs

    def _corner(self, t: TrainingTomogram, rng: np.random.Generator, centred: bool) -> np.ndarray:
        shape = np.array(t.volume.shape)
        if centred and t.voxels_of:
            c = list(t.voxels_of)[int(rng.integers(len(t.voxels_of)))]
            pts = t.voxels_of[c]
            centre = pts[int(rng.integers(len(pts)))] + rng.integers(-self.tile // 4, self.tile // 4 + 1, size=3)
            corner = centre - self.tile // 2
        else:
            corner = np.array([rng.integers(0, n - self.tile + 1) for n in shape])
        return np.clip(corner, 0, shape - self.tile)

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` tiles: (images, labels)."""
        x = np.empty((n, 1, self.tile, self.tile, self.tile), np.float32)
        y = np.empty((n, self.tile, self.tile, self.tile), np.int64)
        for i in range(n):
            t = self.tomograms[int(rng.integers(len(self.tomograms)))]
            z0, y0, x0 = self._corner(t, rng, centred=i % 2 == 0)
            sl = (slice(z0, z0 + self.tile), slice(y0, y0 + self.tile), slice(x0, x0 + self.tile))
            img = (np.asarray(t.volume[sl], np.float32) - np.float32(t.mean)) / np.float32(t.std)
            lab = np.asarray(t.labels[sl], np.int64)
            for axis in range(3):
                if rng.random() < 0.5:
                    img, lab = np.flip(img, axis), np.flip(lab, axis)
            x[i, 0], y[i] = img, lab
        return x, y

    def class_frequencies(self) -> np.ndarray:
        """Fraction of the voxels of every label over all tomograms (read in slabs)."""
        counts = np.zeros(len(self.names), np.float64)
        for t in self.tomograms:
            for z in range(0, t.labels.shape[0], 16):
                counts += np.bincount(np.asarray(t.labels[z : z + 16]).reshape(-1).astype(np.int64), minlength=len(self.names))[: len(self.names)]
        return counts / counts.sum()
