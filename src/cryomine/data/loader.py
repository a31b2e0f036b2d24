"""Training data from a cryomine HDF5 subtomogram dataset: class maps, the stratified split, a torch Dataset.

* **Normalisation.** Every subtomogram is normalised on its own to zero mean and unit standard deviation
  (``(x - mean(x)) / std(x)``; a constant box only has its mean removed). The recovery target (the clean
  ``target_density``) gets the same per-box normalisation, so the recovery loss and the predicted ``recovered``
  maps are in "standard deviations of the clean density" and do not depend on the simulator's density scale.
* **Split.** :func:`stratified_split` splits the rows with a known class (``class_id >= 0``) per class into
  train/val/test (80/10/10 by default), fixed by a seed; it depends only on the class ids, the fractions and the
  seed. It is computed on the *whole* dataset before classes are excluded, so excluding a class never moves the
  other rows between subsets.
* **Excluding classes.** :class:`ClassMap` drops classes (e.g. to hold them out for discovery) and renumbers the
  remaining ones to ``0 .. C'-1`` in their original order, keeping their names.
* **Memory.** If the selected rows of the needed fields fit in ``cache_limit_bytes`` (4 GB by default) they are
  read and normalised once and kept in memory; otherwise rows are read (one HDF5 chunk each) on demand.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from cryomine.data.augment import AugmentConfig, Flip, NoisePool, augment_boxes
from cryomine.data.normalise import normalise
from cryomine.errors import InputError
from cryomine.geometry.wedge import wedge_preserving_flips
from cryomine.io.subtomo_h5 import DatasetHeader, read_header, read_rows
from cryomine.simulate.tilt import TiltSeriesConfig

#: Default in-memory cache limit (bytes).
CACHE_LIMIT_BYTES = 4 * 1024**3
_BLOCK_ROWS = 256
SPLIT_NAMES = ("train", "val", "test")


def open_dataset(path: str | os.PathLike[str]) -> DatasetHeader:
    """Read the header of a dataset that can be trained/evaluated on (InputError if empty or has no labels)."""
    header = read_header(path)
    if header.n_written == 0:
        raise InputError("dataset is empty (n_written = 0)", path)
    if not header.has_ground_truth:
        raise InputError("dataset has no ground truth (has_ground_truth = false), so it cannot be used here", path)
    return header


def dataset_tilts(header: DatasetHeader) -> TiltSeriesConfig:
    """The tilt series a simulated dataset was made with (its ``config``); InputError if it records none."""
    try:
        return TiltSeriesConfig(**header.config["imaging"]["tilt"])
    except (KeyError, TypeError):
        raise InputError("dataset config records no tilt series, which augmentation needs (the flips allowed "
                         "depend on it): train with --no-augment") from None


def row_flips(path: str | os.PathLike[str], header: DatasetHeader, rows: np.ndarray) -> list[tuple[Flip, ...]]:
    """Per row, the wedge-preserving flips of its tilt geometry (:func:`wedge_preserving_flips`): the row's own
    tilt range where the dataset records one (``tilt_range_deg``; imaging varied per batch), else the
    dataset's tilt series."""
    base = dataset_tilts(header)
    ranges = read_rows(path, ("tilt_range_deg",), rows)["tilt_range_deg"] if _has_field(path, "tilt_range_deg") else None
    if ranges is None or not np.all(np.isfinite(ranges)):
        return [wedge_preserving_flips(base.angles_deg)] * len(rows)
    cache: dict[tuple[float, float], tuple[Flip, ...]] = {}
    for lo, hi in {(float(a), float(b)) for a, b in ranges}:
        cache[(lo, hi)] = wedge_preserving_flips(TiltSeriesConfig(lo, hi, base.step_deg).angles_deg)
    return [cache[(float(a), float(b))] for a, b in ranges]


def _has_field(path: str | os.PathLike[str], name: str) -> bool:
    with h5py.File(path, "r") as f:
        return name in f


