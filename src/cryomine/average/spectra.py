"""Fourier-space side of subtomogram alignment: particle spectra and rotated-reference sampling (torch).

Holds the scored half-space Fourier components of the particles (:func:`particle_spectra`,
:class:`ParticleSpectra`) and the reference's twice-padded, gridding-corrected transform sampled at rotated
frequencies (:class:`ReferenceSampler`). The score and the searches that use them are in
:mod:`cryomine.average.align`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
import torch
import torch.nn.functional as F

from cryomine.errors import InputError
from cryomine.geometry.grids import fft_frequencies, frequency_magnitude
from cryomine.geometry.wedge import missing_wedge_mask

__all__ = [
    "ParticleSpectra",
    "ReferenceSampler",
    "centred_rfft",
    "half_space_components",
    "particle_spectra",
]

_WORKERS = 2


@dataclass(frozen=True)
class ParticleSpectra:
    """Particle Fourier components used for scoring.

    ``values``: ``(N, m)`` complex64, the (whitened) FT of each particle at the ``m`` components ``k_zyx``
    (``(m, 3)`` float32 tensor, cycles/voxel: the sampled, non-DC half-space components with ``|k| <= cutoff``).
    ``radius``: ``(m,)`` ``|k|``. ``sigma``: ``(m,)`` whitening divisor (1 without whitening). ``box``: edge ``n``.
    """

    values: torch.Tensor
    k_zyx: torch.Tensor
    radius: torch.Tensor
    sigma: torch.Tensor
    box: int

    def subset(self, cutoff: float, rows: np.ndarray | None = None) -> ParticleSpectra:
        """The components with ``|k| <= cutoff`` (and optionally only the particles ``rows``)."""
        keep = self.radius <= cutoff + 1e-9
        vals = self.values[:, keep]
        if rows is not None:
            vals = vals[torch.as_tensor(np.asarray(rows, dtype=np.int64))]
        return ParticleSpectra(vals, self.k_zyx[keep], self.radius[keep], self.sigma[keep], self.box)


def half_space_components(box: int, cutoff: float, tilt_range_deg: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Flat ``rfftn`` indices and ``(m, 3)`` zyx frequencies (cycles/voxel) of the scored components.

    Components: ``0 < |k| <= cutoff`` (``cutoff`` < 0.5), sampled by the tilt range, one of each ``+-k`` pair
    (``kx > 0``, or ``kx = 0`` and ``(kz, ky)`` lexicographically positive), sorted by ``|k|``.
    """
    n = int(box)
    kz, ky, kx = np.broadcast_arrays(*fft_frequencies((n, n, n)))
    radius = frequency_magnitude((n, n, n))
    sampled = missing_wedge_mask((n, n, n), tilt_range_deg[0], tilt_range_deg[1], rfft=True)
    half = (kx > 0) | ((kx == 0) & ((kz > 0) | ((kz == 0) & (ky > 0))))
    keep = half & sampled & (radius > 0) & (radius <= cutoff + 1e-9)
    flat = np.flatnonzero(keep.ravel())
    order = np.argsort(radius.ravel()[flat], kind="stable")
    flat = flat[order]
    k = np.stack([kz.ravel()[flat], ky.ravel()[flat], kx.ravel()[flat]], axis=-1)
    return flat, k


def centred_rfft(volumes: np.ndarray) -> np.ndarray:
    """``rfftn`` of ``(..., n, n, n)`` volumes about their centre voxel ``n // 2`` (complex64)."""
    shifted = np.fft.ifftshift(volumes, axes=(-3, -2, -1))
    return sfft.rfftn(shifted, axes=(-3, -2, -1), workers=_WORKERS).astype(np.complex64)


def particle_spectra(
    particles: np.ndarray,
    cutoff: float,
    tilt_range_deg: tuple[float, float],
    whiten: bool = True,
    chunk: int = 64,
) -> ParticleSpectra:
    """Scored Fourier components of ``(N, n, n, n)`` particles up to ``cutoff`` (cycles/voxel, <= 0.5).

    With ``whiten`` every component is divided by the root mean power of its shell (over all particles and
    sampled components): at low SNR this is the noise amplitude, so the score weights shells by their SNR.
    """
    n = particles.shape[-1]
    flat, k = half_space_components(n, min(float(cutoff), 0.5), tilt_range_deg)
    if flat.size == 0:
        raise InputError(f"no Fourier components below the cut-off {cutoff:g} cycles/voxel in a {n}³ box")
    vals = np.empty((particles.shape[0], flat.size), dtype=np.complex64)
    for s in range(0, particles.shape[0], chunk):
        ft = centred_rfft(np.asarray(particles[s : s + chunk], dtype=np.float32))
        vals[s : s + chunk] = ft.reshape(ft.shape[0], -1)[:, flat]
    radius = np.sqrt((k**2).sum(-1))
    shell = np.rint(radius * n).astype(np.int64)
    if whiten:
        power = (np.abs(vals) ** 2).mean(axis=0)
        per_shell = np.bincount(shell, weights=power) / np.maximum(np.bincount(shell), 1)
        sigma = np.sqrt(np.maximum(per_shell[shell], 1e-30)).astype(np.float32)
        sigma /= sigma.max()
    else:
        sigma = np.ones(flat.size, dtype=np.float32)
    values = torch.from_numpy(vals / sigma[None, :])
    return ParticleSpectra(
        values, torch.from_numpy(k.astype(np.float32)), torch.from_numpy(radius.astype(np.float32)),
        torch.from_numpy(sigma), n,
    )  # fmt: skip


