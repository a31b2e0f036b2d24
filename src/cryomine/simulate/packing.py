"""Compiled rejection sampling of non-overlapping masks (numba): the inner loop of scene packing.

A scene is an occupancy grid ``occupied`` (``(s, s, s)`` bool, z, y, x) and a density grid of the same shape.
Candidates are pre-drawn (class ``k``, bank entry ``j``, centre voxel ``c``); they are taken in order, exactly as
a Python loop would take them one at a time: candidate ``i`` is accepted iff its mask cube, centred at ``c``
(cube voxel ``m // 2`` on ``c``, clipped at the grid borders), has at least one mask voxel inside the grid and
none on an occupied voxel. An accepted cube marks its mask voxels occupied and adds its whole density cube.
Packing stops when the occupied fraction of the ``inner`` box reaches ``target_fraction`` or after
``max_attempts`` consecutive rejections; when the candidates run out first, the caller draws more and calls
again with the returned state (the result is the same as one long stream).

The bank's cubes are passed flat: entry ``(k, j)`` of edge ``m = sizes[k]`` starts at ``offsets[k] + j * m**3``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _fits(occupied, voxels, v0, v1, c0):
    """Whether mask voxels ``voxels[v0:v1]`` (cube coordinates, in random order so that an overlap is usually
    found after a few reads) placed at grid voxel ``c0`` overlap nothing and at least one lies on the grid."""
    d, h, w = occupied.shape
    any_inside = False
    for v in range(v0, v1):
        a, b, c = voxels[v, 0] + c0[0], voxels[v, 1] + c0[1], voxels[v, 2] + c0[2]
        if 0 <= a < d and 0 <= b < h and 0 <= c < w:
            if occupied[a, b, c]:
                return False
            any_inside = True
    return any_inside


@numba.njit(cache=True, nogil=True)
def _paste(occupied, density, masks, cubes, base, m, lo, hi, c0, inner_lo, inner_hi):
    """Mark the mask voxels occupied, add the density cube; returns the mask voxels added inside ``inner``."""
    added = 0
    for a in range(lo[0], hi[0]):
        for b in range(lo[1], hi[1]):
            row = base + (((a - c0[0]) * m) + (b - c0[1])) * m - c0[2]
            for c in range(lo[2], hi[2]):
                density[a, b, c] += cubes[row + c]
                if masks[row + c]:
                    occupied[a, b, c] = True
                    if inner_lo <= a < inner_hi and inner_lo <= b < inner_hi and inner_lo <= c < inner_hi:
                        added += 1
    return added


@numba.njit(cache=True, nogil=True)
def pack_candidates(occupied, density, masks, cubes, offsets, sizes, entries, voxels, voxel_start, ks, js, centres, inner_lo, inner_hi,
                    count, target_count, failures, max_attempts, accepted):  # fmt: skip
    """Take candidates in order (module docstring). ``count``: occupied voxels in the inner box so far;
    ``target_count``: stop when ``count >= target_count`` (a float); ``accepted`` (len(ks),) int8 is set to 1 for
    a candidate that fitted and added voxels inside ``inner``, 2 for one that fitted outside it.

    Returns ``(next candidate, count, failures, done)``.
    """
    shape = occupied.shape
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    c0 = np.empty(3, np.int64)
    i = 0
    n = ks.shape[0]
    while i < n:
        if count >= target_count or failures >= max_attempts:
            return i, count, failures, True
        k, j = ks[i], js[i]
        m = sizes[k]
        base = offsets[k] + j * m * m * m
        empty = False
        for ax in range(3):
            c0[ax] = centres[i, ax] - m // 2  # grid voxel of cube voxel 0
            lo[ax] = max(c0[ax], 0)
            hi[ax] = min(c0[ax] + m, shape[ax])
            if hi[ax] <= lo[ax]:
                empty = True
        e = entries[k] + j
        if empty or not _fits(occupied, voxels, voxel_start[e], voxel_start[e + 1], c0):
            failures += 1
        else:
            failures = 0
            added = _paste(occupied, density, masks, cubes, base, m, lo, hi, c0, inner_lo, inner_hi)
            count += added
            accepted[i] = 1 if added > 0 else 2
        i += 1
    return i, count, failures, count >= target_count or failures >= max_attempts


def flat_bank(cubes: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The bank as flat arrays for :func:`pack_candidates` from per-class ``(bank_size, m, m, m)`` cubes and
    masks: ``(masks uint8, cubes float32, offsets, sizes, entries, voxels, voxel_start)``; ``voxels`` lists the
    mask voxels of entry ``e = entries[k] + j`` (cube coordinates, a fixed random order) at
    ``voxel_start[e]:voxel_start[e + 1]``."""
    sizes = np.array([c.shape[1] for c in cubes], dtype=np.int64)
    lengths = np.array([c.size for c in cubes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat_masks = np.concatenate([m.reshape(-1) for m in masks]).astype(np.uint8)
    flat_cubes = np.concatenate([c.reshape(-1) for c in cubes]).astype(np.float32)
    order = np.random.default_rng(0)  # the order only changes how soon an overlap is found, never the result
    lists = [order.permutation(np.argwhere(mask)) for m in masks for mask in m]
    entries = np.concatenate([[0], np.cumsum([len(m) for m in masks])[:-1]]).astype(np.int64)
    voxel_start = np.concatenate([[0], np.cumsum([len(v) for v in lists])]).astype(np.int64)
    voxels = np.concatenate(lists).astype(np.int64) if lists else np.zeros((0, 3), np.int64)
    return flat_masks, flat_cubes, offsets, sizes, entries, voxels, voxel_start
