"""The AITom SNR convention (issue 14 item 4): the recipe's invariants, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cryomine.acquisition import MicroscopeConfig
from cryomine.acquisition.ctf import ctf, envelope
from cryomine.data.snr import snr_by_definition
from cryomine.geometry import frequency_magnitude, missing_wedge_mask
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.simulate.aitom import aitom_bandpass_radius, aitom_convolution
from cryomine.simulate.config import build_dataset_config
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.subtomograms import simulate_subtomograms


def _blob(n: int, rng: np.random.Generator) -> np.ndarray:
    z, y, x = np.indices((n, n, n)) - n // 2
    vol = np.exp(-((z - 2) ** 2 + y**2 + (x + 3) ** 2) / 18.0) + 0.6 * np.exp(-((z + 4) ** 2 + (y - 3) ** 2 + x**2) / 8.0)
    return vol + 0.01 * rng.standard_normal(vol.shape)


def test_band_pass_radius_is_aitoms():
    assert aitom_bandpass_radius(40, 10.0) == 10  # radius 10 of a 40³ box at 1 nm: half Nyquist
    assert aitom_bandpass_radius(40, 5.0) == 5 and aitom_bandpass_radius(64, 8.0) == 12


def test_recipe_noise_level_band_and_wedge():
    n, voxel = 32, 10.0
    config = ImagingConfig(microscope=MicroscopeConfig(defocus_um=4.0), snr=0.05)
    vol = _blob(n, np.random.default_rng(0))
    res = aitom_convolution(vol[None], voxel, config, np.random.default_rng(1), keep_unit_noise=True)
    # linear: noisy = noise-free + sigma * unit, exactly
    np.testing.assert_allclose(res.noisy[0], res.noise_free[0] + res.noise_sigma[0] * res.unit_noise[0], atol=1e-5)
    # sigma^2 = var(signal through CTF and mask) * corrfac / SNR, corrfac measured by Monte Carlo here
    k = frequency_magnitude((n, n, n))
    m = config.microscope
    transfer = -ctf(k / voxel, m) * envelope(k / voxel, m.b_factor_a2)
    mask = missing_wedge_mask((n, n, n), -60, 60, rfft=True) & (k * n <= n / 2)
    through = np.fft.irfftn(np.fft.rfftn(vol) * transfer * mask, s=vol.shape, axes=(0, 1, 2))
    rng = np.random.default_rng(2)
    e = rng.standard_normal((64, n, n, n))
    ec = np.fft.irfftn(np.fft.rfftn(e, axes=(1, 2, 3)) * transfer * mask, s=(n, n, n), axes=(1, 2, 3))
    corrfac = e.var() / ec.var()
    assert res.noise_sigma[0] ** 2 == pytest.approx(through.var() * corrfac / 0.05, rel=0.02)
    # nothing beyond the band-pass edge (radius 8 + 2 sqrt(3)) and nothing in the missing wedge
    power = np.abs(np.fft.rfftn(res.noisy[0])) ** 2
    assert power[k * n > aitom_bandpass_radius(n, voxel) + 3.5].max() < 1e-9 * power.max()
    assert power[~missing_wedge_mask((n, n, n), -60, 60, rfft=True)].max() < 1e-9 * power.max()
    # the nominal SNR is not the box SNR: the band-pass removes most of the noise the recipe adds
    assert res.measured_snr[0] > 2 * 0.05


def test_dataset_with_the_aitom_definition(tmp_path):
    config = build_dataset_config(structures=["1s3x", "3gl1"], per_class=2, size=24, seed=3, snr=0.06, snr_definition="aitom")
    path = simulate_subtomograms(tmp_path / "a.h5", config, progress=False)
    header = read_header(path)
    assert header.config["snr_definition"] == "aitom" and "snr_definition" not in build_dataset_config().to_dict()
    rows = read_rows(path, ("subtomograms", "noise_free", "noise_unit", "noise_sigma", "snr_measured"))
    recon = rows["noise_free"] + rows["noise_sigma"][:, None, None, None] * rows["noise_unit"]
    np.testing.assert_allclose(rows["subtomograms"], recon, atol=1e-5)
    by_def = snr_by_definition(path, header)
    assert by_def["box"]["mean"] == pytest.approx(float(rows["snr_measured"].mean()), rel=1e-4)
    assert math.isfinite(by_def["in_band"]["mean"])
