"""The imaging model: a density scene -> a noisy cryo-ET reconstruction, with per-sample SNR calibration.

Pipeline (:func:`image_scenes`, :func:`image_scene`), for ``(d, h, w)`` = ``(z, y, x)`` scenes of projected
density (e.g. electrostatic potential; positive = protein):

1. Project at every tilt of ``config.tilt`` (y tilt axis; :func:`cryomine.simulate.tilt.project`).
2. Multiply each projection's 2-D spectrum by ``CTF * envelope * MTF`` (:mod:`cryomine.acquisition.ctf`; constant
   defocus per tilt). Each projection is reflect-padded by ``config.pad`` pixels first, so that the CTF's point
   spread does not wrap around the image edges, and cropped back after.
3. Add white Gaussian noise of standard deviation ``sigma`` to the PROJECTIONS (the detector images), equal
   for all tilts.
4. Reconstruct by weighted back-projection (:func:`cryomine.simulate.tilt.backproject_wbp`); the missing wedge
   comes from the tilt range alone.

CONTRAST CONVENTION (relied upon by every later tool): the CTF has the physical sign (protein is dark in
projections), and every reconstruction returned here is multiplied by :data:`CONTRAST_SIGN` ``= -1`` so that
PROTEIN IS BRIGHT (positive) in ``noisy`` and ``noise_free``. :func:`reconstruct` applies the same flip.

SNR: ``SNR := var(noise_free) / var(noisy - noise_free)``, both measured inside the final box (after the
centred ``crop``; scenes are normally padded around the subtomogram so that neighbours outside the box still
project into it at high tilt, and the padding is cropped away). The noise level is CALIBRATED PER SAMPLE: WBP
is linear, so the noise-free reconstruction ``S`` and the reconstruction ``N1`` of unit-variance projection
noise are computed separately, ``sigma = sqrt(var(S) / (snr * var(N1)))`` and ``noisy = S + sigma * N1``, which
is the reconstruction of the projections plus noise of std ``sigma``; the measured SNR equals the requested one
for that noise realisation (up to float32 rounding). ``snr = inf`` gives ``noisy = noise_free``.

Memory: single-axis tilt makes every ``y`` row independent in projection and WBP, so both run in chunks of
``chunk_rows`` rows (automatic by default); a ``(200, 512, 512)`` tomogram needs well under 3 GB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from cryomine.acquisition.ctf import MicroscopeConfig, transfer_function_2d
from cryomine.acquisition.metadata import Acquisition
from cryomine.errors import InputError
from cryomine.geometry.validate import check_voxel_size
from cryomine.simulate.tilt import TiltSeriesConfig, backproject_wbp, project

CONTRAST_SIGN = -1.0
"""Factor applied to every reconstruction so that protein (positive density) is bright."""

Crop = int | tuple[int, int, int] | None


@dataclass(frozen=True)
class ImagingConfig:
    """Tilt series, optics, SNR (``> 0`` or ``inf`` for noise-free), CTF padding (pixels) and WBP apodisation."""

    tilt: TiltSeriesConfig = field(default_factory=TiltSeriesConfig)
    microscope: MicroscopeConfig = field(default_factory=MicroscopeConfig)
    snr: float = 0.1
    pad: int = 16
    apodisation_start: float = 0.8

    def __post_init__(self) -> None:
        if not isinstance(self.tilt, TiltSeriesConfig) or not isinstance(self.microscope, MicroscopeConfig):
            raise InputError("ImagingConfig needs a TiltSeriesConfig and a MicroscopeConfig")
        try:
            snr = float(self.snr)
        except (TypeError, ValueError):
            raise InputError(f"snr must be a number > 0 (or inf), got {self.snr!r}") from None
        if math.isnan(snr) or snr <= 0:
            raise InputError(f"snr must be > 0 (or inf for noise-free), got {self.snr!r}")
        if not isinstance(self.pad, (int, np.integer)) or self.pad < 0:
            raise InputError(f"pad must be an integer >= 0 pixels, got {self.pad!r}")
        if not 0.0 < float(self.apodisation_start) <= 1.0:
            raise InputError(f"apodisation_start must be in (0, 1], got {self.apodisation_start!r}")

    def acquisition(self, voxel_size_a: float, source: str = "simulation") -> Acquisition:
        """The :class:`Acquisition` of data imaged with this config at ``voxel_size_a`` (reconstructions are
        protein bright; one defocus for every tilt)."""
        m = self.microscope
        return Acquisition(voxel_size_a=voxel_size_a, tilt_angles_deg=tuple(self.tilt.angles_deg), defocus_um=(m.defocus_um,),
                           voltage_kv=m.voltage_kv, cs_mm=m.cs_mm, amplitude_contrast=m.amplitude_contrast, polarity="bright",
                           sources=(source,))


@dataclass(frozen=True)
class ImagingResult:
    """Reconstructions (protein bright), cropped; per-sample arrays get a leading ``n`` axis when batched.

    ``noisy``/``noise_free``: ``(d, h, w)`` or ``(n, d, h, w)`` float32. ``measured_snr``: SNR measured in the
    box (float, or ``(n,)``). ``noise_sigma``: std of the noise added to each projection pixel, in units of the
    projected density (float, or ``(n,)``; 0 when noise-free). ``unit_noise`` (only when asked for with
    ``keep_unit_noise``): the reconstruction ``N1`` of unit-variance projection noise, cropped like the volumes,
    so that ``noisy == noise_free + noise_sigma * unit_noise`` (up to float32 rounding; for ``snr = inf`` it is
    a noise realisation that was not added).
    """

    noisy: np.ndarray
    noise_free: np.ndarray
    measured_snr: float | np.ndarray
    noise_sigma: float | np.ndarray
    unit_noise: np.ndarray | None = None


@lru_cache(maxsize=8)
def _transfer(shape_hw: tuple[int, int], voxel_size_a: float, microscope: MicroscopeConfig, device: str):
    return torch.from_numpy(transfer_function_2d(shape_hw, voxel_size_a, microscope).astype(np.float32)).to(device)


def apply_transfer(projections: torch.Tensor, voxel_size_a: float, microscope: MicroscopeConfig, pad: int = 0,
                   rows: slice | None = None) -> torch.Tensor:
    """Filter ``(..., n_tilts, h, w)`` projections by ``CTF * envelope * MTF`` (reflect-padded by ``pad``).

    ``rows``: return only these ``y`` rows of the filtered images (``(..., n_tilts, len(rows), w)``; the filter
    still sees every row). On the CPU the FFTs run in :mod:`scipy.fft` (faster there than torch's for these
    batched small images); the result is the same up to float32 rounding.
    """
    *lead, t, h, w = projections.shape
    x = projections.reshape(-1, t, h, w)
    p = min(int(pad), h - 1, w - 1)
    if p > 0:
        x = F.pad(x, (p, p, p, p), mode="reflect")
    hp, wp = h + 2 * p, w + 2 * p
    r0, r1, _ = (rows or slice(None)).indices(h)
    filt = _transfer((hp, wp), float(voxel_size_a), microscope, str(x.device))
    if x.device.type == "cpu":
        workers = torch.get_num_threads()
        spec = scipy.fft.rfft2(x.numpy(), workers=workers)
        spec *= filt.numpy()
        spec = scipy.fft.ifft(spec, axis=-2, overwrite_x=True, workers=workers)[..., p + r0 : p + r1, :]
        out = torch.from_numpy(scipy.fft.irfft(spec, n=wp, axis=-1, workers=workers)[..., p : p + w].astype(np.float32))
    else:
        out = torch.fft.irfft2(torch.fft.rfft2(x) * filt, s=(hp, wp))[..., p + r0 : p + r1, p : p + w]
    return out.reshape(*lead, t, r1 - r0, w)


def _check_scenes(scenes, ndim: int, device) -> torch.Tensor:
    t = scenes if isinstance(scenes, torch.Tensor) else torch.as_tensor(np.asarray(scenes))
    if t.ndim != ndim:
        axes = "(d, h, w)" if ndim == 3 else "(n, d, h, w)"
        raise InputError(f"scene must be a {axes} array, got shape {tuple(t.shape)}")
    if 0 in t.shape:
        raise InputError(f"scene is empty (shape {tuple(t.shape)})")
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"scene must be real, got dtype {t.dtype}")
    dev = torch.device(device) if device is not None else t.device
    t = t.to(device=dev, dtype=torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise InputError("scene contains NaN or infinite voxels")
    return t


def simulate_tilt_series(scenes, voxel_size_a: float, config: ImagingConfig, *, device=None, chunk_rows=None,
                         rows: slice | None = None):
    """Noise-free detector images of ``(..., d, h, w)`` scenes: ``(..., n_tilts, h, w)`` torch float32 (only the
    ``rows`` of ``y``, if given).

    Projection then ``CTF * envelope * MTF`` (physical sign: protein dark). No noise.
    """
    voxel = check_voxel_size(voxel_size_a, "voxel_size_a")
    proj = project(scenes, config.tilt.angles_deg, device=device, chunk_rows=chunk_rows)
    return apply_transfer(proj, voxel, config.microscope, config.pad, rows)


def reconstruct(tilt_series, config: ImagingConfig, depth: int, *, device=None, chunk_rows=None,
                crop_zx: tuple[slice, slice] | None = None) -> torch.Tensor:
    """WBP of ``(..., n_tilts, h, w)`` images into ``(..., depth, h, w)`` (or the ``crop_zx`` part of each
    ``(depth, w)`` plane; :func:`cryomine.simulate.tilt.backproject_wbp`), contrast-flipped (protein bright)."""
    rec = backproject_wbp(
        tilt_series,
        config.tilt.angles_deg,
        depth,
        apodisation_start=config.apodisation_start,
        device=device,
        chunk_rows=chunk_rows,
        crop_zx=crop_zx,
    )
    return rec.mul_(CONTRAST_SIGN)


def centre_crop_slices(shape_zyx: tuple[int, ...], crop: Crop) -> tuple[slice, slice, slice]:
    """Slices of the centred ``crop`` (int or ``(cd, ch, cw)``; None = whole) box of a ``(d, h, w)`` shape."""
    if crop is None:
        return (slice(None),) * 3
    size = (int(crop),) * 3 if np.ndim(crop) == 0 else tuple(int(c) for c in crop)  # type: ignore[arg-type]
    if len(size) != 3 or any(c < 1 or c > s for c, s in zip(size, shape_zyx)):
        raise InputError(f"crop {crop!r} must be 1..{tuple(shape_zyx)} voxels per axis (z, y, x)")
    return tuple(slice((s - c) // 2, (s - c) // 2 + c) for s, c in zip(shape_zyx, size))  # type: ignore[return-value]


def standard_normal(rng, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Float32 N(0, 1) samples from a ``numpy.random.Generator``, ``torch.Generator`` or int seed."""
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):  # seeds a torch generator: torch draws normals ~2x faster
        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**63 - 1)))
        return torch.randn(shape, generator=gen, dtype=torch.float32).to(device)
    if isinstance(rng, torch.Generator):
        return torch.randn(shape, generator=rng, device=rng.device, dtype=torch.float32).to(device)
    raise InputError(f"rng must be a numpy Generator, a torch Generator or an int seed, got {type(rng).__name__}")


