"""Training augmentation: wedge-preserving flips, registration of input/mask/density, calibrated fresh noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from cryomine.cli import main
from cryomine.data import ClassMap, SubtomoDataset
from cryomine.data.augment import AugmentConfig, NoisePool, add_calibrated_noise, augment_boxes
from cryomine.errors import InputError
from cryomine.geometry.wedge import (
    FLIPS_ANY_TILTS,
    FLIPS_SYMMETRIC_TILTS,
    flip_volumes,
    missing_wedge_mask,
    tilts_symmetric,
    wedge_preserving_flips,
)
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.simulate.config import build_dataset_config
from cryomine.simulate.subtomograms import simulate_subtomograms
from cryomine.simulate.tilt import TiltSeriesConfig, backproject_wbp

SHAPE = (22, 9, 26)  # odd, non-cubic (z, y, x)
ASYM = TiltSeriesConfig(-60.0, 42.0, 3.0)


def _unit_noise(n: int, tilts: TiltSeriesConfig, seed: int, shape=SHAPE) -> np.ndarray:
    """``(n, d, h, w)`` WBP reconstructions of unit white projection noise through ``tilts``."""
    d, h, w = shape
    white = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, tilts.n_tilts, h, w)).astype(np.float32))
    return backproject_wbp(white, tilts.angles_deg, d).numpy()


def _wedge_fraction(vol: np.ndarray, tilts: TiltSeriesConfig) -> float:
    """Fraction of the Fourier power (DC excluded) of ``(d, h, w)`` ``vol`` inside the missing wedge."""
    power = np.abs(np.fft.fftn(vol)) ** 2
    power[0, 0, 0] = 0.0
    missing = ~missing_wedge_mask(vol.shape, tilts.min_deg, tilts.max_deg)
    return float(power[missing].sum() / power.sum())


def test_flip_sets_follow_the_tilt_symmetry() -> None:
    assert tilts_symmetric(TiltSeriesConfig().angles_deg) and not tilts_symmetric(ASYM.angles_deg)
    assert wedge_preserving_flips(TiltSeriesConfig().angles_deg) == FLIPS_ANY_TILTS + FLIPS_SYMMETRIC_TILTS
    assert wedge_preserving_flips(ASYM.angles_deg) == FLIPS_ANY_TILTS
    assert len(set(FLIPS_ANY_TILTS + FLIPS_SYMMETRIC_TILTS)) == 8


@pytest.mark.parametrize("tilts", [TiltSeriesConfig(), ASYM], ids=["sym60", "asym-60+42"])
def test_augmented_reconstructions_keep_their_missing_wedge(tilts: TiltSeriesConfig) -> None:
    """A reconstruction through ``tilts`` has almost no power in its missing wedge; every allowed flip keeps it so
    (exactly: flips map k -> -k), and a flip the geometry does not allow would move power into the wedge."""
    rec = _unit_noise(1, tilts, seed=1)[0]
    base = _wedge_fraction(rec, tilts)
    assert base < 0.08  # the discrete tilts leak a few % (Crowther)
    allowed = wedge_preserving_flips(tilts.angles_deg)
    boxes = {"x": np.repeat(rec[None], 32, axis=0)}
    out = augment_boxes(boxes, None, AugmentConfig(fresh_noise=False), flips=[allowed] * 32, pool=None, snr=np.inf,
                        rng=np.random.default_rng(0))
    seen = set()
    for vol in out["x"]:
        assert _wedge_fraction(vol, tilts) == pytest.approx(base, rel=1e-4, abs=1e-7)
        seen |= {f for f in allowed if np.array_equal(vol, flip_volumes(rec, f))}
    assert seen == set(allowed)  # 32 draws visit every allowed flip
    for flip in FLIPS_SYMMETRIC_TILTS:  # not allowed for the asymmetric range: power lands in the wedge
        moved = _wedge_fraction(np.ascontiguousarray(flip_volumes(rec, flip)), tilts)
        if flip in allowed:
            assert moved == pytest.approx(base, rel=1e-4, abs=1e-7)
        else:
            assert moved > base + 0.08  # measured 0.18 vs 0.05


def test_input_mask_and_density_stay_registered_under_every_transform() -> None:
    rng = np.random.default_rng(3)
    density = gaussian_filter(rng.standard_normal((6, *SHAPE)), 1.5, axes=(1, 2, 3)).astype(np.float32)
    thr = np.float32(0.05)
    boxes = {"x": 3 * density + 1, "mask": (density > thr).astype(np.uint8), "density": density}
    cfg = AugmentConfig(fresh_noise=False, max_shift_vox=2)
    flips = wedge_preserving_flips(TiltSeriesConfig().angles_deg)
    changed = 0
    for seed in range(6):
        out = augment_boxes(boxes, None, cfg, flips=[flips] * 6, pool=None, snr=np.inf, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(out["x"], 3 * out["density"] + 1)
        np.testing.assert_array_equal(out["mask"], (out["density"] > thr).astype(np.uint8))
        changed += sum(not np.array_equal(o, d) for o, d in zip(out["density"], density))
    assert changed >= 30  # of 36 boxes: the transforms are not the identity
    np.testing.assert_array_equal(boxes["x"], 3 * density + 1)  # inputs untouched


def test_fresh_noise_is_calibrated_has_the_stored_statistics_and_differs_between_draws() -> None:
    tilts = TiltSeriesConfig()
    unit = _unit_noise(12, tilts, seed=5)
    pool = NoisePool(unit, np.zeros(12, np.int64))
    rng = np.random.default_rng(0)
    clean = gaussian_filter(rng.standard_normal((4, *SHAPE)), 1.2, axes=(1, 2, 3)).astype(np.float32)
    flips = wedge_preserving_flips(tilts.angles_deg)
    cfg = AugmentConfig(flips=False, noise_mix=3)
    snr = 0.06
    draws = [augment_boxes({"clean": clean}, np.zeros(4, np.int64), cfg, flips=[flips] * 4, pool=pool, snr=snr,
                           rng=np.random.default_rng(seed))["x"] for seed in (1, 2)]
    for x in draws:
        noise = x.astype(np.float64) - clean
        measured = clean.reshape(4, -1).var(axis=1, dtype=np.float64) / noise.reshape(4, -1).var(axis=1)
        np.testing.assert_allclose(measured, snr, rtol=1e-4)
    a, b = (d.astype(np.float64) - clean for d in draws)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.2  # new noise each time a box is seen
    same = augment_boxes({"clean": clean}, np.zeros(4, np.int64), cfg, flips=[flips] * 4, pool=pool, snr=snr,
                         rng=np.random.default_rng(1))["x"]
    np.testing.assert_array_equal(same, draws[0])  # seeded: reproducible
    # same second-order statistics as the stored realisations: power per Fourier shell and in the wedge
    fresh = np.stack([pool.draw(0, 3, flips, np.random.default_rng(100 + i)) for i in range(48)])
    k = np.sqrt(sum(f**2 for f in np.meshgrid(*(np.fft.fftfreq(n) for n in SHAPE), indexing="ij")))
    shells = np.digitize(k, [0.1, 0.2, 0.3, 0.4])

    def spectrum(v: np.ndarray) -> np.ndarray:
        p = (np.abs(np.fft.fftn(v, axes=(1, 2, 3))) ** 2).mean(axis=0)
        return np.array([p[shells == s].mean() for s in range(5)])

    np.testing.assert_allclose(spectrum(fresh), spectrum(unit), rtol=0.15)
    assert np.mean([_wedge_fraction(v, tilts) for v in fresh]) == pytest.approx(
        np.mean([_wedge_fraction(v, tilts) for v in unit]), rel=0.1)


def test_snr_range_and_noise_free_boxes() -> None:
    clean = gaussian_filter(np.random.default_rng(0).standard_normal((64, 12, 12, 12)), 1.0, axes=(1, 2, 3))
    clean = clean.astype(np.float32)
    pool = NoisePool(np.random.default_rng(1).standard_normal((8, 12, 12, 12)).astype(np.float32), np.zeros(8, int))
    cfg = AugmentConfig(flips=False, snr_range=(0.01, 1.0))  # unflipped, so that x - clean is the noise
    x = augment_boxes({"clean": clean}, np.zeros(64, int), cfg, flips=[FLIPS_ANY_TILTS] * 64, pool=pool, snr=0.06,
                      rng=np.random.default_rng(2))["x"]
    snrs = clean.reshape(64, -1).var(axis=1) / (x - clean).reshape(64, -1).var(axis=1)
    assert snrs.min() >= 0.01 * 0.999 and snrs.max() <= 1.0 * 1.001 and snrs.max() / snrs.min() > 10
    half = augment_boxes({"clean": clean}, np.zeros(64, int), AugmentConfig(flips=False, snr_range=(0.01, 1.0), snr_range_fraction=0.5),
                         flips=[FLIPS_ANY_TILTS] * 64, pool=pool, snr=0.06, rng=np.random.default_rng(3))["x"]
    snrs = clean.reshape(64, -1).var(axis=1) / (half - clean).reshape(64, -1).var(axis=1)
    at_default = np.isclose(snrs, 0.06, rtol=1e-3)
    assert 16 <= at_default.sum() <= 48  # about half keep the dataset's SNR
    np.testing.assert_array_equal(add_calibrated_noise(clean[0], pool.unit[0], np.inf), clean[0])
    with pytest.raises(InputError, match="constant"):
        add_calibrated_noise(np.zeros((4, 4, 4), np.float32), pool.unit[0, :4, :4, :4], 0.1)


def test_augment_config_validation_and_round_trip() -> None:
    cfg = AugmentConfig(max_shift_vox=2, snr_range=(0.01, 0.5))
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg and not AugmentConfig.off().active
    for bad in ({"noise_mix": 0}, {"max_shift_vox": -1}, {"snr_range": (0.5, 0.1)}, {"flips": "yes"},
                {"snr_range": (0.1, 0.5), "fresh_noise": False}, {"snr_range": (0, 1)}, {"snr_range_fraction": 0}):
        with pytest.raises(InputError):
            AugmentConfig(**bad)
    with pytest.raises(InputError, match="unknown key"):
        AugmentConfig.from_dict({"flip": True})


def test_dataset_draws_fresh_noise_in_training_and_keeps_stored_boxes_otherwise(blob_dataset_factory) -> None:
    path = blob_dataset_factory("blobs", n_per_class=8, size=16, n_classes=3)
    header = read_header(path)
    rows = np.arange(24)
    cmap = ClassMap(tuple(header.class_names))
    train = SubtomoDataset(path, rows, cmap, with_mask=True, with_density=True, augment=AugmentConfig())
    plain = SubtomoDataset(path, rows, cmap, with_mask=True, with_density=True)
    pos = np.arange(8)
    a, b = train.batch(pos, np.random.default_rng(1)), train.batch(pos, np.random.default_rng(2))
    again = train.batch(pos, np.random.default_rng(1))
    assert torch.equal(a["x"], again["x"]) and not torch.equal(a["x"], b["x"])
    stored = plain.batch(pos)
    assert not torch.equal(a["x"], stored["x"])
    for batch in (a, b, stored):  # normalised, labels untouched
        assert torch.allclose(batch["x"].mean(dim=(1, 2, 3, 4)), torch.zeros(8), atol=1e-4)
        assert torch.equal(batch["label"], stored["label"])
    with pytest.raises(InputError, match="random generator"):
        train.batch(pos)
    legacy = blob_dataset_factory("blobs_legacy", n_per_class=8, size=16, n_classes=3, noise_model=False)
    with pytest.raises(InputError, match="no-fresh-noise"):
        SubtomoDataset(legacy, rows, cmap, augment=AugmentConfig())
    with pytest.raises(InputError, match="no tilt series"):
        SubtomoDataset(legacy, rows, cmap, augment=AugmentConfig(fresh_noise=False))


def test_simulated_rows_carry_their_noise_model(tmp_path: Path) -> None:
    cfg = build_dataset_config(structures=("1bxn", "3j9i"), per_class=3, size=16, snr=0.1, seed=11, batch_size=4)
    path = simulate_subtomograms(tmp_path / "d.h5", cfg, progress=False)
    assert read_header(path).has_noise_model
    r = read_rows(path, ("subtomograms", "noise_free", "noise_unit", "noise_sigma", "noise_group"))
    rebuilt = r["noise_free"] + r["noise_sigma"][:, None, None, None] * r["noise_unit"]
    np.testing.assert_allclose(r["subtomograms"], rebuilt, atol=1e-5 * np.abs(r["subtomograms"]).max())
    assert list(r["noise_group"]) == [0, 0, 0, 0, 1, 1]
    var_s = r["noise_free"].reshape(6, -1).var(axis=1)
    var_n = (r["noise_sigma"][:, None] * r["noise_unit"].reshape(6, -1)).var(axis=1)
    np.testing.assert_allclose(var_s / var_n, 0.1, rtol=1e-4)


def test_imaging_variation_per_batch_is_recorded_and_drives_the_flips(tmp_path: Path) -> None:
    cfg = build_dataset_config(structures=("1bxn", "3j9i"), per_class=4, size=16, snr=0.1, seed=2, batch_size=2,
                               vary_defocus=(2.0, 6.0), vary_tilt_min=(-66.0, -39.0), vary_tilt_max=(39.0, 66.0))
    assert cfg.variation.active
    from_dict = type(cfg).from_dict(cfg.to_dict())
    assert from_dict == cfg
    path = simulate_subtomograms(tmp_path / "v.h5", cfg, progress=False)
    r = read_rows(path, ("noise_unit", "noise_group", "tilt_range_deg", "defocus_um"))
    ranges = r["tilt_range_deg"]
    assert np.all(ranges % 3 == 0) and np.all(ranges[:, 0] >= -66) and np.all(ranges[:, 1] <= 66)
    for g in np.unique(r["noise_group"]):  # one geometry per batch, different between batches
        rows = r["noise_group"] == g
        assert len({tuple(t) for t in ranges[rows]}) == 1 and len(set(r["defocus_um"][rows])) == 1
    assert len({tuple(t) for t in ranges}) > 1 and np.ptp(r["defocus_um"]) > 0.5
    for unit, (lo, hi) in zip(r["noise_unit"], ranges):  # each row's noise has ITS missing wedge
        own = _wedge_fraction(unit, TiltSeriesConfig(float(lo), float(hi)))
        other = _wedge_fraction(unit, TiltSeriesConfig(float(-hi), float(-lo)))  # the mirrored geometry
        assert own < 0.15 and (lo == -hi or other > own)
    data = SubtomoDataset(path, np.arange(8), ClassMap(("1bxn", "3j9i")), augment=AugmentConfig())
    for flips, (lo, hi) in zip(data.flips, ranges):
        assert len(flips) == (8 if lo == -hi else 4)
    with pytest.raises(InputError, match="vary-tilt"):
        build_dataset_config(vary_tilt_min=(-50.0, 50.0), vary_tilt_max=(40.0, 60.0))


def test_crowding_varies_per_box_and_old_configs_are_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = build_dataset_config(structures=("1bxn", "3cf3"), per_class=6, size=24, snr=0.5, seed=5, batch_size=4,
                               vary_crowding=(0.0, 0.35))
    assert cfg.variation.active and not cfg.variation.varies_imaging
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    drawn = np.array([cfg.variation.crowding_of(cfg.crowding, cfg.seed, i).volume_fraction for i in range(12)])
    assert drawn.min() >= 0.0 and drawn.max() <= 0.35 and np.ptp(drawn) > 0.15
    path = simulate_subtomograms(tmp_path / "c.h5", cfg, progress=False)
    r = read_rows(path, ("volume_fraction", "neighbour_classes", "tilt_range_deg"))
    assert np.corrcoef(drawn, r["volume_fraction"])[0, 1] > 0.9  # each box packed to its own drawn crowding
    n_neighbours = (r["neighbour_classes"] >= 0).sum(axis=1)
    assert n_neighbours[np.argmin(drawn)] < n_neighbours[np.argmax(drawn)]
    assert np.all(r["tilt_range_deg"] == [-60, 60])  # the imaging does not vary
    # without --vary-crowding a varied dataset's config is the one stored before the option existed
    old = build_dataset_config(vary_defocus=(3.0, 7.0)).to_dict()["variation"]
    assert set(old) == {"defocus_um", "tilt_min_deg", "tilt_max_deg"}
    with pytest.raises(InputError, match="--vary-crowding"):
        build_dataset_config(vary_crowding=(0.1, 0.7))
    with pytest.raises(InputError, match="give one of --crowding"):
        build_dataset_config(crowding=0.1, vary_crowding=(0.0, 0.3))
    with pytest.raises(InputError, match="--from-tomograms boxes take their crowding"):
        build_dataset_config("dsmnet-a-tomo", vary_crowding=(0.0, 0.3))
    assert main(["simulate", "subtomograms", str(tmp_path / "x.h5"), "--vary-crowding", "0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--vary-crowding" in err and not (tmp_path / "x.h5").exists()
