"""Wedge-weighted Fourier-space averaging of aligned subtomograms, reference filtering and masks.

Averaging: every particle is rotated and shifted back into the reference frame (``rotate_volumes`` with
``A^T`` and ``-A^T t``) and Fourier transformed; its spectrum counts only where its own tilt series sampled,
the missing wedge rotated with it, ``W_i(q) = W(A_i q)``. The average is::

    AVG(q) = sum_i W_i(q) F_i(q) / (sum_i W_i(q) + f * N)

so each frequency is the mean over the particles that measured it (other orientations fill a particle's missing
wedge); ``f`` (``wiener_fraction``) keeps frequencies measured by very few particles from being amplified.
``sum_i W_i`` (normalised) is the map's *coverage*, used by the constrained correlation of the next alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
import torch

from cryomine.acquisition.ctf import ctf
from cryomine.errors import InputError
from cryomine.geometry import random_rotations
from cryomine.geometry.grids import frequency_magnitude
from cryomine.geometry.rotate_torch import rotate_volumes
from cryomine.geometry.wedge import sampled_direction_mask_zx

__all__ = [
    "WedgeSums",
    "accumulate",
    "average_particles",
    "centre_of_mass_shift",
    "lowpass",
    "random_rotation_average",
    "shift_volume",
    "soft_sphere_mask",
]

_WORKERS = 2


@dataclass
class WedgeSums:
    """Running sums of one average: ``numerator`` ``(n, n, n // 2 + 1)`` complex128 (centred rfft layout),
    ``weight`` (same shape, float64, the number of particles that sampled each frequency) and ``count``."""

    numerator: np.ndarray
    weight: np.ndarray
    count: int = 0

    @classmethod
    def zeros(cls, box: int) -> WedgeSums:
        shape = (box, box, box // 2 + 1)
        return cls(np.zeros(shape, np.complex128), np.zeros(shape, np.float64), 0)

    def __add__(self, other: WedgeSums) -> WedgeSums:
        return WedgeSums(self.numerator + other.numerator, self.weight + other.weight, self.count + other.count)

    @property
    def box(self) -> int:
        return self.numerator.shape[0]

    def spectrum(self, wiener_fraction: float = 0.05) -> np.ndarray:
        """The averaged spectrum ``sum W F / (sum W + f N)`` (zero where nothing was measured)."""
        reg = wiener_fraction * max(self.count, 1)
        return self.numerator / (self.weight + max(reg, 1e-6))

    def to_map(self, wiener_fraction: float = 0.05) -> np.ndarray:
        """The ``(n, n, n)`` float32 average."""
        n = self.box
        vol = sfft.irfftn(self.spectrum(wiener_fraction), s=(n, n, n), workers=_WORKERS)
        return np.fft.fftshift(vol).astype(np.float32)

    def coverage(self, wiener_fraction: float = 0.05) -> np.ndarray:
        """``(n, n, n // 2 + 1)`` float32 in [0, 1): ``sum W / (sum W + f N)``, where the map's spectrum is known."""
        reg = max(wiener_fraction * max(self.count, 1), 1e-6)
        return (self.weight / (self.weight + reg)).astype(np.float32)


def _wedge_weights(matrices_xyz: np.ndarray, box: int, tilt_range_deg: tuple[float, float]) -> np.ndarray:
    """``(b, n, n, n // 2 + 1)`` float32: ``W(A_i q)`` on the rfft grid ``q`` (the rotated sampled region)."""
    f = np.fft.fftfreq(box)
    kz, ky, kx = np.meshgrid(f, f, np.fft.rfftfreq(box), indexing="ij")
    q_xyz = np.stack([kx.ravel(), ky.ravel(), kz.ravel()])  # (3, M)
    rotated = matrices_xyz @ q_xyz  # (b, 3, M): A_i q, xyz
    w = sampled_direction_mask_zx(rotated[:, 2], rotated[:, 0], tilt_range_deg[0], tilt_range_deg[1])
    return w.reshape(len(matrices_xyz), box, box, box // 2 + 1).astype(np.float32)


def accumulate(
    particles: np.ndarray,
    matrices_xyz: np.ndarray,
    shifts_zyx: np.ndarray,
    tilt_range_deg: tuple[float, float],
    groups: np.ndarray | None = None,
    n_groups: int = 1,
    chunk: int = 32,
) -> list[WedgeSums]:
    """Wedge-weighted sums of ``(N, n, n, n)`` particles brought back to the reference frame, per group.

    ``matrices_xyz`` ``(N, 3, 3)`` and ``shifts_zyx`` ``(N, 3)`` are the poses (reference -> particle);
    ``groups`` ``(N,)`` ints in ``[0, n_groups)`` (e.g. ``2 * class + half``; ``-1`` = left out).
    """
    n_part = particles.shape[0]
    box = particles.shape[-1]
    g = np.zeros(n_part, np.int64) if groups is None else np.asarray(groups, np.int64)
    sums = [WedgeSums.zeros(box) for _ in range(n_groups)]
    mats = np.asarray(matrices_xyz, np.float64)
    inv = np.swapaxes(mats, 1, 2)
    back_shift_xyz = -(inv @ np.asarray(shifts_zyx, np.float64)[:, ::-1, None])[..., 0]
    for s in range(0, n_part, chunk):
        sl = slice(s, min(s + chunk, n_part))
        sel = g[sl] >= 0
        if not sel.any():
            continue
        vols = torch.from_numpy(np.ascontiguousarray(particles[sl][sel], dtype=np.float32))
        back = rotate_volumes(
            vols, torch.from_numpy(inv[sl][sel].astype(np.float32)), torch.from_numpy(back_shift_xyz[sl][sel][:, ::-1].copy().astype(np.float32))
        ).numpy()
        ft = sfft.rfftn(np.fft.ifftshift(back, axes=(-3, -2, -1)), axes=(-3, -2, -1), workers=_WORKERS)
        w = _wedge_weights(mats[sl][sel], box, tilt_range_deg)
        for gi in np.unique(g[sl][sel]):
            rows = g[sl][sel] == gi
            sums[gi].numerator += (ft[rows] * w[rows]).sum(0)
            sums[gi].weight += w[rows].sum(0)
            sums[gi].count += int(rows.sum())
    return sums


def average_particles(
    particles: np.ndarray,
    matrices_xyz: np.ndarray,
    shifts_zyx: np.ndarray | None = None,
    tilt_range_deg: tuple[float, float] = (-60.0, 60.0),
    wiener_fraction: float = 0.05,
) -> np.ndarray:
    """Wedge-weighted average of ``(N, n, n, n)`` particles with known poses (``(N, 3, 3)``, ``(N, 3)`` zyx)."""
    parts = np.asarray(particles)
    if parts.ndim != 4 or len(set(parts.shape[1:])) != 1:
        raise InputError(f"particles must be an (N, n, n, n) stack of cubes, got shape {parts.shape}")
    mats = np.asarray(matrices_xyz, np.float64).reshape(-1, 3, 3)
    if len(mats) != len(parts):
        raise InputError(f"{len(mats)} poses for {len(parts)} particles")
    shifts = np.zeros((len(parts), 3)) if shifts_zyx is None else np.asarray(shifts_zyx, np.float64).reshape(-1, 3)
    return accumulate(parts, mats, shifts, tilt_range_deg)[0].to_map(wiener_fraction)


def random_rotation_average(
    particles: np.ndarray, tilt_range_deg: tuple[float, float], rng: np.random.Generator, wiener_fraction: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """The reference-free start: the wedge-weighted average of the particles in uniformly random orientations.

    Returns the ``(n, n, n)`` map and its coverage.
    """
    mats = random_rotations(particles.shape[0], rng)
    sums = accumulate(particles, mats, np.zeros((len(mats), 3)), tilt_range_deg)[0]
    return sums.to_map(wiener_fraction), sums.coverage(wiener_fraction)


def frequency_radius(box: int) -> np.ndarray:
    """``|k|`` (cycles/voxel) on the ``(n, n, n // 2 + 1)`` rfft grid."""
    return frequency_magnitude((box, box, box))


def lowpass(volume: np.ndarray, cutoff: float, edge: float | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """Low-pass a ``(n, n, n)`` map at ``cutoff`` (cycles/voxel) with a raised-cosine edge of width ``edge``.

    The filter is 1 up to ``cutoff`` and falls to 0 at ``cutoff + edge`` (default two shells, ``2 / n``).
    ``weights`` (optional, per shell ``round(|k| n)``) multiplies the filter, e.g. an FSC weighting.
    """
    n = volume.shape[0]
    width = 2.0 / n if edge is None else float(edge)
    r = frequency_radius(n)
    filt = np.clip((cutoff + width - r) / max(width, 1e-9), 0.0, 1.0)
    filt = 0.5 - 0.5 * np.cos(np.pi * filt)
    if weights is not None:
        shell = np.minimum(np.rint(r * n).astype(np.int64), len(weights) - 1)
        filt = filt * np.asarray(weights)[shell]
    ft = sfft.rfftn(volume, workers=_WORKERS) * filt
    return sfft.irfftn(ft, s=volume.shape, workers=_WORKERS).astype(np.float32)


def soft_sphere_mask(box: int, radius_vox: float, edge_vox: float = 3.0) -> np.ndarray:
    """``(n, n, n)`` float32 sphere about voxel ``n // 2``: 1 inside ``radius``, raised-cosine to 0 over ``edge``."""
    c = box // 2
    z, y, x = np.ogrid[:box, :box, :box]
    r = np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2)
    if edge_vox <= 0:
        return (r <= radius_vox).astype(np.float32)
    t = np.clip((r - radius_vox) / edge_vox, 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)


def centre_of_mass_shift(volume: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(3,)`` zyx offset of the centre of mass of the positive density from voxel ``n // 2``."""
    v = np.clip(volume * (mask if mask is not None else 1.0), 0.0, None)
    total = v.sum()
    if total <= 0:
        return np.zeros(3)
    idx = np.indices(v.shape).reshape(3, -1)
    com = (idx * v.ravel()).sum(1) / total
    return com - np.array([s // 2 for s in v.shape])


def shift_volume(volume: np.ndarray, shift_zyx: np.ndarray) -> np.ndarray:
    """Shift a ``(n, n, n)`` map by ``shift_zyx`` voxels (Fourier phase ramp, periodic)."""
    n = volume.shape
    f = [np.fft.fftfreq(n[0])[:, None, None], np.fft.fftfreq(n[1])[None, :, None], np.fft.rfftfreq(n[2])[None, None, :]]
    phase = np.exp(-2j * np.pi * (f[0] * shift_zyx[0] + f[1] * shift_zyx[1] + f[2] * shift_zyx[2]))
    return sfft.irfftn(sfft.rfftn(volume, workers=_WORKERS) * phase, s=n, workers=_WORKERS).astype(np.float32)


def phase_flip(particles: np.ndarray, voxel_size_a: float, microscope: object, chunk: int = 64) -> np.ndarray:
    """Correct the CTF phases of ``(N, n, n, n)`` protein-bright particles: multiply the spectrum by the sign of
    the effective transfer ``-CTF(|k|)`` (single-axis tilt series at constant defocus: the 3-D CTF is isotropic).

    ``microscope``: a :class:`cryomine.acquisition.ctf.MicroscopeConfig`. Returns a new float32 stack.
    """
    n = particles.shape[-1]
    sign = np.sign(-ctf(frequency_radius(n) / float(voxel_size_a), microscope))  # type: ignore[arg-type]
    sign[sign == 0] = 1.0
    out = np.empty(particles.shape, dtype=np.float32)
    for s in range(0, particles.shape[0], chunk):
        ft = sfft.rfftn(particles[s : s + chunk], axes=(-3, -2, -1), workers=_WORKERS) * sign
        out[s : s + chunk] = sfft.irfftn(ft, s=(n, n, n), axes=(-3, -2, -1), workers=_WORKERS)
    return out