class ReferenceSampler:
    """A reference's Fourier transform, sampled at rotated frequencies (trilinear, twice-padded, gridding-corrected).

    ``volume``: ``(n, n, n)`` reference (already masked / filtered). ``coverage``: optional ``(n, n, n // 2 + 1)``
    weights in [0, 1] (rfft layout about the centre) of where the reference's spectrum is known; ``None`` =
    everywhere.
    """

    def __init__(self, volume: np.ndarray, coverage: np.ndarray | None = None, pad: int = 2) -> None:
        vol = np.asarray(volume, dtype=np.float64)
        n = vol.shape[-1]
        if vol.shape != (n, n, n):
            raise InputError(f"reference must be a cube, got shape {vol.shape}")
        self.box = n
        self.size = pad * n
        off = np.arange(n) - n // 2
        corr = np.sinc(off / self.size) ** 2  # trilinear interpolation of the FT multiplies by sinc^2 in real space
        vol = vol / (corr[:, None, None] * corr[None, :, None] * corr[None, None, :])
        big = np.zeros((self.size,) * 3)
        c = self.size // 2
        sl = slice(c - n // 2, c - n // 2 + n)
        big[sl, sl, sl] = vol
        ft = np.fft.fftshift(sfft.fftn(np.fft.ifftshift(big), workers=_WORKERS))
        self._ft = torch.from_numpy(np.stack([ft.real, ft.imag]).astype(np.float32))[None]  # (1, 2, S, S, S)
        self._cov: torch.Tensor | None = None
        if coverage is not None:
            known = np.asarray(coverage, dtype=np.float32) >= 0.5
            f = np.fft.fftfreq(n)
            radius = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + np.fft.rfftfreq(n)[None, None, :] ** 2)
            if not known[radius <= 0.5].all():  # some frequencies unknown: score only where both spectra are known
                full = _full_from_half(known.astype(np.float32), n)
                self._cov = torch.from_numpy(np.fft.fftshift(full))[None, None]  # (1, 1, n, n, n)

    @property
    def has_coverage(self) -> bool:
        return self._cov is not None

    def sample(self, rot_zyx: torch.Tensor, k_zyx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Values ``R(M^T k)`` for ``(B, 3, 3)`` zyx matrices ``M`` and ``(m, 3)`` frequencies: ``(B, m)`` complex
        (and the binary coverage ``(B, m)``, or None where the reference is known everywhere)."""
        q = torch.matmul(k_zyx, rot_zyx.flip(-1))  # rows (M^T k), reversed to (x, y, z): (B, m, 3)
        grid = _grid(q, self.size)
        out = F.grid_sample(self._ft, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0, :, :, :, 0]
        values = torch.complex(out[0], out[1])
        cov = None
        if self._cov is not None:
            g = _grid(q, self.box)
            cov = F.grid_sample(self._cov, g, mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0, :, :, 0]
            cov = (cov >= 0.5).to(torch.float32)
        return values, cov


def _grid(q_xyz: torch.Tensor, size: int) -> torch.Tensor:
    """``(1, B, m, 1, 3)`` grid_sample coordinates (align_corners=True) of frequencies ``q`` (cycles/voxel, xyz)
    on a centred ``size`` grid: index ``q * size + size // 2`` mapped to [-1, 1]."""
    scale = 2.0 * size / (size - 1)
    offset = 2.0 * (size // 2) / (size - 1) - 1.0
    return (q_xyz * scale + offset).unsqueeze(-2).unsqueeze(0)


def _full_from_half(half: np.ndarray, n: int) -> np.ndarray:
    """Full ``(n, n, n)`` array (unshifted layout) of a Hermitian-symmetric real ``rfft``-layout array."""
    full = np.empty((n, n, n), dtype=half.dtype)
    w = half.shape[-1]
    full[..., :w] = half
    if n > w:
        kx = np.arange(w, n)  # negative kx columns: value at (-kz, -ky, -kx)
        neg = (-np.arange(n)) % n
        full[..., w:] = half[neg][:, neg][..., (-kx) % n]
    return full
