"""Overlapping tiles for FFT correlation of tomograms larger than memory, and memory-mapped MRC access.

A correlation with an ``(m, m, m)`` template (centre voxel ``c = m // 2``) at output voxel ``p`` reads input
voxels ``p - c .. p + m - 1 - c``. A tile therefore computes the scores of an output region ``[lo, hi)`` from the
input window ``[lo - c, lo - c + L)`` with ``L >= (hi - lo) + m - 1`` (rounded up to a fast FFT size): the
circular correlation is exact there, with no wrap-around. The output regions are the tiles' *cores* (a partition
of the volume) grown by a ``halo`` (1 voxel, for the local-maximum test at core edges). Input voxels outside the
tomogram read as 0 (the tomogram is standardised to zero mean first), so a whole tomogram processed as one tile
and the same tomogram processed in many tiles give the same scores, up to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.boxes import window_slices
from cryomine.geometry.validate import volume_stats  # re-exported: the tiling readers use it
from cryomine.io.mrc import open_mrc_mmap  # re-exported: the tiling readers use it

__all__ = ["Tile", "plan_tiles", "read_window", "good_fft_size", "open_mrc_mmap", "volume_stats", "tile_bytes"]


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` (global output slices, a partition of the volume), ``region`` (core grown by the halo,
    clipped to the volume: the scores this tile computes), ``window_start_zyx`` (global index of the input
    window's first voxel, may be negative) and ``window_shape_zyx`` (the FFT size ``L`` per axis)."""

    core: tuple[slice, slice, slice]
    region: tuple[slice, slice, slice]
    window_start_zyx: tuple[int, int, int]
    window_shape_zyx: tuple[int, int, int]

    @property
    def region_shape(self) -> tuple[int, int, int]:
        return tuple(s.stop - s.start for s in self.region)  # type: ignore[return-value]

    @property
    def core_in_region(self) -> tuple[slice, slice, slice]:
        """The core as slices of the region's array."""
        return tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(self.core, self.region))  # type: ignore[return-value]


def good_fft_size(n: int) -> int:
    """The smallest integer ``>= n`` whose prime factors are 2, 3 and 5 (fast for every FFT library)."""
    n = max(int(n), 1)
    while True:
        k = n
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return n
        n += 1


def tile_bytes(window_voxels: int, angle_batch: int, workers: int = 1, noise: bool = False) -> int:
    """Working memory (bytes) of correlating one tile of ``window_voxels`` with ``angle_batch`` angles at a time
    on ``workers`` threads (with a phase-randomised template too, ``noise``): per window voxel, 32 bytes shared
    (the window's spectra, ``1 / sigma_M``, the output maps' pages of the core) and per worker ``28 + 6 b``
    (running maxima, the batch's spectra and inverse transforms), x1.7 with ``noise``. Measured peak RSS on this
    CPU build (scipy.fft): 56, 89, 124 and 192 bytes per window voxel for 1 worker x 1 angle, 2 x 1, 2 x 4 and
    2 x 4 with noise; the model gives 66, 100, 136 and 209."""
    per_worker = (28 + 6 * int(angle_batch)) * (1.7 if noise else 1.0)
    return int(window_voxels * (32 + max(1, int(workers)) * per_worker))


def _splits(n: int, pieces: int) -> list[tuple[int, int]]:
    size = math.ceil(n / pieces)
    return [(a, min(a + size, n)) for a in range(0, n, size)]


MAX_TILE_OVERHEAD = 16.0  # a --tile-size that multiplies the FFT work by more than this is refused


