"""Template symmetry: the point groups, and the reduced orientation grid covers SO(3) modulo the group."""

from __future__ import annotations

import numpy as np
import pytest

from cryomine.errors import InputError
from cryomine.geometry import angular_sampling, euler_zyz_to_matrix, random_rotations, reduce_by_symmetry, symmetry_group


def _coverage_deg(grid_mats, group, rotations):
    """For each rotation R, the smallest angle between R and any grid orientation times a group element."""
    cands = np.einsum("kij,gjl->kgil", grid_mats, group).reshape(-1, 3, 3)  # A g
    tr = np.einsum("rij,kij->rk", rotations, cands)  # trace(R^T A g)
    return np.degrees(np.arccos(np.clip((tr.max(axis=1) - 1) / 2, -1, 1)))


@pytest.mark.parametrize("sym", ["C2", "C3", "C7", "D2", "D5"])
def test_reduced_grid_covers_rotations_modulo_the_group(sym):
    step = 20.0
    full = angular_sampling(step)
    reduced = reduce_by_symmetry(full, step, sym)
    group = symmetry_group(sym)
    ratio = len(reduced) / len(full)
    # about 1/|G| remain (one grid spacing is kept beyond the n-fold sector: more on the sparse rings near the poles)
    assert 0.95 / len(group) < ratio < 2.0 / len(group), ratio
    rots = random_rotations(1500, np.random.default_rng(len(sym) + int(sym[1:])))
    full_cov = _coverage_deg(euler_zyz_to_matrix(full), np.eye(3)[None], rots)
    red_cov = _coverage_deg(euler_zyz_to_matrix(reduced), group, rots)
    assert red_cov.max() <= full_cov.max() + 0.5  # nothing lost: as close as the full grid, up to the group
    assert np.percentile(red_cov, 95) <= np.percentile(full_cov, 95) + 0.5


def test_groups_are_groups_of_rotations():
    for sym, order in (("C1", 1), ("C4", 4), ("D3", 6)):
        g = symmetry_group(sym)
        assert len(g) == order
        np.testing.assert_allclose(np.einsum("gij,gkj->gik", g, g), np.broadcast_to(np.eye(3), g.shape), atol=1e-12)
        prod = np.einsum("aij,bjk->abik", g, g).reshape(-1, 9)  # closed under products
        assert all(np.abs(g.reshape(-1, 9) - p).max(axis=1).min() < 1e-9 for p in prod)
    assert len(reduce_by_symmetry(angular_sampling(30.0), 30.0, "C1")) == len(angular_sampling(30.0))
    for bad in ("C0", "T", "O", "I", "D", "c2x", "C101"):
        with pytest.raises(InputError, match="--symmetry"):
            symmetry_group(bad)


def test_matching_a_c4_template_with_symmetry_searches_a_quarter_and_finds_it():
    from scipy import ndimage

    from cryomine.geometry import rotation_angle_deg
    from cryomine.pick import PeakConfig, TemplateMatchConfig, match_template
    from test_pick import _plant, _wedge_filter

    m, c = 17, 8
    t = np.zeros((m, m, m), np.float32)  # four lobes about z (C4), a cap on +z: symmetric only under C4
    for x, y in ((4, 0), (0, 4), (-4, 0), (0, -4)):
        t[c, c + y, c + x] = 1.0
    t[c + 3, c, c] = 1.5
    t = ndimage.gaussian_filter(t, 1.2)
    t /= t.max()
    rng = np.random.default_rng(4)
    vol = 0.05 * rng.standard_normal((33, 35, 34)).astype(np.float32)
    truth = np.array([40.0, 70.0, 110.0])
    _plant(vol, t, (16, 17, 17), truth)
    vol = _wedge_filter(vol)
    base = dict(angular_step_deg=30.0, microscope=None, peaks=PeakConfig(top_n=1))
    full = match_template(vol, t, 10.0, TemplateMatchConfig(**base))
    sym = match_template(vol, t, 10.0, TemplateMatchConfig(**base, symmetry="c4"))
    assert 0.2 < len(sym.angles_zyz) / len(full.angles_zyz) < 0.4
    np.testing.assert_array_equal(sym.picks.coords_zyx, full.picks.coords_zyx)
    assert sym.picks.scores[0] == pytest.approx(full.picks.scores[0], abs=0.03)
    group = symmetry_group("C4")
    found = euler_zyz_to_matrix(sym.picks.eulers_zyz[0])
    err = min(rotation_angle_deg(found @ g, euler_zyz_to_matrix(truth)) for g in group)
    assert err <= 30.0
