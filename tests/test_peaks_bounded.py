"""Peak extraction in bounded memory gives exactly what the whole-map, all-candidates computation gives."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from cryomine.pick.peaks import Candidates, local_maxima, map_candidates, select_peaks, suppression_bound


def _brute_force(coords, scores, radius, top_n=None):
    """Greedy suppression by comparing every candidate with every kept one (same order and tie rule)."""
    order = np.lexsort((coords[:, 2], coords[:, 1], coords[:, 0], -scores.astype(np.float64)))
    kept = []
    for i in order:
        if all(np.sum((coords[i] - coords[j]) ** 2) > (radius * (1 - 1e-9)) ** 2 for j in kept):
            kept.append(i)
            if top_n is not None and len(kept) == top_n:
                break
    return coords[kept], scores[kept]


@pytest.mark.parametrize("radius", [1.5, 4.0, 7.3])
def test_greedy_suppression_equals_brute_force(radius):
    rng = np.random.default_rng(int(radius * 10))
    coords = rng.integers(0, [23, 40, 31], size=(600, 3))
    scores = np.round(rng.normal(size=600), 1).astype(np.float32)  # many ties
    got = select_peaks(Candidates(coords, scores), radius)
    want_c, want_s = _brute_force(coords, scores, radius)
    np.testing.assert_array_equal(got.coords_zyx, want_c)
    np.testing.assert_array_equal(got.scores, want_s)
    top = select_peaks(Candidates(coords, scores), radius, top_n=7)
    np.testing.assert_array_equal(top.coords_zyx, want_c[:7])


def test_exactly_min_distance_apart_is_allowed():
    coords = np.array([[0, 0, 0], [0, 0, 4], [0, 3, 0]])
    out = select_peaks(Candidates(coords, np.float32([3, 2, 1])), 4.0)
    np.testing.assert_array_equal(out.scores, [3, 2])  # 4 voxels away kept, 3 voxels away suppressed


def test_suppression_bound_counts_voxels_in_the_open_ball():
    assert suppression_bound(1.0) == 0  # no other voxel is closer than 1
    assert suppression_bound(1.5) == 18  # 6 faces + 12 edges (sqrt 2 < 1.5), not the 8 corners (sqrt 3)
    assert suppression_bound(2.0) == 26


@pytest.mark.parametrize("top_n", [None, 3, 25])
def test_slabs_and_cap_give_the_same_picks(top_n):
    rng = np.random.default_rng(1)
    scores = ndimage.gaussian_filter(rng.normal(size=(37, 30, 26)), 1.2).astype(np.float32)  # odd, non-cubic
    whole = local_maxima(scores, floor=-np.inf)
    slabs = map_candidates(scores, -np.inf, slab_voxels=30 * 26 * 4)  # 4 z-planes per slab
    assert len(slabs) == len(whole)
    key = lambda c: sorted(map(tuple, c.coords_zyx))  # noqa: E731
    assert key(slabs) == key(whole)
    capped = map_candidates(scores, -np.inf, top_n=top_n, min_distance_vox=1.8, slab_voxels=30 * 26 * 5)
    if top_n is not None:
        assert len(capped) == min(len(whole), top_n * (1 + suppression_bound(1.8)))
    a = select_peaks(whole, 1.8, top_n=top_n)
    b = select_peaks(capped, 1.8, top_n=top_n)
    np.testing.assert_array_equal(a.coords_zyx, b.coords_zyx)
    np.testing.assert_array_equal(a.scores, b.scores)


def _peak_bytes(scores: np.ndarray, **kw) -> int:
    """tracemalloc's peak (numpy allocations are traced) of map_candidates beyond the input map."""
    tracemalloc.start()
    try:
        map_candidates(scores, -np.inf, top_n=10, min_distance_vox=2.0, slab_voxels=2**16, **kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_extraction_memory_does_not_grow_with_the_number_of_local_maxima():
    """White noise has a local maximum in about every 14 voxels; four times the map (four times the maxima) must
    not need more memory: a few slabs (2**16 voxels each) and the capped candidates, whatever the count."""
    rng = np.random.default_rng(3)
    small = rng.standard_normal((32, 64, 64), dtype=np.float32)
    big = rng.standard_normal((128, 64, 64), dtype=np.float32)
    assert len(local_maxima(big, floor=-np.inf)) > 4 * len(local_maxima(small, floor=-np.inf)) * 0.9 > 5000
    p_small, p_big = _peak_bytes(small), _peak_bytes(big)
    assert p_big < 1.25 * p_small
    assert p_big < 8 * 2**16 * 4  # a few slab-sized float32 buffers
