"""The Xu lab's SNR convention (AITom), reproduced: the SNR is a parameter of the noise added, not of the output.

AITom's ``reconstruction__simple_convolution.do_reconstruction`` (xulabs/aitom, the simulator of the DSM-Net
paper's lab) images a density box ``v`` (``n³`` voxels) by convolution, not by a tilt series. Read from its source
and reproduced here step by step (box frequencies on the centred grid, ``r = |k| n`` in Fourier voxels):

1. ``mask = W * S``: the missing-wedge mask (here cryomine's, :func:`cryomine.geometry.wedge.missing_wedge_mask` of
   the tilt range) times a Fourier sphere of radius ``n / 2``; ``C``: the 3-D CTF (here cryomine's ``-CTF * E``,
   :mod:`cryomine.acquisition.ctf`, protein bright; AITom's own CTF differs only in sign and envelope).
2. ``signal_variance = var(ifft(fft(v) C mask)) * corrfac`` with ``corrfac = var(e) / var(ifft(fft(e) C mask))``
   for white noise ``e`` (here its expectation ``1 / mean(|C mask|^2)`` instead of one random draw).
3. ``BP = floor(n p / 4)`` with ``p`` the voxel size in nm (AITom's units): a radius of 10 for a 40³ box at
   1 nm, i.e. half Nyquist there. ``bandpass(x, R, s)``: 1 for ``r <= R``, ``exp(-((r - R) / s)^2)`` beyond,
   0 where that falls below ``e^-3`` (TOM's ``tom_bandpass`` with AITom's sphere mask).
4. ``x = bandpass(v, BP, 2) + N(0, 0.5 signal_variance / SNR)``; ``x = ifft(fft(x) C)``;
   ``x += bandpass(N(0, 0.5 signal_variance / SNR), 1, 0.2 n)`` (AITom's "MTF" noise);
   ``x = bandpass(x, BP, 2)``; output ``ifft(fft(x) mask)``.

So half the noise passes the CTF, half is smooth low-frequency noise, and the result is band-passed at ``BP``:
the nominal ``SNR`` is not the SNR of the output box (``measured_snr`` here is, as everywhere in cryomine:
``var(noise-free) / var(noise)`` in the box). The noise-free output is the same chain with no noise; everything
is linear, so ``noisy = noise_free + sigma * unit`` with ``sigma = sqrt(signal_variance / SNR)``, which is what
the dataset stores (format 2) and what the training augmentation redraws.
"""

from __future__ import annotations

import math

import numpy as np

from cryomine.acquisition.ctf import ctf, envelope
from cryomine.errors import InputError
from cryomine.geometry.grids import frequency_magnitude
from cryomine.geometry.validate import check_voxel_size
from cryomine.geometry.wedge import missing_wedge_mask
from cryomine.simulate.imaging import Crop, ImagingConfig, ImagingResult, centre_crop_slices

__all__ = ["aitom_bandpass_radius", "aitom_convolution", "bandpass_weight"]


def aitom_bandpass_radius(box: int, voxel_size_a: float) -> int:
    """AITom's band-pass radius ``floor(n p / 4)`` (Fourier voxels; ``p`` the voxel size in nm)."""
    return int(math.floor(box * (voxel_size_a / 10.0) / 4.0))


def bandpass_weight(radius_vox: np.ndarray, cutoff: float, smooth: float) -> np.ndarray:
    """TOM/AITom band-pass weight: 1 up to ``cutoff``, a Gaussian edge of width ``smooth`` beyond, 0 below e^-3."""
    edge = np.exp(-(((radius_vox - cutoff) / smooth) ** 2))
    edge[edge < math.exp(-3.0)] = 0.0
    return np.where(radius_vox <= cutoff, 1.0, edge)