def _var_per_sample(x: torch.Tensor, chunk: int = 2**22) -> torch.Tensor:
    """Float64 variance of each ``x[i]`` in one pass over chunks (per-chunk mean and squared deviations merged as
    Chan et al.): no full float64 copy of big volumes."""
    flat = x.reshape(x.shape[0], -1)
    step = max(1, chunk // max(flat.shape[0], 1))
    count, mean = 0, torch.zeros(flat.shape[0], dtype=torch.float64, device=x.device)
    m2 = torch.zeros_like(mean)
    for i in range(0, flat.shape[1], step):
        block = flat[:, i : i + step].double()
        nb = block.shape[1]
        mb = block.mean(dim=1)
        m2b = (block - mb[:, None]).square_().sum(dim=1)
        delta = mb - mean
        m2 += m2b + delta * delta * (count * nb / (count + nb))
        mean += delta * (nb / (count + nb))
        count += nb
    return m2 / max(count - 1, 1)


def calibrate_noise(noise_free: torch.Tensor, unit_noise: torch.Tensor, snr: float, crop: Crop = None,
                    *, keep_unit: bool = False):
    """Combine ``(n, d, h, w)`` signal and unit-noise reconstructions at the requested SNR inside the crop.

    Returns ``(noisy, noise_free, measured_snr, sigma, unit)`` with the volumes cropped (torch) and ``(n,)``
    float64 numpy ``measured_snr`` and ``sigma``; ``sigma = sqrt(var(S) / (snr * var(N1)))``. ``unit`` is the
    cropped ``N1`` (a copy) with ``keep_unit``, else None; without it ``unit_noise`` is overwritten. For
    ``snr = inf``, ``unit_noise`` may be empty (then ``unit`` is None).
    """
    sl = (slice(None),) + centre_crop_slices(tuple(noise_free.shape[1:]), crop)
    s, n1 = noise_free[sl], unit_noise[sl]
    unit = n1.clone() if keep_unit and n1.shape[0] == s.shape[0] else None
    var_s = _var_per_sample(s)
    if math.isinf(snr):
        return s.clone(), s, np.full(s.shape[0], math.inf), np.zeros(s.shape[0]), unit
    bad = torch.nonzero(var_s <= 0).flatten().tolist()
    if bad:
        raise InputError(f"scene(s) {bad} give a constant noise-free reconstruction: the SNR cannot be set")
    var_n = _var_per_sample(n1)
    sigma = torch.sqrt(var_s / (snr * var_n))
    noise = n1.mul_(sigma.to(n1.dtype).view(-1, 1, 1, 1))
    measured = var_s / _var_per_sample(noise)
    noisy = noise.add_(s)
    return noisy, s, measured.cpu().numpy(), sigma.cpu().numpy(), unit


def image_scenes(
    scenes,
    voxel_size_a: float,
    config: ImagingConfig,
    rng,
    crop: Crop = None,
    *,
    device=None,
    chunk_rows: int | None = None,
    keep_unit_noise: bool = False,
) -> ImagingResult:
    """Image a batch of ``(n, d, h, w)`` scenes in one go; see the module docstring.

    Args:
        scenes: ``(n, d, h, w)`` densities (numpy or torch), protein positive.
        voxel_size_a: voxel size in Å (also the detector pixel after projection).
        config: the imaging model.
        rng: ``numpy.random.Generator``, ``torch.Generator`` or int seed for the projection noise.
        crop: centred box to return and measure the SNR in (int or ``(cd, ch, cw)``; None = whole scene).
        device: torch device to compute on (default: the input's, else CPU).
        chunk_rows: ``y`` rows per projection/WBP chunk (default automatic).
        keep_unit_noise: also return the unit-noise reconstructions (``unit_noise``; drawn even for ``snr = inf``).

    Returns:
        :class:`ImagingResult` with ``(n, cd, ch, cw)`` float32 arrays and ``(n,)`` ``measured_snr``/``noise_sigma``.
    """
    vol = _check_scenes(scenes, 4, device)
    n, d, h, w = vol.shape
    sz, sy, sx = centre_crop_slices((d, h, w), crop)  # validate before the work
    images = simulate_tilt_series(vol, voxel_size_a, config, chunk_rows=chunk_rows, rows=sy)  # (n, t, ch, w)
    del vol
    return image_tilt_series(images, config, d, rng, crop_zx=(sz, sx), chunk_rows=chunk_rows, keep_unit_noise=keep_unit_noise)


def image_tilt_series(
    images: torch.Tensor,
    config: ImagingConfig,
    depth: int,
    rng,
    *,
    crop_zx: tuple[slice, slice] | None = None,
    chunk_rows: int | None = None,
    keep_unit_noise: bool = False,
) -> ImagingResult:
    """Steps 3-4 of the pipeline for ``(n, n_tilts, h, w)`` noise-free detector images (from
    :func:`simulate_tilt_series`; ``h`` only the rows wanted): noise on the projections, WBP into ``depth``
    (only the ``crop_zx`` part of each ``(depth, w)`` plane, if given), SNR calibrated over the whole result.

    The scenes need not be kept meanwhile: a caller imaging a whole tomogram can free its density after
    :func:`simulate_tilt_series` (and hand the images over). Memory: the signal and noise reconstructions
    (2 volumes; 3 with ``keep_unit_noise``) and one set of images.
    """
    snr = float(config.snr)
    shape, dev = tuple(images.shape), images.device
    clean = reconstruct(images, config, depth, chunk_rows=chunk_rows, crop_zx=crop_zx)
    del images  # one set of images at a time: the signal's are freed before the noise is drawn
    unit_noise = clean[:0]
    if keep_unit_noise or not math.isinf(snr):  # noise only in the rows that reach the crop (rows are independent)
        unit_noise = reconstruct(standard_normal(rng, shape, dev), config, depth, chunk_rows=chunk_rows, crop_zx=crop_zx)
    noisy, clean, measured, sigma, unit = calibrate_noise(clean, unit_noise, snr, None, keep_unit=keep_unit_noise)
    return ImagingResult(
        noisy=np.ascontiguousarray(noisy.cpu().numpy()),
        noise_free=np.ascontiguousarray(clean.cpu().numpy()),
        measured_snr=measured,
        noise_sigma=sigma,
        unit_noise=None if unit is None else np.ascontiguousarray(unit.cpu().numpy()),
    )


def image_scene(
    scene,
    voxel_size_a: float,
    config: ImagingConfig,
    rng,
    crop: Crop = None,
    *,
    device=None,
    chunk_rows: int | None = None,
    keep_unit_noise: bool = False,
) -> ImagingResult:
    """Image one ``(d, h, w)`` scene (or a whole tomogram: use ``chunk_rows``); see :func:`image_scenes`.

    Returns an :class:`ImagingResult` with ``(cd, ch, cw)`` float32 volumes and float ``measured_snr``.
    """
    vol = _check_scenes(scene, 3, device)
    res = image_scenes(vol[None], voxel_size_a, config, rng, crop, chunk_rows=chunk_rows, keep_unit_noise=keep_unit_noise)
    return ImagingResult(
        noisy=res.noisy[0],
        noise_free=res.noise_free[0],
        measured_snr=float(res.measured_snr[0]),
        noise_sigma=float(res.noise_sigma[0]),
        unit_noise=None if res.unit_noise is None else res.unit_noise[0],
    )
