"""The on-disk subtomogram dataset: one chunked HDF5 file, written as it goes and resumable.

Layout (``N`` = planned number of subtomograms, ``s`` = box size, arrays (z, y, x)):

============================  ==================  ===============================================================
dataset                       dtype, shape        content
============================  ==================  ===============================================================
``subtomograms``              float32 (N,s,s,s)   the (noisy) subtomograms, protein bright; chunks of one
``target_density``            float32 (N,s,s,s)   clean target density (no CTF/noise/wedge/neighbours), same pose
``target_mask``               uint8 (N,s,s,s)     target segmentation (1 = target voxel)
``class_id``                  int32 (N,)          index into the ``class_names`` attribute (-1 = unknown)
``eulers_zyz``                float32 (N,3)       target orientation, RELION ZYZ (rot, tilt, psi), degrees
``shifts_zyx``                float32 (N,3)       target centre minus box centre (voxel ``s // 2``), voxels
``neighbour_classes``         int16 (N,K)         class ids of neighbours reaching the box, padded with -1
``volume_fraction``           float32 (N,)        fraction of the box covered by molecule masks
``snr_measured``              float32 (N,)        var(noise-free) / var(noisy - noise-free) in the box
``coords_xyz``                float32 (N,3)       optional: position in a source tomogram (voxels, x, y, z)
``noise_free``                float32 (N,s,s,s)   noise model (simulated, format 2): the noise-free reconstruction S
``noise_unit``                float32 (N,s,s,s)   noise model: reconstruction N1 of unit-variance projection noise
``noise_sigma``               float32 (N,)        noise model: projection-noise std, ``subtomograms = S + sigma N1``
``noise_group``               int32 (N,)          noise model: rows with the same value share one imaging geometry
``tilt_range_deg``            float32 (N,2)       with the noise model: the row's lowest and highest tilt, degrees
``defocus_um``                float32 (N,)        with the noise model: the row's defocus, µm (positive = underfocus)
============================  ==================  ===============================================================

The noise model (``has_noise_model``) lets training draw a fresh noise realisation every time a box is seen
(:mod:`cryomine.data.augment`): ``N1`` of rows in one ``noise_group`` are independent draws of the same noise
process, so any unit-norm combination of them is one more draw with the same statistics.

File attributes: ``format`` (``"cryomine-subtomograms"``), ``format_version``, ``cryomine_version``,
``class_names`` (JSON list), ``voxel_size_a``, ``size``, ``n_planned``, ``n_written`` (rows ``[0, n_written)``
are complete), ``has_ground_truth`` and ``config`` (the resolved generating config, JSON). Rows are written in
index order and ``n_written`` is advanced (and flushed) only after a whole batch has been flushed to the file, so an
interrupted writer loses at most the batch in flight and ``resume`` continues from ``n_written``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cryomine.errors import CryomineWarning, InputError

FORMAT = "cryomine-subtomograms"
FORMAT_VERSION = 2
MAX_NEIGHBOURS = 64
NOISE_FIELDS = ("noise_free", "noise_unit", "noise_sigma", "noise_group")
_VOLUME_FIELDS = ("subtomograms", "target_density", "target_mask", "noise_free", "noise_unit")
_GT_FIELDS = ("target_density", "target_mask", "class_id", "eulers_zyz", "shifts_zyx", "neighbour_classes", "volume_fraction", "snr_measured")


@dataclass(frozen=True)
class DatasetHeader:
    """The attributes of a dataset file."""

    class_names: list[str]
    voxel_size_a: float
    size: int
    n_planned: int
    n_written: int
    has_ground_truth: bool
    config: dict
    cryomine_version: str
    has_noise_model: bool = False
    has_coords: bool = False


def create_dataset(
    path: str | os.PathLike[str],
    *,
    n: int,
    size: int,
    voxel_size_a: float,
    class_names: list[str],
    config: Mapping[str, object],
    cryomine_version: str,
    has_ground_truth: bool = True,
    with_coords: bool = False,
    with_noise_model: bool = False,
) -> None:
    """Create an empty dataset file for ``n`` subtomograms of ``size``³ voxels (``n_written = 0``).

    ``with_noise_model`` adds the :data:`NOISE_FIELDS` (see the module docstring)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    chunk = (1, size, size, size)
    with h5py.File(p, "w") as f:
        f.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            cryomine_version=cryomine_version,
            class_names=json.dumps(list(class_names)),
            voxel_size_a=float(voxel_size_a),
            size=int(size),
            n_planned=int(n),
            n_written=0,
            has_ground_truth=bool(has_ground_truth),
            config=json.dumps(config, sort_keys=True),
        )
        f.create_dataset("subtomograms", (n, size, size, size), dtype="f4", chunks=chunk)
        f.create_dataset("class_id", (n,), dtype="i4", fillvalue=-1)
        if has_ground_truth:
            f.create_dataset("target_density", (n, size, size, size), dtype="f4", chunks=chunk, compression="lzf")
            f.create_dataset("target_mask", (n, size, size, size), dtype="u1", chunks=chunk, compression="lzf")
            f.create_dataset("eulers_zyz", (n, 3), dtype="f4")
            f.create_dataset("shifts_zyx", (n, 3), dtype="f4")
            f.create_dataset("neighbour_classes", (n, MAX_NEIGHBOURS), dtype="i2", fillvalue=-1)
            f.create_dataset("volume_fraction", (n,), dtype="f4")
            f.create_dataset("snr_measured", (n,), dtype="f4")
        if with_coords:
            f.create_dataset("coords_xyz", (n, 3), dtype="f4")
        if with_noise_model:
            f.create_dataset("noise_free", (n, size, size, size), dtype="f4", chunks=chunk)
            f.create_dataset("noise_unit", (n, size, size, size), dtype="f4", chunks=chunk)
            f.create_dataset("noise_sigma", (n,), dtype="f4")
            f.create_dataset("noise_group", (n,), dtype="i4", fillvalue=-1)
            f.create_dataset("tilt_range_deg", (n, 2), dtype="f4", fillvalue=np.nan)
            f.create_dataset("defocus_um", (n,), dtype="f4", fillvalue=np.nan)