def _filters(n: int, voxel_size_a: float, config: ImagingConfig) -> dict[str, np.ndarray]:
    """The rfft-layout filters of the recipe for an ``n³`` box: CTF, mask, the two band-passes."""
    k = frequency_magnitude((n, n, n))  # cycles/voxel
    r = k * n
    m = config.microscope
    transfer = -ctf(k / voxel_size_a, m) * envelope(k / voxel_size_a, m.b_factor_a2)
    mask = missing_wedge_mask((n, n, n), config.tilt.min_deg, config.tilt.max_deg, rfft=True) & (r <= n / 2.0)
    bp = aitom_bandpass_radius(n, voxel_size_a)
    return {"ctf": transfer, "mask": mask.astype(np.float64), "band": bandpass_weight(r, bp, 2.0),
            "mtf": bandpass_weight(r, 1.0, 0.2 * n)}  # fmt: skip


def _full_grid_mean(values: np.ndarray, n: int) -> float:
    """Mean over the full FFT grid of a quantity given on the rfft half-grid (Hermitian symmetry)."""
    w = np.full(values.shape[-1], 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return float((values * w).sum() / n**3)


def aitom_convolution(scene, voxel_size_a: float, config: ImagingConfig, rng, crop: Crop = None, *,
                      keep_unit_noise: bool = False) -> ImagingResult:
    """Image ``(n, d, h, w)`` (or one ``(d, h, w)``) densities by AITom's recipe (module docstring) at the nominal
    ``config.snr``; each scene is first cut to the centred ``crop`` box (cubes only). ``rng``: numpy generator."""
    voxel = check_voxel_size(voxel_size_a, "voxel_size_a")
    vol = np.asarray(scene, np.float64)
    single = vol.ndim == 3
    vol = vol.reshape(-1, *vol.shape[-3:])
    if not np.isfinite(vol).all():
        raise InputError("scene contains NaN or infinite voxels")
    vol = vol[(slice(None), *centre_crop_slices(vol.shape[-3:], crop))]
    n = vol.shape[-1]
    if vol.shape[-3:] != (n, n, n):
        raise InputError(f"the AITom recipe needs cubic boxes, got {vol.shape[-3:]}")
    f = _filters(n, voxel, config)
    axes = (-3, -2, -1)
    fft = lambda x: np.fft.rfftn(x, axes=axes)  # noqa: E731
    ifft = lambda x: np.fft.irfftn(x, s=(n, n, n), axes=axes)  # noqa: E731
    spec = fft(vol)
    signal_variance = ifft(spec * f["ctf"] * f["mask"]).reshape(len(vol), -1).var(1)
    corrfac = 1.0 / _full_grid_mean((f["ctf"] * f["mask"]) ** 2, n)
    sigma = np.sqrt(signal_variance * corrfac / config.snr) if math.isfinite(config.snr) else np.zeros(len(vol))
    chain = f["band"] * f["ctf"] * f["band"] * f["mask"]  # bandpass, CTF, bandpass, mask: the signal path
    clean = ifft(spec * chain)
    white_ctf = rng.standard_normal(vol.shape) * math.sqrt(0.5)
    white_mtf = rng.standard_normal(vol.shape) * math.sqrt(0.5)
    unit = ifft((fft(white_ctf) * f["ctf"] + fft(white_mtf) * f["mtf"]) * f["band"] * f["mask"])  # noise per unit sigma
    noise = unit * sigma[:, None, None, None]
    measured = clean.reshape(len(vol), -1).var(1) / np.maximum(noise.reshape(len(vol), -1).var(1), 1e-300)
    measured = np.where(sigma > 0, measured, np.inf)
    noisy, clean32 = (clean + noise).astype(np.float32), clean.astype(np.float32)
    unit32 = unit.astype(np.float32) if keep_unit_noise else None
    if single:
        return ImagingResult(noisy[0], clean32[0], float(measured[0]), float(sigma[0]), None if unit32 is None else unit32[0])
    return ImagingResult(noisy, clean32, measured, sigma, unit32)
