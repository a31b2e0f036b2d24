"""Per-tilt template weighting: the continuous model in the dense limit, each tilt's own CTF on its slice, the
exposure filter where sampled, and the gaps between sparse tilts."""

from __future__ import annotations

import numpy as np
import pytest

from cryomine.acquisition.ctf import MicroscopeConfig, transfer_function
from cryomine.errors import InputError
from cryomine.geometry import missing_wedge_mask
from cryomine.pick import TemplateMatchConfig, template_weight
from cryomine.pick.weighting import TiltWeighting, critical_exposure, per_tilt_weight

M, VS = 24, 10.0
MIC = MicroscopeConfig(defocus_um=3.0)


def _k():
    kz, ky, kx = np.meshgrid(np.fft.fftfreq(M), np.fft.fftfreq(M), np.fft.rfftfreq(M), indexing="ij")
    return kz, ky, kx, np.sqrt(kz**2 + ky**2 + kx**2)


def test_dense_tilts_one_defocus_give_the_continuous_wedge_times_ctf():
    dense = per_tilt_weight(M, VS, TiltWeighting(tuple(np.arange(-60.0, 60.5, 1.0))), MIC)
    continuous = template_weight(M, VS, TemplateMatchConfig(microscope=MIC))
    kz, _, kx, k = _k()
    edge = np.minimum(*(np.abs(kz * np.cos(np.radians(a)) + kx * np.sin(np.radians(a))) * M for a in (-60.0, 60.0)))
    inner = (k < 0.35) & (edge > 1.5)  # more than 1.5 Fourier voxels from the wedge's faces (the slices are 1 thick)
    np.testing.assert_allclose(dense[inner], continuous[inner], atol=2e-3)
    wedge = missing_wedge_mask((M, M, M), -60, 60, rfft=True)
    assert 0.3 < (wedge[inner] == 0).mean() < 0.7  # both the sampled region and the wedge are compared
    assert TemplateMatchConfig(microscope=MIC, tilt_weighting=TiltWeighting((-30.0, 30.0))).tilt_weighting is not None


def test_each_tilt_carries_its_own_defocus_and_the_dose_filter():
    kz, ky, kx, k = _k()
    w = TiltWeighting((0.0, 90.0), defocus_um=(2.0, 6.0), dose_e_a2=(0.0, 40.0))
    out = per_tilt_weight(M, VS, w, MIC)
    only_0 = (np.abs(kz) < 1e-9) & (kx > 1.5 / M)  # the 0° slice (k_z = 0) away from the 90° one (k_x = 0)
    only_90 = (np.abs(kx) < 1e-9) & (np.abs(kz) > 1.5 / M)
    kk = k / VS
    t0 = -transfer_function(kk, MicroscopeConfig(defocus_um=2.0), VS)
    t90 = -transfer_function(kk, MicroscopeConfig(defocus_um=6.0), VS) * np.exp(-40.0 / (2 * critical_exposure(kk)))
    np.testing.assert_allclose(out[only_0], t0[only_0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[only_90], t90[only_90], rtol=1e-5, atol=1e-6)
    gap = (np.abs(kz) > 1.5 / M) & (kx > 1.5 / M) & (np.abs(kz) * M > 1) & (kx * M > 1)  # on neither slice
    assert (out[gap] == 0).all() and gap.sum() > 100


def test_critical_exposure_and_bad_weighting():
    assert critical_exposure(np.array([0.1]))[0] == pytest.approx(0.245 * 0.1**-1.665 + 2.81)
    assert critical_exposure(np.array([0.1]), 200.0)[0] == pytest.approx(0.8 * (0.245 * 0.1**-1.665 + 2.81))
    for bad in (dict(tilt_angles_deg=(10.0,)), dict(tilt_angles_deg=(0.0, 95.0)),
                dict(tilt_angles_deg=(0.0, 3.0), defocus_um=(1.0, 2.0, 3.0)), dict(tilt_angles_deg=(0.0, 3.0), dose_e_a2=(-1.0,))):
        with pytest.raises(InputError, match="--per-tilt-weighting"):
            TiltWeighting(**bad)