def write_rows(path: str | os.PathLike[str], start: int, rows: Mapping[str, np.ndarray]) -> int:
    """Write ``rows`` (field -> array with a leading batch axis) at ``[start, start + b)``; advance ``n_written``.

    Rows must be written in order: ``start`` must equal the current ``n_written``. Returns the new count.
    """
    with h5py.File(path, "r+") as f:
        n_written = int(f.attrs["n_written"])
        if start != n_written:
            raise InputError(f"rows must be appended in order: next row is {n_written}, got {start}", path)
        b = None
        for name, values in rows.items():
            if name not in f:
                raise InputError(f"dataset has no field {name!r}", path)
            arr = np.asarray(values)
            if name == "neighbour_classes":
                arr = arr[:, :MAX_NEIGHBOURS]
                full = np.full((arr.shape[0], MAX_NEIGHBOURS), -1, dtype=np.int16)
                full[:, : arr.shape[1]] = arr
                arr = full
            b = arr.shape[0] if b is None else b
            if arr.shape[0] != b:
                raise ValueError("all fields of a batch need the same number of rows")
            f[name][start : start + b] = arr
        # rows first, the count after: one flush for both let a killed writer leave a count whose last rows'
        # chunks never reached the file (a resumed dataset with a row of zeros)
        f.flush()
        f.attrs["n_written"] = start + (b or 0)
        f.flush()
        return int(f.attrs["n_written"])


