"""Boxes in volumes: cut a window or a particle box out of a ``(d, h, w)`` volume, place a cube in a box.

One rule everywhere (extraction, averaging from STAR + tomogram, template matching tiles, discovery): a box of
edge ``n`` around a position ``p`` (voxels, z y x, any float) has its voxel ``n // 2`` on the voxel nearest ``p``
(``rint``, half to even); parts outside the volume read ``fill``. Volumes may be memory maps: only the overlap is
read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["box_starts", "cut_boxes", "paste_mask", "place_in_box", "read_window", "window_slices"]


def window_slices(start_zyx: Sequence[int], shape_zyx: Sequence[int], volume_shape_zyx: Sequence[int]
                  ) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """``(volume slices, window slices)`` of the overlap of the window ``[start, start + shape)`` with a volume of
    ``volume_shape_zyx``; None when they do not overlap."""
    src, dst = [], []
    for a, n, size in zip(start_zyx, shape_zyx, volume_shape_zyx):
        a, n = int(a), int(n)
        lo, hi = max(a, 0), min(a + n, int(size))
        if hi <= lo:
            return None
        src.append(slice(lo, hi))
        dst.append(slice(lo - a, hi - a))
    return tuple(src), tuple(dst)


def read_window(volume: np.ndarray, start_zyx: Sequence[int], shape_zyx: Sequence[int], fill: float = 0.0) -> np.ndarray:
    """The ``shape_zyx`` float32 window of a ``(d, h, w)`` volume starting at voxel ``start_zyx``; ``fill`` outside."""
    out = np.full(tuple(int(s) for s in shape_zyx), fill, np.float32)
    overlap = window_slices(start_zyx, shape_zyx, volume.shape)
    if overlap is not None:
        out[overlap[1]] = volume[overlap[0]]
    return out


def box_starts(centres_zyx: np.ndarray, size: int) -> np.ndarray:
    """``(n, 3)`` int64 first voxels of the ``size``³ boxes around ``(n, 3)`` positions (voxel ``size // 2`` on
    the nearest voxel)."""
    return np.rint(np.asarray(centres_zyx, np.float64).reshape(-1, 3)).astype(np.int64) - size // 2


def cut_boxes(volume: np.ndarray, centres_zyx: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """``(n, size, size, size)`` float32 boxes of a ``(d, h, w)`` volume around ``(n, 3)`` positions (z y x voxels)."""
    starts = box_starts(centres_zyx, size)
    out = np.empty((len(starts), size, size, size), np.float32)
    for i, start in enumerate(starts):
        out[i] = read_window(volume, start, (size, size, size), fill)
    return out


def paste_mask(labels: np.ndarray, centre_zyx: Sequence[float], mask: np.ndarray, label: int, threshold: float = 0.5) -> None:
    """Set ``label`` in a ``(d, h, w)`` label volume where the cubic ``mask`` around ``centre_zyx`` (placed as
    :func:`cut_boxes` cuts it: the inverse) exceeds ``threshold``; in place, clipped at the faces."""
    size = mask.shape[0]
    start = box_starts(np.asarray(centre_zyx, np.float64), size)[0]
    overlap = window_slices(start, mask.shape, labels.shape)
    if overlap is not None:
        region = labels[overlap[0]]
        region[mask[overlap[1]] > threshold] = label


def place_in_box(cube: np.ndarray, shape_zyx: Sequence[int], fill: float = 0.0) -> np.ndarray:
    """Crop / pad a ``(a, b, c)`` array into a ``shape_zyx`` float32 box, its voxel ``m // 2`` onto ``n // 2`` per
    axis (the centre convention above, so cutting and placing are inverse where nothing is cropped)."""
    start = [m // 2 - s // 2 for m, s in zip(cube.shape, shape_zyx)]  # cube index of the box's voxel 0
    return read_window(cube, start, shape_zyx, fill)
