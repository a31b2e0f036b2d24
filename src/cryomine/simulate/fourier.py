"""A fast Fourier-space APPROXIMATION of the imaging model (no projection, no back-projection).

This is not the physical simulation (:mod:`cryomine.simulate.imaging` is); it imitates its result in a single
3-D FFT, for speed:

- signal: ``S = CONTRAST_SIGN * ifft( fft(scene) * W * T(|k|) * apod(k_zx) )`` where ``W`` is the
  missing-wedge mask of the tilt range (:func:`cryomine.geometry.wedge.missing_wedge_mask`), ``T`` the radial
  ``CTF * envelope * MTF`` (:func:`cryomine.acquisition.ctf.transfer_function`; the 3-D CTF of a constant-defocus
  tilt series is radial because each tilt's 2-D frequency equals the 3-D frequency on its central slice) and
  ``apod`` the WBP apodisation taper on ``k_zx = sqrt(k_z^2 + k_x^2)`` (cycles/voxel);
- noise: white Gaussian noise filtered by ``W * sqrt(k_zx / 0.5) * apod(k_zx)``: inside the sampled region, WBP
  of white projection noise has a power spectrum proportional to the ramp ``|k_zx|``;
- the same per-sample SNR calibration and contrast convention as the full model
  (:func:`cryomine.simulate.imaging.calibrate_noise`; protein bright).

What it leaves out: the discrete tilt sampling (no Crowther gaps or streaks, no leakage into the wedge),
truncation and edge effects of a finite box (the FFT is periodic), the interpolation blur of the projector and
back-projector (so high frequencies are somewhat stronger than with WBP), and any tilt-dependent effect.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from cryomine.acquisition.ctf import transfer_function
from cryomine.errors import InputError
from cryomine.geometry.grids import fft_frequencies
from cryomine.geometry.validate import check_voxel_size
from cryomine.geometry.wedge import missing_wedge_mask
from cryomine.simulate.imaging import (
    CONTRAST_SIGN,
    Crop,
    ImagingConfig,
    ImagingResult,
    calibrate_noise,
    centre_crop_slices,
    standard_normal,
)


@lru_cache(maxsize=2)
def fourier_filters(
    shape_zyx: tuple[int, int, int], voxel_size_a: float, config: ImagingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``(signal, noise)`` float32 filters of shape ``(d, h, w // 2 + 1)`` in ``np.fft.rfftn`` layout."""
    d, h, w = shape_zyx
    kz, ky, kx = fft_frequencies((d, h, w), rfft=True, dtype=np.float32)
    k_zx = np.sqrt(kz**2 + kx**2)  # (d, 1, w')
    t = np.clip((k_zx / 0.5 - config.apodisation_start) / max(1.0 - config.apodisation_start, 1e-12), 0.0, 1.0)
    apod = 0.5 * (1.0 + np.cos(math.pi * t))
    wedge = missing_wedge_mask((d, 1, w), config.tilt.min_deg, config.tilt.max_deg, rfft=True)
    k_abs = np.sqrt(k_zx**2 + ky**2) / np.float32(voxel_size_a)  # (d, h, w') in 1/Å
    signal = transfer_function(k_abs, config.microscope, voxel_size_a).astype(np.float32) * (wedge * apod)
    noise = np.broadcast_to(wedge * np.sqrt(k_zx / 0.5) * apod, signal.shape).astype(np.float32)
    return signal, noise


def fourier_approximation(
    scene,
    voxel_size_a: float,
    config: ImagingConfig,
    rng,
    crop: Crop = None,
    *,
    device=None,
    keep_unit_noise: bool = False,
) -> ImagingResult:
    """Approximate :func:`cryomine.simulate.imaging.image_scene` in Fourier space (see the module docstring).

    ``scene`` is a ``(d, h, w)`` or a batch ``(n, d, h, w)`` of densities (numpy or torch, protein positive);
    ``rng`` a numpy/torch generator or int seed; ``crop`` the centred output box (SNR measured inside it).
    Returns an :class:`ImagingResult` shaped like the input (cropped), with per-sample SNR calibration; its
    ``noise_sigma`` is the std of the white 3-D noise before filtering (there are no projections here);
    ``keep_unit_noise`` as in :func:`cryomine.simulate.imaging.image_scenes`.
    """
    voxel = check_voxel_size(voxel_size_a, "voxel_size_a")
    vol = scene if isinstance(scene, torch.Tensor) else torch.as_tensor(np.asarray(scene))
    if vol.ndim not in (3, 4) or 0 in vol.shape or vol.is_complex() or vol.dtype == torch.bool:
        raise InputError(f"scene must be a real (d, h, w) or (n, d, h, w) array, got shape {tuple(vol.shape)}")
    single = vol.ndim == 3
    dev = torch.device(device) if device is not None else vol.device
    vol = vol.to(device=dev, dtype=torch.float32).reshape(-1, *vol.shape[-3:])
    if not bool(torch.isfinite(vol).all()):
        raise InputError("scene contains NaN or infinite voxels")
    n, d, h, w = vol.shape
    centre_crop_slices((d, h, w), crop)
    sig_f, noise_f = (torch.from_numpy(f).to(dev) for f in fourier_filters((d, h, w), voxel, config))
    dims = (-3, -2, -1)
    clean = torch.fft.irfftn(torch.fft.rfftn(vol, dim=dims) * sig_f, s=(d, h, w), dim=dims).mul_(CONTRAST_SIGN)
    snr = float(config.snr)
    if math.isinf(snr) and not keep_unit_noise:
        unit = clean[:0]
    else:
        white = standard_normal(rng, (n, d, h, w), dev)
        unit = torch.fft.irfftn(torch.fft.rfftn(white, dim=dims) * noise_f, s=(d, h, w), dim=dims)
    noisy, clean, measured, sigma, kept = calibrate_noise(clean, unit, snr, crop, keep_unit=keep_unit_noise)
    noisy_np = np.ascontiguousarray(noisy.cpu().numpy())
    clean_np = np.ascontiguousarray(clean.cpu().numpy())
    unit_np = None if kept is None else np.ascontiguousarray(kept.cpu().numpy())
    if single:
        return ImagingResult(noisy_np[0], clean_np[0], float(measured[0]), float(sigma[0]),
                             None if unit_np is None else unit_np[0])
    return ImagingResult(noisy_np, clean_np, measured, sigma, unit_np)
