"""Imaging physics: CTF, missing-wedge mask, projection/WBP, SNR calibration, Fourier approximation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from cryomine.errors import InputError
from cryomine.geometry.wedge import missing_wedge_mask
from cryomine.simulate import (
    ImagingConfig,
    MicroscopeConfig,
    TiltSeriesConfig,
    backproject_wbp,
    ctf,
    ctf_first_zero_a_inv,
    electron_wavelength_a,
    fourier_approximation,
    image_scene,
    image_scenes,
    project,
)

NOISE_FREE = ImagingConfig(snr=math.inf)


def _kmag(shape):
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


def _wedge_power_ratio(vol, tilt_min=-60.0, tilt_max=60.0):
    """Mean Fourier power inside the missing wedge / outside it, in the shell 0.06 < |k| < 0.45 cycles/voxel."""
    power = np.abs(np.fft.fftn(vol)) ** 2
    mask = missing_wedge_mask(vol.shape, tilt_min, tilt_max)
    k = _kmag(vol.shape)
    shell = (k > 0.06) & (k < 0.45)
    return power[~mask & shell].mean() / power[mask & shell].mean()


def _blob(shape, centre_zyx, sigma):
    g = np.indices(shape).astype(np.float64)
    r2 = sum((g[i] - centre_zyx[i]) ** 2 for i in range(3))
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


def _blobby_scene(shape, seed, in_cylinder=True):
    rng = np.random.default_rng(seed)
    vol = np.clip(ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) * 6, 0, None)
    if in_cylinder:  # keep the object inside the detector at every tilt (no truncation)
        g = np.indices(shape).astype(np.float64)
        c = (np.array(shape) - 1) / 2
        rad = np.hypot(g[0] - c[0], g[2] - c[2])
        vol *= rad < min(shape[0], shape[2]) / 2 - 2
    return vol.astype(np.float32)


# --- CTF -----------------------------------------------------------------------------------------------------


def test_wavelength_300kv_and_200kv():
    assert abs(electron_wavelength_a(300) - 0.01969) < 1e-4
    assert abs(electron_wavelength_a(200) - 0.02508) < 1e-4


def _numeric_first_zero(config, k_max=0.5):
    k = np.linspace(1e-6, k_max, 2_000_001)
    c = ctf(k, config)
    i = np.nonzero(np.sign(c[1:]) != np.sign(c[:-1]))[0][0]
    return k[i] - c[i] * (k[i + 1] - k[i]) / (c[i + 1] - c[i])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # 300 kV, Cs 2.7, 5 µm underfocus, A = 0.07
        {"cs_mm": 0.0},
        {"amplitude_contrast": 0.0, "defocus_um": 2.0},
        {"defocus_um": 0.05, "cs_mm": 2.7},  # chi never reaches pi - asin(A): zero on the falling branch
        {"defocus_um": -3.0},  # overfocus is allowed
        {"defocus_um": -3.0, "amplitude_contrast": 0.0, "cs_mm": 0.0},
    ],
)
def test_ctf_first_zero_matches_numeric_sign_change(kwargs):
    config = MicroscopeConfig(**kwargs)
    analytic = ctf_first_zero_a_inv(config)
    assert analytic == pytest.approx(_numeric_first_zero(config), rel=1e-4)


def test_ctf_closed_form_without_cs_and_physical_sign():
    config = MicroscopeConfig(cs_mm=0.0, defocus_um=3.0, amplitude_contrast=0.1)
    lam, df = electron_wavelength_a(300), 3.0e4
    k0 = math.sqrt((1 - math.asin(0.1) / math.pi) / (lam * df))  # independent closed form, Cs = 0
    assert ctf_first_zero_a_inv(config) == pytest.approx(k0, rel=1e-9)
    low_k = np.linspace(0, 0.9 * k0, 50)
    assert np.all(ctf(low_k, config) < 0)  # protein dark in underfocus
    assert ctf(np.array([0.0]), config)[0] == pytest.approx(-0.1)


# --- wedge mask ----------------------------------------------------------------------------------------------


def test_wedge_mask_fraction_and_layout():
    shape = (64, 3, 64)
    k = _kmag(shape)
    disk = (k > 0.05) & (k < 0.5)
    for lo, hi in ((-60, 60), (-30, 60), (-90, 90)):
        mask = missing_wedge_mask(shape, lo, hi)
        assert mask[disk].mean() == pytest.approx((hi - lo) / 180, abs=0.02)
        half = missing_wedge_mask(shape, lo, hi, rfft=True)
        assert half.shape == (64, 3, 33)
        np.testing.assert_array_equal(half[..., :32], mask[..., :32])  # Nyquist column: +0.5 vs -0.5
    mask = missing_wedge_mask((20, 5, 30))
    assert not mask[1:, :, 0].any()  # pure k_z (any k_y): missing
    assert mask[0, :, 0].all()  # the tilt-axis line (k_z = k_x = 0), DC included: always sampled
    assert mask[0, 3, 7] and mask[2, 1, 10]  # pure k_x, and a direction 11 degrees off k_x: sampled


# --- projection and WBP --------------------------------------------------------------------------------------


def test_projection_conserves_mass_and_is_linear():
    shape = (21, 8, 27)
    angles = TiltSeriesConfig().angles_deg
    smooth = _blob(shape, (9.7, 4.0, 14.2), 2.5)
    proj = project(smooth, angles)
    assert proj.shape == (41, 8, 27)
    np.testing.assert_allclose(proj.sum(dim=(1, 2)).numpy(), smooth.sum(), rtol=2e-3)
    vol = _blobby_scene(shape, 3)
    other = _blobby_scene(shape, 4)
    both = project(np.stack([vol, 2 * other]), angles)
    np.testing.assert_allclose(both[1].numpy(), 2 * project(other, angles).numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("tilt_range", [(-60.0, 60.0), (-40.0, 60.0)])
def test_wbp_has_no_power_in_missing_wedge(tilt_range):
    shape = (41, 12, 47)
    vol = _blobby_scene(shape, 0)
    angles = TiltSeriesConfig(*tilt_range, 3.0).angles_deg
    rec = backproject_wbp(project(vol, angles), angles, shape[0]).numpy()
    assert _wedge_power_ratio(rec, *tilt_range) < 0.05
    assert _wedge_power_ratio(vol, *tilt_range) > 0.5  # the scene itself fills the wedge
    if tilt_range[0] != -tilt_range[1]:  # the mirrored range would call the (-60, -40) sector sampled: it is not
        assert _wedge_power_ratio(rec, -tilt_range[1], -tilt_range[0]) > 0.15


def test_wbp_reproduces_amplitude_of_smooth_blob():
    shape = (48, 20, 48)
    vol = _blob(shape, (np.array(shape) - 1) / 2, 3.0)
    angles = TiltSeriesConfig().angles_deg
    rec = backproject_wbp(project(vol, angles), angles, shape[0]).numpy()
    lp = np.exp(-((_kmag(shape) / 0.2) ** 2)) * missing_wedge_mask(shape)
    lp[0, 0, 0] = 0  # compare shapes and amplitudes, not the box mean
    ref = np.fft.ifftn(np.fft.fftn(vol) * lp).real
    got = np.fft.ifftn(np.fft.fftn(rec) * lp).real
    c = tuple(slice(s // 2 - 8, s // 2 + 8) for s in shape)
    scale = (got[c] * ref[c]).sum() / (ref[c] ** 2).sum()
    assert scale == pytest.approx(1.0, abs=0.05)
    assert np.linalg.norm(got[c] - ref[c]) < 0.1 * np.linalg.norm(ref[c])


def test_blob_reconstructed_at_right_place_in_odd_box():
    shape = (37, 30, 45)
    centre = np.array([20.3, 13.6, 25.2])
    out = image_scene(_blob(shape, centre, 2.0), 10.0, NOISE_FREE, 0).noise_free
    assert out[20, 14, 25] > 0.8 * out.max() > 2 * abs(out.min())  # protein bright, peak at the blob
    com = ndimage.center_of_mass(np.where(out > 0.5 * out.max(), out, 0))
    assert np.abs(np.array(com) - centre).max() < 0.5


@pytest.mark.parametrize("crop", [(slice(3, 21), slice(5, 30)), (slice(0, 25), slice(0, 33)), (slice(11, 12), slice(7, 9))])
def test_cropped_wbp_equals_crop_of_whole_reconstruction(crop):
    rng = np.random.default_rng(4)
    proj = torch.from_numpy(rng.standard_normal((2, 9, 6, 33)).astype(np.float32))  # odd, non-square
    angles = np.linspace(-57, 48, 9)
    whole = backproject_wbp(proj, angles, 25)
    part = backproject_wbp(proj, angles, 25, crop_zx=crop)
    assert part.shape == (2, crop[0].stop - crop[0].start, 6, crop[1].stop - crop[1].start)
    np.testing.assert_allclose(part.numpy(), whole[:, crop[0], :, crop[1]].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="crop_zx"):
        backproject_wbp(proj, angles, 25, crop_zx=(slice(30, 40), slice(0, 5)))


def test_cropped_imaging_equals_crop_of_whole_noise_free_image():
    scene = _blobby_scene((31, 28, 35), 3, in_cylinder=False)
    whole = image_scene(scene, 10.0, NOISE_FREE, 0).noise_free
    part = image_scene(scene, 10.0, NOISE_FREE, 0, crop=(19, 20, 23)).noise_free
    np.testing.assert_allclose(part, whole[6:25, 4:24, 6:29], rtol=1e-4, atol=1e-4 * np.abs(whole).max())


# --- imaging: SNR, determinism, chunking ---------------------------------------------------------------------


@pytest.mark.parametrize("snr", [0.06, 0.01])
def test_measured_snr_matches_request_for_every_sample(snr):
    scenes = np.stack([_blobby_scene((36, 36, 36), s, in_cylinder=False) for s in range(4)])
    res = image_scenes(scenes, 10.0, ImagingConfig(snr=snr), np.random.default_rng(7), crop=(24, 26, 28))
    assert res.noisy.shape == (4, 24, 26, 28)
    for i in range(4):  # measured independently from the returned arrays
        noise = res.noisy[i] - res.noise_free[i]
        assert res.noise_free[i].var() / noise.var() == pytest.approx(snr, rel=0.10)
        assert res.measured_snr[i] == pytest.approx(snr, rel=0.10)
    single = image_scene(scenes[0], 10.0, ImagingConfig(snr=snr), 123, crop=24)
    assert single.noise_free.var() / (single.noisy - single.noise_free).var() == pytest.approx(snr, rel=0.10)


def test_noise_is_added_to_projections():
    scene = _blobby_scene((40, 16, 40), 1, in_cylinder=False)
    lo = image_scene(scene, 10.0, ImagingConfig(snr=0.06), 5)
    hi = image_scene(scene, 10.0, ImagingConfig(snr=0.01), 5)
    assert hi.noise_sigma / lo.noise_sigma == pytest.approx(math.sqrt(6.0), rel=1e-4)  # same realisation
    noise = hi.noisy - hi.noise_free
    assert _wedge_power_ratio(noise) < 0.1  # reconstructed projection noise misses the wedge too


def test_same_seed_same_arrays_and_chunking_is_exact():
    scene = _blobby_scene((30, 22, 34), 2, in_cylinder=False)
    config = ImagingConfig(snr=0.05)
    a = image_scene(scene, 8.0, config, np.random.default_rng(11), crop=20)
    b = image_scene(scene, 8.0, config, np.random.default_rng(11), crop=20, chunk_rows=5)
    np.testing.assert_allclose(a.noisy, b.noisy, rtol=1e-5, atol=1e-5)
    c = image_scene(scene, 8.0, config, np.random.default_rng(11), crop=20)
    np.testing.assert_array_equal(a.noisy, c.noisy)
    np.testing.assert_array_equal(a.noise_free, c.noise_free)
    t1 = image_scene(scene, 8.0, config, torch.Generator().manual_seed(3))
    t2 = image_scene(scene, 8.0, config, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(t1.noisy, t2.noisy)
    d = image_scene(scene, 8.0, config, np.random.default_rng(12), crop=20)
    assert not np.allclose(a.noisy, d.noisy)


def test_noise_free_and_empty_scene():
    scene = _blobby_scene((24, 10, 24), 0)
    res = image_scene(scene, 10.0, NOISE_FREE, 0)
    assert res.measured_snr == math.inf and res.noise_sigma == 0
    np.testing.assert_array_equal(res.noisy, res.noise_free)
    with pytest.raises(InputError):
        image_scene(np.zeros((24, 10, 24), np.float32), 10.0, ImagingConfig(snr=0.1), 0)


# --- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: TiltSeriesConfig(min_deg=-95),
        lambda: TiltSeriesConfig(max_deg=91),
        lambda: TiltSeriesConfig(step_deg=0),
        lambda: TiltSeriesConfig(step_deg=-3),
        lambda: TiltSeriesConfig(min_deg=10, max_deg=5),
        lambda: TiltSeriesConfig(step_deg=1000),
        lambda: TiltSeriesConfig(min_deg=float("nan")),
        lambda: ImagingConfig(snr=0),
        lambda: ImagingConfig(snr=-0.1),
        lambda: ImagingConfig(snr=float("nan")),
        lambda: ImagingConfig(pad=-1),
        lambda: MicroscopeConfig(amplitude_contrast=1.0),
        lambda: MicroscopeConfig(voltage_kv=0),
        lambda: MicroscopeConfig(defocus_um=float("nan")),
        lambda: MicroscopeConfig(cs_mm=-1),
        lambda: MicroscopeConfig(b_factor_a2=-5),
        lambda: MicroscopeConfig(mtf="magic"),
        lambda: missing_wedge_mask((8, 8, 8), 70, 60),
        lambda: missing_wedge_mask((8, 8), -60, 60),
        lambda: image_scene(np.full((8, 8, 8), np.nan, np.float32), 10.0, NOISE_FREE, 0),
        lambda: image_scene(np.ones((8, 8), np.float32), 10.0, NOISE_FREE, 0),
        lambda: image_scene(np.ones((8, 8, 8), np.float32), 10.0, NOISE_FREE, 0, crop=9),
        lambda: image_scene(np.ones((8, 8, 8), np.float32), -1.0, NOISE_FREE, 0),
        lambda: image_scene(np.ones((8, 8, 8), np.float32), 10.0, ImagingConfig(snr=0.1), "seed"),
    ],
)
def test_bad_input_raises_input_error(make):
    with pytest.raises(InputError):
        make()


def test_overfocus_and_asymmetric_tilts_are_valid():
    assert MicroscopeConfig(defocus_um=-2.0).defocus_um == -2.0
    assert TiltSeriesConfig(-54, 60, 3).angles_deg[[0, -1]].tolist() == [-54.0, 60.0]
    assert len(TiltSeriesConfig().angles_deg) == 41


# --- Fourier approximation -----------------------------------------------------------------------------------


def test_fourier_approximation_agrees_qualitatively_with_wbp():
    scene = _blobby_scene((40, 20, 40), 5, in_cylinder=False)
    config = ImagingConfig(snr=0.1)
    wbp = image_scene(scene, 10.0, config, 1)
    fast = fourier_approximation(scene, 10.0, config, 1)
    assert fast.measured_snr == pytest.approx(0.1, rel=1e-3)
    for res in (wbp, fast):
        assert _wedge_power_ratio(res.noise_free) < 0.1
        assert _wedge_power_ratio(res.noisy) < 0.1
    assert np.corrcoef(wbp.noise_free.ravel(), fast.noise_free.ravel())[0, 1] > 0.7
    batch = fourier_approximation(np.stack([scene, scene]), 10.0, config, 2, crop=(24, 16, 24))
    assert batch.noisy.shape == (2, 24, 16, 24) and batch.measured_snr.shape == (2,)


def test_chunked_variance_equals_direct_variance():
    from cryomine.simulate.imaging import _var_per_sample

    x = torch.randn(3, 41, 77, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 5.0, 0.1])[:, None, None] + 7
    direct = x.double().reshape(3, -1).var(dim=1)
    for chunk in (999, 100, 10**6):  # uneven chunks, and one chunk
        np.testing.assert_allclose(_var_per_sample(x, chunk=chunk).numpy(), direct.numpy(), rtol=1e-10)
