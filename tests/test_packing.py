"""The compiled packing kernel equals the plain Python rejection loop it replaced, on the same candidate stream."""

from __future__ import annotations

import numpy as np
import pytest

from cryomine.simulate.packing import flat_bank, pack_candidates
from cryomine.simulate.scene import overlap_slices


def _bank(rng):
    """Two classes of random blob cubes (odd and even edges), 3 entries each."""
    cubes, masks = [], []
    for m in (7, 10):
        zz, yy, xx = np.mgrid[:m, :m, :m] - (m - 1) / 2
        r = np.sqrt(zz**2 + yy**2 + xx**2)
        dens = np.stack([np.clip(m / 2.5 - r + rng.normal(0, 0.6, r.shape), 0, None) for _ in range(3)]).astype(np.float32)
        cubes.append(dens)
        masks.append(dens > 0.5)
    return cubes, masks


def _reference(occupied, density, cubes, masks, ks, js, centres, inner, target_count, max_attempts):
    """The Python loop of the previous ``pack_scene``, candidate by candidate."""
    count, failures, accepted = int(occupied[inner].sum()), 0, np.zeros(len(ks), np.int8)
    for i, (k, j, c) in enumerate(zip(ks, js, centres)):
        if count >= target_count or failures >= max_attempts:
            break
        region = overlap_slices(occupied.shape, masks[k][j].shape[0], c)
        if region is None:
            failures += 1
            continue
        d_sl, c_sl = region
        nmask = masks[k][j][c_sl]
        if not nmask.any() or (occupied[d_sl] & nmask).any():
            failures += 1
            continue
        failures = 0
        occupied[d_sl] |= nmask
        density[d_sl] += cubes[k][j][c_sl]
        new = int(occupied[inner].sum())
        accepted[i] = 1 if new > count else 2
        count = new
    return count, failures, accepted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_equals_python_loop(seed):
    rng = np.random.default_rng(seed)
    cubes, masks = _bank(rng)
    s, lo, hi = 29, 5, 24  # scene edge, inner box [5, 24) on every axis
    n = 400
    ks, js = rng.integers(2, size=n), rng.integers(3, size=n)
    centres = rng.integers(-4, s + 4, size=(n, 3))  # some cubes fall partly or wholly off the grid
    occ0 = np.zeros((s, s, s), bool)
    occ0[12:16, 12:16, 12:16] = True  # a "target" already placed
    dens0 = occ0.astype(np.float32)
    target = 0.3 * (hi - lo) ** 3
    inner = (slice(lo, hi),) * 3
    occ_ref, dens_ref = occ0.copy(), dens0.copy()
    count_ref, fail_ref, acc_ref = _reference(occ_ref, dens_ref, cubes, masks, ks, js, centres, inner, target, 40)
    occ, dens = occ0.copy(), dens0.copy()
    acc = np.zeros(n, np.int8)
    # two calls (the stream split in two) give what one long stream gives
    i, count, failures, done = pack_candidates(occ, dens, *flat_bank(cubes, masks), ks[:150], js[:150], centres[:150],
                                               lo, hi, int(occ0[inner].sum()), target, 0, 40, acc[:150])  # fmt: skip
    if not done:
        _, count, failures, done = pack_candidates(occ, dens, *flat_bank(cubes, masks), ks[150:], js[150:], centres[150:],
                                                   lo, hi, count, target, failures, 40, acc[150:])  # fmt: skip
    assert (acc == acc_ref).all() and (acc > 0).sum() >= 5
    assert count == count_ref and failures == fail_ref
    assert np.array_equal(occ, occ_ref)
    np.testing.assert_allclose(dens, dens_ref, rtol=0, atol=1e-6)