def _check_arrays(f: h5py.File, p: Path) -> None:
    """The header's counts against the arrays: every box array ``(n, s, s, s)`` of a real type and at least
    ``n_written`` rows long (a file whose header claims more rows than it holds is refused)."""
    n_written, n_planned, size = int(f.attrs["n_written"]), int(f.attrs["n_planned"]), int(f.attrs["size"])
    if not 0 <= n_written <= n_planned:
        raise InputError(f"header says {n_written} rows written of {n_planned} planned", p)
    truth = ("target_density", "target_mask")  # what training and evaluation read besides the boxes and labels
    required = ("subtomograms", "class_id") + (truth if bool(f.attrs.get("has_ground_truth", False)) else ())
    for name in required:
        if name not in f:
            raise InputError(f"dataset has no {name!r} array"
                             + (" (its header says it has ground truth)" if name in truth else ""), p)
    for name in _VOLUME_FIELDS:
        if name not in f:
            continue
        ds = f[name]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 4 or tuple(ds.shape[1:]) != (size,) * 3:
            raise InputError(f"{name!r} has shape {getattr(ds, 'shape', None)}, not (n, {size}, {size}, {size})", p)
        if ds.dtype.kind not in "fiu":
            raise InputError(f"{name!r} holds {ds.dtype}, not numbers", p)
    rows = {name: f[name].shape[0] for name in f if isinstance(f[name], h5py.Dataset) and f[name].ndim >= 1}
    short = min(rows, key=rows.get)
    if rows[short] < n_written:
        raise InputError(f"header says {n_written} rows are written but the file holds {rows[short]}"
                         + ("" if short == "subtomograms" else f" ({short!r})"), p)


def read_header(path: str | os.PathLike[str]) -> DatasetHeader:
    """Read and validate the attributes of a dataset file (InputError naming the file on any problem)."""
    p = Path(path)
    if not p.exists():
        raise InputError("dataset not found", p)
    if not p.is_file():  # a folder, a named pipe (h5py would wait on it forever), a device
        raise InputError("not a regular file", p)
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError("not a cryomine subtomogram dataset (no 'format' attribute)", p)
            _check_arrays(f, p)
            header = DatasetHeader(
                class_names=json.loads(f.attrs["class_names"]),
                voxel_size_a=float(f.attrs["voxel_size_a"]),
                size=int(f.attrs["size"]),
                n_planned=int(f.attrs["n_planned"]),
                n_written=int(f.attrs["n_written"]),
                has_ground_truth=bool(f.attrs["has_ground_truth"]),
                config=json.loads(f.attrs["config"]),
                cryomine_version=str(f.attrs["cryomine_version"]),
                has_noise_model=all(name in f for name in NOISE_FIELDS),
                has_coords="coords_xyz" in f,
            )
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"not a readable cryomine dataset ({' '.join(str(exc).split())[:160]})", p) from None
    _warn_if_partial(p, header)
    return header


_WARNED_PARTIAL: set[tuple[str, int]] = set()


def _warn_if_partial(p: Path, header: DatasetHeader) -> None:
    """Say once per process and state that a dataset holds fewer rows than planned (an interrupted simulation):
    every reader works on the written rows, and names the dataset as partial."""
    key = (str(p.resolve()), header.n_written)
    if 0 < header.n_written < header.n_planned and key not in _WARNED_PARTIAL:  # an empty one is refused by its readers
        _WARNED_PARTIAL.add(key)
        warnings.warn(f"{p}: partial dataset: {header.n_written} of {header.n_planned} rows written (an interrupted "
                      "'cryomine simulate subtomograms'; finish it with --resume); using the written rows",
                      CryomineWarning, stacklevel=3)


def read_rows(path: str | os.PathLike[str], fields: tuple[str, ...], index: np.ndarray | slice | None = None) -> dict[str, np.ndarray]:
    """Read ``fields`` for the rows ``index`` (integer array, any order, or slice; default: all written rows)."""
    header = read_header(path)
    with h5py.File(path, "r") as f:
        out = {}
        for name in fields:
            if name not in f:
                raise InputError(f"dataset has no field {name!r}", path)
            ds = f[name]
            if index is None:
                out[name] = ds[: header.n_written]
            elif isinstance(index, slice):
                out[name] = ds[index]
            else:
                idx = np.asarray(index)
                if idx.size and (idx.min() < 0 or idx.max() >= header.n_written):
                    raise InputError(f"row index out of range [0, {header.n_written})", path)
                uniq, inverse = np.unique(idx, return_inverse=True)  # h5py needs increasing, unique indices
                out[name] = ds[uniq][inverse] if idx.size else ds[0:0]
        return out