def plan_tiles(
    shape_zyx: tuple[int, int, int],
    template_size: int,
    core_vox: int | None = None,
    memory_bytes: int | None = None,
    angle_batch: int = 1,
    halo: int = 1,
    pad_edges: bool = True,
    workers: int = 1,
    noise: bool = False,
) -> list[Tile]:
    """Tiles covering a ``(d, h, w)`` volume for an ``(m, m, m)`` template (``m = template_size``).

    ``core_vox`` caps the core edge on every axis; otherwise (``None``) the volume is one tile unless a tile
    exceeds ``memory_bytes`` (see :func:`tile_bytes` with ``angle_batch``, ``workers`` and ``noise``), in which
    case the longest core axis is split until tiles fit (down to cores of ``m`` voxels; the caller checks that
    they then fit). With ``pad_edges=False`` the whole volume is one tile whose window is the
    volume itself (rounded up to a fast FFT size): correlations wrap around at the faces (the circular
    correlation of PyTom and pyTME's default), which saves the ``m - 1`` voxels of padding per axis. Raises
    :class:`InputError` if the template is larger than the volume, or if ``pad_edges=False`` and one tile does
    not fit ``memory_bytes``.
    """
    shape = tuple(int(s) for s in shape_zyx)
    m = int(template_size)
    if any(m > s for s in shape):
        raise InputError(f"template box ({m} voxels) is larger than the tomogram {'x'.join(map(str, shape))}", "--template")
    if not pad_edges:
        win = tuple(good_fft_size(s) for s in shape)
        if core_vox is not None or (memory_bytes is not None and tile_bytes(int(np.prod(win)), angle_batch, workers, noise) > memory_bytes):
            raise InputError("unpadded (circular) matching needs the whole tomogram as one tile: "
                             "drop --tile-size, raise --memory-gb, or keep edge padding", "--no-pad-edges")  # fmt: skip
        whole = tuple(slice(0, s) for s in shape)
        return [Tile(core=whole, region=whole, window_start_zyx=(0, 0, 0), window_shape_zyx=win)]  # type: ignore[arg-type]
    pieces = [1, 1, 1] if core_vox is None else [math.ceil(s / max(int(core_vox), 1)) for s in shape]
    if core_vox is not None:  # every tile redoes the correlation over its core plus the template's reach
        work = np.prod([p * good_fft_size(math.ceil(s / p) + 2 * halo + m - 1) for s, p in zip(shape, pieces)], dtype=np.float64)
        whole = np.prod([good_fft_size(s + m - 1) for s in shape], dtype=np.float64)
        if work > MAX_TILE_OVERHEAD * whole:
            raise InputError(f"tiles of {int(core_vox)} voxels would multiply the work by {work / whole:.3g} (template box {m} "
                             f"voxels); use tiles of at least {m} voxels or leave --tile-size out", "--tile-size")  # fmt: skip

    def window(pc: list[int]) -> tuple[int, int, int]:
        return tuple(good_fft_size(math.ceil(s / p) + 2 * halo + m - 1) for s, p in zip(shape, pc))  # type: ignore[return-value]

    if core_vox is None and memory_bytes is not None:
        while tile_bytes(int(np.prod(window(pieces))), angle_batch, workers, noise) > memory_bytes:
            sizes = [math.ceil(s / p) for s, p in zip(shape, pieces)]
            ax = int(np.argmax(sizes))
            if sizes[ax] <= m:
                break
            pieces[ax] += 1
    c = m // 2
    tiles = []
    for z0, z1 in _splits(shape[0], pieces[0]):
        for y0, y1 in _splits(shape[1], pieces[1]):
            for x0, x1 in _splits(shape[2], pieces[2]):
                core = ((z0, z1), (y0, y1), (x0, x1))
                region = tuple((max(a - halo, 0), min(b + halo, n)) for (a, b), n in zip(core, shape))
                win = tuple(good_fft_size((b - a) + m - 1) for a, b in region)
                tiles.append(
                    Tile(
                        core=tuple(slice(a, b) for a, b in core),  # type: ignore[arg-type]
                        region=tuple(slice(a, b) for a, b in region),  # type: ignore[arg-type]
                        window_start_zyx=tuple(a - c for a, _ in region),  # type: ignore[arg-type]
                        window_shape_zyx=win,  # type: ignore[arg-type]
                    )
                )
    return tiles


def read_window(
    volume: np.ndarray, start_zyx: tuple[int, int, int], shape_zyx: tuple[int, int, int], mean: float = 0.0, std: float = 1.0
) -> np.ndarray:
    """The ``shape_zyx`` window of ``volume`` (``(d, h, w)``, e.g. a memory map) starting at ``start_zyx``,
    standardised as ``(v - mean) / std``, with 0 outside the volume. Returns float32."""
    out = np.zeros(shape_zyx, np.float32)
    overlap = window_slices(start_zyx, shape_zyx, volume.shape)
    if overlap is not None:
        block = np.asarray(volume[overlap[0]], dtype=np.float32)
        out[overlap[1]] = (block - np.float32(mean)) / np.float32(std)
    return out
