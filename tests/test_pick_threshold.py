"""Template matching's automatic threshold: the search statistics are those of every score, the threshold rule is
the Gaussian tail bound, and planted particles are found in noise with no false positive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cryomine.geometry import angular_sampling, euler_zyz_to_matrix, random_eulers_zyz
from cryomine.geometry.validate import volume_stats
from cryomine.pick import PeakConfig, TemplateMatchConfig, match_template
from cryomine.pick.correlate import _Correlator
from cryomine.pick.template import false_positive_threshold, spherical_mask, template_weight
from cryomine.pick.tiles import read_window
from test_pick import _asymmetric_template, _plant, _wedge_filter


@pytest.mark.parametrize("spherical", [True, False])
def test_search_statistics_are_those_of_every_orientations_scores(spherical):
    rng = np.random.default_rng(11)
    template = _asymmetric_template(11, 1.0)
    vol = rng.standard_normal((17, 20, 19)).astype(np.float32)
    mask = spherical_mask(11, 4.5)
    if not spherical:
        mask[:, :, :3] = 0  # not rotation invariant: sigma_M per orientation
    config = TemplateMatchConfig(angular_step_deg=90.0, microscope=None, pad_edges=False)
    mats = euler_zyz_to_matrix(angular_sampling(90.0)[:6])
    mean, std = volume_stats(vol)
    window = read_window(vol, (0, 0, 0), vol.shape, mean, std)
    weight = template_weight(11, 10.0, config)
    best, _, sums, _ = _Correlator(template, mask, spherical, weight, mats, 4, torch.device("cpu")).run(window, vol.shape, (0, 0, 0))
    each = np.stack([_Correlator(template, mask, spherical, weight, mats[k : k + 1], 1, torch.device("cpu")).run(window, vol.shape, (0, 0, 0))[0]
                     for k in range(6)])  # fmt: skip
    np.testing.assert_allclose(best, each.max(axis=0), atol=1e-6)
    np.testing.assert_allclose(sums, [each.sum(dtype=np.float64), np.square(each, dtype=np.float64).sum()], rtol=1e-5)


def test_tiled_search_has_the_same_statistics():
    rng = np.random.default_rng(2)
    template = _asymmetric_template(13, 1.0)
    vol = rng.standard_normal((27, 31, 29)).astype(np.float32)
    base = dict(angular_step_deg=90.0, microscope=None, peaks=PeakConfig(top_n=3))
    one = match_template(vol, template, 10.0, TemplateMatchConfig(**base))
    tiled = match_template(vol, template, 10.0, TemplateMatchConfig(**base, tile_vox=10))
    assert tiled.n_tiles > 1 and one.search["n"] == tiled.search["n"] == vol.size * 24
    assert tiled.search["mean"] == pytest.approx(one.search["mean"], abs=1e-7)
    assert tiled.search["std"] == pytest.approx(one.search["std"], rel=1e-5)


def test_threshold_is_the_gaussian_tail_bound():
    search = {"n": 2.0e8, "mean": 0.01, "std": 0.05}
    for f in (0.1, 1.0, 30.0):
        assert false_positive_threshold(search, f) == pytest.approx(0.01 + 0.05 * stats.norm.isf(f / 2.0e8), rel=1e-9)
    with pytest.raises(Exception, match="--false-positives"):
        false_positive_threshold(search, 2.0e8)


def test_automatic_threshold_finds_planted_particles_and_nothing_in_noise():
    rng = np.random.default_rng(8)
    template = _asymmetric_template(15, 1.3)
    vol = 0.25 * rng.standard_normal((36, 52, 48)).astype(np.float32)
    centres = np.array([[10, 12, 12], [25, 38, 14], [18, 26, 34], [26, 12, 36]])
    for c, ang in zip(centres, random_eulers_zyz(4, rng)):
        _plant(vol, template, c, ang)
    vol = _wedge_filter(vol)
    config = TemplateMatchConfig(angular_step_deg=45.0, microscope=None)  # no --top-n, no --threshold
    res = match_template(vol, template, 10.0, config)
    assert res.threshold == pytest.approx(false_positive_threshold(res.search, 1.0))
    dist = np.linalg.norm(res.picks.coords_zyx[:, None] - centres[None], axis=-1)
    assert len(res.picks) == 4 and (dist.min(axis=0) <= 2.0).all()  # each planted one found (45° steps), nothing else
    noise = _wedge_filter(0.25 * rng.standard_normal((36, 52, 48)).astype(np.float32))
    assert len(match_template(noise, template, 10.0, config).picks) <= 1


def test_tomogram_mask_limits_the_search_its_statistics_and_the_picks():
    rng = np.random.default_rng(9)
    template = _asymmetric_template(13, 1.1)
    vol = 0.2 * rng.standard_normal((26, 40, 30)).astype(np.float32)
    _plant(vol, template, (13, 10, 15), (30, 60, 90))
    _plant(vol, template, (13, 30, 15), (200, 20, 10))
    inside = np.zeros(vol.shape, np.float32)
    inside[:, :20] = 1.0  # the half with the first particle
    base = dict(angular_step_deg=90.0, microscope=None, peaks=PeakConfig(top_n=3), tile_vox=10)
    full = match_template(vol, template, 10.0, TemplateMatchConfig(**base))
    masked = match_template(vol, template, 10.0, TemplateMatchConfig(**base), search_mask=inside)
    assert masked.search["n"] == inside.sum() * 24
    assert (masked.scores[:, 20:] == 0).all()
    np.testing.assert_allclose(masked.scores[:, :20], full.scores[:, :20], atol=1e-6)  # inside: the same scores
    assert (masked.picks.coords_zyx[:, 1] < 20).all() and np.abs(masked.picks.coords_zyx[0] - [13, 10, 15]).max() <= 1
    assert any(np.abs(c - [13, 30, 15]).max() <= 1 for c in full.picks.coords_zyx)
    with pytest.raises(Exception, match="--tomogram-mask"):
        match_template(vol, template, 10.0, TemplateMatchConfig(**base), search_mask=np.zeros(vol.shape))


def test_population_split_finds_two_groups_and_leaves_one_alone():
    from cryomine.pick.peaks import population_split

    rng = np.random.default_rng(0)
    low, high = rng.normal(0.12, 0.015, 80), rng.normal(0.35, 0.03, 12)
    assert population_split(np.concatenate([low, high])) == pytest.approx(high.min())
    assert population_split(rng.normal(0.2, 0.03, 60)) is None  # one group: no split
    assert population_split(np.array([0.5, 0.52, 0.2])) is None  # too few to tell


def test_split_keeps_the_target_and_drops_other_complexes_above_noise():
    from scipy import ndimage

    rng = np.random.default_rng(21)
    template = _asymmetric_template(15, 1.3)
    other = np.zeros_like(template)  # one of the template's four lobes: it correlates, but less than the target
    other[7, 11, 7] = 1.0
    other = ndimage.gaussian_filter(other, 1.3)
    other /= other.max()
    vol = 0.15 * rng.standard_normal((40, 64, 56)).astype(np.float32)
    targets = np.array([[10, 12, 12], [28, 48, 14], [20, 30, 40], [30, 14, 42]])
    for c, ang in zip(targets, random_eulers_zyz(4, rng)):
        _plant(vol, template, c, ang)
    for c in ([10, 40, 30], [30, 32, 12], [12, 52, 44], [29, 54, 40], [20, 12, 28], [11, 26, 44]):
        _plant(vol, other, c, (0, 0, 0))
    vol = _wedge_filter(vol)
    base = dict(angular_step_deg=30.0, microscope=None)
    split = match_template(vol, template, 10.0, TemplateMatchConfig(**base))
    plain = match_template(vol, template, 10.0, TemplateMatchConfig(**base, peaks=PeakConfig(split_populations=False)))
    hit = lambda picks: (np.linalg.norm(picks.coords_zyx[:, None] - targets[None], axis=-1).min(axis=1) <= 2.0)  # noqa: E731
    assert plain.threshold_rule == "false positives" and len(plain.picks) > 4 and hit(plain.picks).sum() == 4
    assert split.threshold_rule == "population split" and split.threshold > plain.threshold
    assert len(split.picks) == 4 and hit(split.picks).all()


def test_false_positives_on_pure_noise_stay_within_twice_the_expected_count():
    """The threshold expects ``F`` noise scores above it over the search; picks (one per exclusion radius) on pure
    noise are then at most ``F`` on average, and never more than ``2 F`` in a volume. Measured here: 0-2, 4-7 and
    7-10 picks for F = 3, 30 and 100 (neighbouring scores are correlated, and a small template's scores have
    slightly lighter than Gaussian tails), so the rule is conservative, but not vacuous: F = 100 does pick."""
    rng = np.random.default_rng(21)
    template = _asymmetric_template(15, 1.3)
    counts = {3: [], 30: [], 100: []}
    for _ in range(3):
        noise = _wedge_filter(rng.standard_normal((40, 56, 52)).astype(np.float32))
        for f in counts:
            config = TemplateMatchConfig(angular_step_deg=45.0, microscope=None,
                                         peaks=PeakConfig(false_positives=f, split_populations=False, border_vox=0))  # fmt: skip
            counts[f].append(len(match_template(noise, template, 10.0, config).picks))
    for f, c in counts.items():
        assert max(c) <= 2 * f and np.mean(c) <= f
    assert np.mean(counts[100]) >= 3 and np.mean(counts[100]) > np.mean(counts[30]) >= np.mean(counts[3])
