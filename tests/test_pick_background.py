"""Random-phase background correction of template matching: the noise template keeps the amplitudes and loses the
structure, and the corrected map is ``raw - noise + mean(noise)`` computed from two plain searches, tile-invariant
and with the search region respected."""

from __future__ import annotations

import numpy as np
import pytest

from cryomine.geometry import angular_sampling
from cryomine.pick import PeakConfig, TemplateMatchConfig, match_template
from cryomine.pick.background import phase_randomized
from test_pick import _asymmetric_template, _plant


def test_phase_randomized_keeps_amplitudes_and_mean_and_loses_the_structure():
    t = _asymmetric_template(15, 1.3)
    a, b = phase_randomized(t, 0), phase_randomized(t, 0)
    np.testing.assert_array_equal(a, b)  # seeded
    assert not np.allclose(a, phase_randomized(t, 1))
    np.testing.assert_allclose(np.abs(np.fft.rfftn(a)), np.abs(np.fft.rfftn(t)), rtol=1e-4, atol=1e-4 * np.abs(np.fft.rfftn(t)).max())
    assert a.mean() == pytest.approx(t.mean(), rel=1e-5)
    assert abs(np.corrcoef(a.ravel(), t.ravel())[0, 1]) < 0.3


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    t = _asymmetric_template(13, 1.2)
    vol = 0.2 * rng.standard_normal((25, 31, 28)).astype(np.float32)
    grid = angular_sampling(90.0)
    _plant(vol, t, (8, 10, 9), grid[3])
    _plant(vol, t, (17, 21, 18), grid[7])
    return vol, t


def test_corrected_scores_are_raw_minus_noise_plus_its_mean():
    vol, t = _volume()
    base = dict(angular_step_deg=90.0, microscope=None, mask_radius_vox=5.5, peaks=PeakConfig(top_n=2))
    got = match_template(vol, t, 10.0, TemplateMatchConfig(**base, random_phase_correction=True, random_phase_seed=4), radius_vox=5.0)
    raw = match_template(vol, t, 10.0, TemplateMatchConfig(**base), radius_vox=5.0)
    noise = match_template(vol, phase_randomized(t, 4), 10.0, TemplateMatchConfig(**base), radius_vox=5.0)
    np.testing.assert_allclose(got.scores, raw.scores - noise.scores + noise.scores.astype(np.float64).mean(), atol=2e-6)
    np.testing.assert_array_equal(got.angle_index, raw.angle_index)  # orientations are the template's
    assert got.search["noise_mean"] == pytest.approx(float(noise.scores.astype(np.float64).mean()), rel=1e-6)
    assert {k: got.search[k] for k in ("n", "mean", "std")} == pytest.approx(raw.search)  # statistics of the raw search
    planted = np.array([(8, 10, 9), (17, 21, 18)])
    d = np.linalg.norm(got.picks.coords_zyx[:, None] - planted[None], axis=-1)
    assert (d.min(axis=0) <= 1.8).all()  # both found, within a voxel diagonal


def test_correction_is_tile_invariant_and_zero_outside_the_searched_region():
    vol, t = _volume()
    base = dict(angular_step_deg=90.0, microscope=None, random_phase_correction=True, peaks=PeakConfig(top_n=2))
    one = match_template(vol, t, 10.0, TemplateMatchConfig(**base))
    tiled = match_template(vol, t, 10.0, TemplateMatchConfig(**base, tile_vox=9))
    assert tiled.n_tiles > 1
    np.testing.assert_allclose(tiled.scores, one.scores, atol=2e-5)
    region = np.zeros(vol.shape, bool)
    region[:, :, 14:] = True
    part = match_template(vol, t, 10.0, TemplateMatchConfig(**base), search_mask=region)
    assert (part.scores[~region] == 0).all() and (part.scores[region] != 0).mean() > 0.99