def dataset_snr(header: DatasetHeader) -> float:
    """The SNR a simulated dataset was calibrated to (``inf`` for noise-free); InputError if it records none."""
    try:
        return float(header.config["imaging"]["snr"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"dataset config records no SNR ({exc})") from None


def _check_finite(raw: dict[str, np.ndarray], rows: np.ndarray, path) -> None:
    """Refuse rows with NaN/inf voxels, naming the field and the first rows (a model trained on them is NaN)."""
    for name, values in raw.items():
        if np.issubdtype(values.dtype, np.floating):
            bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
            if bad.any():
                raise InputError(f"{name} holds NaN or infinite voxels in {int(bad.sum())} row(s), e.g. row(s) "
                                 f"{', '.join(map(str, rows[bad][:5]))}", path)  # fmt: skip


def check_finite_rows(path: str | os.PathLike[str], name: str, rows: np.ndarray) -> None:
    """Refuse (:class:`InputError` naming the file, the array and the first rows) NaN/inf voxels in ``rows`` of
    the array ``name``, read block by block (nothing kept): for readers that stream rows later and must not
    fail half-way."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    with h5py.File(path, "r") as f:
        for start in range(0, rows.size, _BLOCK_ROWS):
            blk = rows[start:start + _BLOCK_ROWS]
            _check_finite({name: f[name][int(blk[0]):int(blk[-1]) + 1][blk - blk[0]]}, blk, path)


@dataclass(frozen=True)
class ClassMap:
    """Which dataset classes a model sees, and their new ids.

    Attributes:
        dataset_names: all class names of the dataset (index = dataset ``class_id``).
        excluded: sorted dataset class ids left out.
    """

    dataset_names: tuple[str, ...]
    excluded: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset_names", tuple(self.dataset_names))
        object.__setattr__(self, "excluded", tuple(sorted(set(int(i) for i in self.excluded))))
        for i in self.excluded:
            if not 0 <= i < len(self.dataset_names):
                raise InputError(f"exclude-class: no class id {i} (dataset classes are 0..{len(self.dataset_names) - 1})")
        if len(self.kept) < 1:
            raise InputError("exclude-class: every class of the dataset is excluded")

    @classmethod
    def build(cls, dataset_names: Sequence[str], exclude: Sequence[int | str] = ()) -> ClassMap:
        """Resolve ``exclude`` entries (dataset class ids, or class names) and build the map."""
        names = list(dataset_names)
        ids: list[int] = []
        for item in exclude:
            text = str(item).strip()
            if text in names:
                ids.append(names.index(text))
            elif text.lstrip("-").isdigit():
                ids.append(int(text))
            else:
                raise InputError(f"exclude-class: unknown class {text!r}; classes are "
                                 + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
        return cls(tuple(names), tuple(ids))

    @property
    def kept(self) -> tuple[int, ...]:
        """Dataset class ids kept, in order; new id ``j`` is dataset id ``kept[j]``."""
        return tuple(i for i in range(len(self.dataset_names)) if i not in self.excluded)

    @property
    def names(self) -> list[str]:
        """Names of the kept classes, indexed by new id."""
        return [self.dataset_names[i] for i in self.kept]

    @property
    def n_classes(self) -> int:
        """Number of kept classes C'."""
        return len(self.kept)

    def lookup(self) -> np.ndarray:
        """``(C + 1,)`` int64 table: ``lookup()[dataset_id + 1]`` = new id, or -1 (excluded / unknown class -1)."""
        table = np.full(len(self.dataset_names) + 1, -1, dtype=np.int64)
        for new, old in enumerate(self.kept):
            table[old + 1] = new
        return table

    def remap(self, dataset_ids: np.ndarray) -> np.ndarray:
        """Dataset class ids ``(n,)`` -> new ids ``(n,)`` (-1 where excluded or unknown)."""
        ids = np.asarray(dataset_ids, dtype=np.int64)
        if ids.size and (ids.min() < -1 or ids.max() >= len(self.dataset_names)):
            raise InputError(f"class_id values must lie in [-1, {len(self.dataset_names) - 1}]")
        return self.lookup()[ids + 1]

    def to_dict(self) -> dict:
        """JSON-able description (names, excluded ids, dataset id -> new id)."""
        return {"dataset_class_names": list(self.dataset_names), "excluded": list(self.excluded),
                "class_names": self.names, "dataset_to_model": {str(o): n for n, o in enumerate(self.kept)}}


def stratified_split(class_id: np.ndarray, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Split row indices per class into ``train``, ``val``, ``test`` (sorted int64 arrays).

    ``class_id`` is the ``(n,)`` dataset class of each row; rows with ``class_id < 0`` are left out. For a class
    with ``m`` rows, ``round(m * f_val)`` go to val and ``round(m * f_test)`` to test (fewer if that would leave
    the class without a training row), the rest to train. Deterministic in ``(class_id, fractions, seed)``.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or not np.all(np.isfinite(fr)) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0) or fr[0] <= 0:
        raise InputError(f"split fractions must be three non-negative numbers summing to 1 with train > 0, got {list(fractions)}")
    ids = np.asarray(class_id, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SPLIT_NAMES}
    for c in np.unique(ids[ids >= 0]):
        rows = rng.permutation(np.flatnonzero(ids == c))
        m = rows.size
        n_val, n_test = int(round(m * fr[1])), int(round(m * fr[2]))
        while n_val + n_test > m - 1 and n_val + n_test > 0:  # keep >= 1 training row per class
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
        parts["val"].append(rows[:n_val])
        parts["test"].append(rows[n_val:n_val + n_test])
        parts["train"].append(rows[n_val + n_test:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64) for k, v in parts.items()}


class SubtomoDataset(Dataset):
    """Rows ``indices`` of a dataset file as normalised tensors for training / evaluation.

    Each item (and :meth:`batch`) is a dict of tensors: ``x`` ``(1, s, s, s)`` float32 normalised subtomogram,
    ``row`` int64 dataset row, and if requested ``label`` int64 (new class id, -1 if unknown/excluded), ``mask``
    ``(s, s, s)`` int64 target mask (0/1), ``density`` ``(1, s, s, s)`` float32 normalised clean density.

    With an active ``augment`` (:class:`cryomine.data.augment.AugmentConfig`), :meth:`batch` called with a
    generator returns augmented boxes (without one: the stored boxes, as for validation). Fresh noise reads the
    rows' noise model (noise-free and unit-noise reconstructions) instead of the stored noisy boxes; the
    unit-noise pool is always held in memory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        indices: Sequence[int] | np.ndarray,
        class_map: ClassMap | None = None,
        *,
        with_mask: bool = False,
        with_density: bool = False,
        cache_limit_bytes: int = CACHE_LIMIT_BYTES,
        augment: AugmentConfig | None = None,
    ) -> None:
        self.path = Path(path)
        self.header = read_header(self.path)
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.header.n_written):
            raise InputError(f"row index out of range [0, {self.header.n_written})", self.path)
        self.class_map = class_map
        self.augment = augment if augment is not None and augment.active else None
        fresh = self.augment is not None and self.augment.fresh_noise
        fields = ["noise_free"] if fresh else ["subtomograms"]
        if with_mask:
            fields.append("target_mask")
        if with_density:
            fields.append("target_density")
        if (with_mask or with_density) and not self.header.has_ground_truth:
            raise InputError("dataset has no ground truth masks/densities", self.path)
        if fresh and not self.header.has_noise_model:
            raise InputError("dataset has no noise model (noise_free / noise_unit, written by 'cryomine simulate' "
                             "since format 2), which fresh-noise augmentation needs: re-simulate it or train "
                             "with --no-fresh-noise", self.path)
        if fresh:  # the stored boxes are not trained on, but a dataset whose boxes are corrupt is refused all the same
            check_finite_rows(self.path, "subtomograms", self.indices)
        self.fields = tuple(fields)
        labels = read_rows(self.path, ("class_id",))["class_id"][self.indices] if class_map is not None else None
        self.labels = None if labels is None else class_map.remap(labels)
        self.flips = row_flips(self.path, self.header, self.indices) if self.augment is not None else []
        self.snr = dataset_snr(self.header) if fresh else math.inf
        self.pool: NoisePool | None = None
        self.groups: np.ndarray | None = None
        s = self.header.size
        if fresh:
            self.pool, self.groups = self._noise_pool(cache_limit_bytes)
            cache_limit_bytes -= self.pool.unit.nbytes
        bytes_per_row = s**3 * (4 + 1 * with_mask + 4 * with_density)
        self.cached = self.indices.size * bytes_per_row <= cache_limit_bytes
        self._cache: dict[str, np.ndarray] | None = None
        self._h5: h5py.File | None = None
        if self.cached and self.indices.size:
            self._cache = self._read(self.indices)

    def _noise_pool(self, limit: int) -> tuple[NoisePool, np.ndarray]:
        need = self.indices.size * self.header.size**3 * 4
        if need > limit:
            raise InputError(f"fresh noise needs the rows' unit-noise reconstructions in memory ({need / 1024**3:.1f} "
                             f"GB) but the cache limit is {limit / 1024**3:.1f} GB: raise --cache-limit-gb or train "
                             "with --no-fresh-noise", self.path)
        rows = read_rows(self.path, ("noise_unit", "noise_group"), self.indices)
        if not np.all(np.isfinite(rows["noise_unit"])):
            raise InputError("noise_unit holds NaN or infinite values", self.path)
        return NoisePool(rows["noise_unit"].astype(np.float32, copy=False), rows["noise_group"]), rows["noise_group"]

    @property
    def size(self) -> int:
        """Box size ``s`` of the subtomograms."""
        return self.header.size

    def __len__(self) -> int:
        return int(self.indices.size)

    def _read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Read and normalise ``rows`` (dataset row numbers, any order) from the file, in blocks of rows."""
        if self._h5 is None and not self.cached:
            self._h5 = h5py.File(self.path, "r")  # kept open for on-demand reads
        f = self._h5 if self._h5 is not None else h5py.File(self.path, "r")
        try:
            uniq, inverse = np.unique(rows, return_inverse=True)  # h5py wants increasing unique indices
            s = self.header.size
            key = "clean" if "noise_free" in self.fields else "x"
            out = {key: np.empty((uniq.size, s, s, s), np.float32)}
            if "target_mask" in self.fields:
                out["mask"] = np.empty((uniq.size, s, s, s), np.uint8)
            if "target_density" in self.fields:
                out["density"] = np.empty((uniq.size, s, s, s), np.float32)
            for start in range(0, uniq.size, _BLOCK_ROWS):
                blk = uniq[start:start + _BLOCK_ROWS]
                lo, hi = int(blk[0]), int(blk[-1]) + 1
                dense = hi - lo <= 2 * blk.size  # one contiguous read beats a long point selection
                raw = {name: (f[name][lo:hi][blk - lo] if dense else f[name][blk]) for name in self.fields}
                _check_finite(raw, blk, self.path)
                dst = slice(start, start + blk.size)
                if key == "x":
                    out["x"][dst] = normalise(raw["subtomograms"])
                else:  # noise-free reconstruction, kept raw: fresh noise is calibrated on it
                    out["clean"][dst] = raw["noise_free"]
                if "mask" in out:
                    out["mask"][dst] = raw["target_mask"] > 0
                if "density" in out:
                    out["density"][dst] = normalise(raw["target_density"])
        finally:
            if f is not self._h5:
                f.close()
        if np.array_equal(uniq, rows):
            return out
        return {k: v[inverse] for k, v in out.items()}

    def batch(self, positions: Sequence[int] | np.ndarray, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Stacked items at ``positions`` (0 .. len-1, any order) as a dict of tensors (see the class docstring).

        With ``rng`` and an active augmentation, the boxes are augmented (drawing from ``rng``).
        """
        pos = np.asarray(positions, dtype=np.int64)
        data = {k: v[pos] for k, v in self._cache.items()} if self._cache is not None else self._read(self.indices[pos])
        if "clean" in data and (rng is None or self.augment is None):
            raise InputError("this dataset view draws fresh noise: batches need a random generator")
        if self.augment is not None and rng is not None:
            fresh = "clean" in data
            data = augment_boxes(data, None if self.groups is None else self.groups[pos], self.augment,
                                 flips=[self.flips[p] for p in pos], pool=self.pool, snr=self.snr, rng=rng)
            if fresh:  # stored inputs are normalised already; flips and shifts keep them so
                data["x"] = normalise(data["x"])
        out = {"x": torch.from_numpy(np.ascontiguousarray(data["x"][:, None])), "row": torch.from_numpy(self.indices[pos])}
        if "mask" in data:
            out["mask"] = torch.from_numpy(data["mask"].astype(np.int64))
        if "density" in data:
            out["density"] = torch.from_numpy(np.ascontiguousarray(data["density"][:, None]))
        if self.labels is not None:
            out["label"] = torch.from_numpy(self.labels[pos])
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.batch([i]).items()}

    def close(self) -> None:
        """Close the HDF5 handle used for on-demand reads (if any)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
