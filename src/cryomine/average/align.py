"""Subtomogram alignment: wedge-constrained correlation, global rotational search, local refinement (torch).

Pose convention (RELION): a particle ``p`` is its reference ``r`` rotated by ``A`` (a RELION matrix acting on
``(x, y, z)``, see :mod:`cryomine.geometry.euler`) about voxel ``n // 2`` and then shifted by ``t`` (``shifts_zyx``,
voxels): ``p = rotate_volumes(r, A, t)``, so ``P(k) = R(A^T k) exp(-2 pi i k.t)`` in Fourier space.

Score (Förster et al. 2008; Xu et al. 2012): the normalised correlation over the Fourier components ``k`` that
are (i) in the particle's sampled region (the tilt range's ``missing_wedge_mask``), (ii) covered by the rotated
reference (``coverage``, e.g. the sampled region of an average of few particles; everywhere for a full map) and
(iii) inside the reference's low-pass (``cutoff``), DC excluded::

    CC(A, t) = Re sum_k conj(P(k)) R(A^T k) e^{-2 pi i k.t} / sqrt(sum_k |P(k)|^2 c_A(k) * sum_k |R(A^T k)|^2)

with ``c_A(k)`` the rotated coverage. Both spectra are optionally whitened (divided by the particles' mean
amplitude per shell). Each sum runs over a half space of Fourier components (one of each ``+-k`` pair), which
equals the full-spectrum correlation. ``P`` is the FT of the particle about its centre voxel.

Speed: the reference's Fourier transform is zero-padded twice (after a gridding correction) and sampled by
trilinear interpolation at the rotated frequencies ``A^T k`` of only the components that count, so rotating
the reference costs ``O(#components)`` per orientation. Translations are scored by phase ramps, and all
particles are scored against a batch of (rotation, shift) pairs with one real matrix product (GEMM). The global
search (a uniform ``angular_sampling`` grid and a spherical shift grid, at low resolution) keeps each
particle's ``candidates`` best orientations; each gets one local refinement level at that resolution, and the
best is refined by a local pattern search (27 rotations x 27 shifts around the current pose per level, both
steps halving per level) using all frequencies of the reference.

The particle spectra and the reference sampler are in :mod:`cryomine.average.spectra`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cryomine.average.config import AlignConfig
from cryomine.average.spectra import ParticleSpectra, ReferenceSampler, particle_spectra
from cryomine.errors import InputError
from cryomine.geometry import angular_sampling, euler_zyz_to_matrix, matrix_to_euler_zyz, xyz_to_zyx_matrix

__all__ = [
    "Alignment",
    "align_particles",
    "align_subtomogram",
]


@dataclass(frozen=True)
class Alignment:
    """Poses found for ``N`` particles: ``matrices_xyz`` ``(N, 3, 3)`` (RELION ``A``), ``shifts_zyx`` ``(N, 3)``
    voxels, ``scores`` ``(N,)`` wedge-constrained correlation."""

    matrices_xyz: np.ndarray
    shifts_zyx: np.ndarray
    scores: np.ndarray

    @property
    def eulers_zyz(self) -> np.ndarray:
        """``(N, 3)`` RELION ZYZ ``(rot, tilt, psi)`` degrees."""
        return matrix_to_euler_zyz(self.matrices_xyz)


def shift_grid(max_shift: float, spacing: float, sphere: bool = True) -> np.ndarray:
    """``(T, 3)`` zyx shifts ``m * spacing`` (integer ``m``) with ``|t| <= max_shift`` (or, with ``sphere=False``,
    every ``|component| <= max_shift``); includes 0."""
    m = int(math.floor(max_shift / spacing + 1e-9)) if spacing > 0 else 0
    axis = np.arange(-m, m + 1) * spacing
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    if sphere:
        grid = grid[np.sqrt((grid**2).sum(1)) <= max_shift + 1e-6]
    return grid


def _phase(k_zyx: torch.Tensor, shifts_zyx: torch.Tensor, box: int) -> torch.Tensor:
    """``exp(-2 pi i k.t)`` for frequencies ``k`` (cycles/voxel) and shifts ``t`` (voxels): ``(T, m)`` complex."""
    arg = -2.0 * math.pi * (shifts_zyx.to(torch.float32) @ k_zyx.T)
    return torch.polar(torch.ones_like(arg), arg)


def _zyx(matrices_xyz: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(xyz_to_zyx_matrix(matrices_xyz).astype(np.float32))


def _rows_per_chunk(per_row_floats: int, budget_mb: float) -> int:
    return max(1, int(budget_mb * 2**20 / 4 / max(per_row_floats, 1)))


def global_search(
    spectra: ParticleSpectra,
    reference: ReferenceSampler,
    rotations_xyz: np.ndarray,
    shifts_zyx: np.ndarray,
    chunk_mb: float = 96.0,
    n_best: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n_best`` best rotations of ``(A, 3, 3)`` (each at its best of ``(T, 3)`` shifts) for every particle.

    One GEMM per batch of rotations scores all particles against all (rotation, shift) pairs. Returns
    ``(N, M)`` rotation indices, ``(N, M)`` shift indices and ``(N, M)`` scores, best first (``M = min(n_best, A)``).
    """
    p = spectra.values
    n_part, m = p.shape
    feats = torch.view_as_real(p).reshape(n_part, 2 * m)  # (N, 2m) interleaved re, im
    power = p.real**2 + p.imag**2  # (N, m)
    phase = _phase(spectra.k_zyx, torch.from_numpy(shifts_zyx), spectra.box)  # (T, m)
    n_t = phase.shape[0]
    rot_zyx = _zyx(rotations_xyz)
    per_rot = n_t * 2 * m + n_part * n_t  # floats per rotation: G columns + score columns
    step = min(len(rotations_xyz), _rows_per_chunk(per_rot, chunk_mb))
    n_keep = max(1, min(int(n_best), len(rotations_xyz)))
    top = torch.full((n_part, 0), -math.inf)
    top_rot = torch.zeros((n_part, 0), dtype=torch.int64)
    top_shift = torch.zeros((n_part, 0), dtype=torch.int64)
    norm_p_full = power.sum(1).clamp_min(1e-30)
    for a0 in range(0, len(rotations_xyz), step):
        r, cov = reference.sample(rot_zyx[a0 : a0 + step], spectra.k_zyx)
        r = r / spectra.sigma
        if cov is not None:
            r = r * cov
            norm_p = (power @ cov.T).clamp_min(1e-30)  # (N, a)
        else:
            norm_p = norm_p_full[:, None]
        norm_r = (r.real**2 + r.imag**2).sum(1).clamp_min(1e-30)  # (a,)
        z = r[:, None, :] * phase[None]  # (a, T, m)
        g = torch.view_as_real(z).reshape(-1, 2 * m)  # (a*T, 2m) interleaved
        cc = (feats @ g.T).view(n_part, -1, n_t)  # (N, a, T)
        cc = cc / torch.sqrt(norm_p * norm_r[None, :])[:, :, None]
        val, t_idx = cc.max(dim=2)  # (N, a)
        a_idx = torch.arange(a0, a0 + val.shape[1]).expand(n_part, -1)
        val, order = torch.cat([top, val], 1).topk(min(n_keep, top.shape[1] + val.shape[1]), dim=1)
        top_rot = torch.cat([top_rot, a_idx], 1).gather(1, order)
        top_shift = torch.cat([top_shift, t_idx], 1).gather(1, order)
        top = val
    return top_rot.numpy(), top_shift.numpy(), top.double().numpy()


def _local_rotations(step_deg: float) -> np.ndarray:
    """27 rotations: rotation vectors on a ``{-1, 0, 1}^3 * step`` grid (identity first)."""
    g = shift_grid(1.0, 1.0, sphere=False)
    g = g[np.argsort(np.abs(g).sum(1), kind="stable")]
    return Rotation.from_rotvec(np.deg2rad(step_deg) * g).as_matrix()


def local_refine(
    spectra: ParticleSpectra,
    reference: ReferenceSampler,
    start: Alignment,
    rot_step_deg: float,
    final_rot_step_deg: float,
    shift_step_vox: float,
    max_shift_vox: float,
    chunk_mb: float = 96.0,
    max_levels: int | None = None,
) -> Alignment:
    """Pattern search around each particle's pose: 27 rotations x 27 shifts per level, steps halving per level.

    Levels continue until the rotation step reaches ``final_rot_step_deg`` and the shift step 0.25 voxel (or
    ``max_levels`` levels ran). A pose only changes when a neighbour scores higher: the score never decreases.
    """
    p = spectra.values
    n_part, m = p.shape
    mats = start.matrices_xyz.copy()
    shifts = start.shifts_zyx.astype(np.float64).copy()
    scores = start.scores.astype(np.float64).copy()
    power = p.real**2 + p.imag**2
    per_part = 27 * (6 * m) + 27 * 27
    step = min(n_part, _rows_per_chunk(per_part, chunk_mb))
    rot_step, sh_step = float(rot_step_deg), float(shift_step_vox)
    level = 0
    while True:
        level += 1
        d_rot = _local_rotations(rot_step)  # (J, 3, 3)
        d_shift = shift_grid(1.0, 1.0, sphere=False) * sh_step if max_shift_vox > 0 else np.zeros((1, 3))
        e = _phase(spectra.k_zyx, torch.from_numpy(d_shift), spectra.box)  # (T, m)
        e_mat = torch.view_as_real(e.conj().resolve_conj()).reshape(len(e), 2 * m).T.contiguous()  # (2m, T): Re(X e) = Xr er - Xi ei
        n_j, n_t = len(d_rot), len(d_shift)
        for s0 in range(0, n_part, step):
            sl = slice(s0, min(s0 + step, n_part))
            b = sl.stop - sl.start
            cand = mats[sl][:, None] @ d_rot[None]  # (b, J, 3, 3): A_i dR_j
            r, cov = reference.sample(_zyx(cand.reshape(-1, 3, 3)), spectra.k_zyx)
            r = (r / spectra.sigma).view(b, n_j, m)
            if cov is not None:
                cov = cov.view(b, n_j, m)
                r = r * cov
                norm_p = (power[sl][:, None, :] * cov).sum(-1)
            else:
                norm_p = power[sl].sum(-1)[:, None].expand(b, n_j)
            norm_r = (r.real**2 + r.imag**2).sum(-1)
            ramp = _phase(spectra.k_zyx, torch.from_numpy(shifts[sl]), spectra.box)  # (b, m): current shift
            x = p[sl].conj()[:, None, :] * r * ramp[:, None, :]
            cc = torch.view_as_real(x).reshape(b * n_j, 2 * m) @ e_mat  # (b*J, T)
            cc = cc.view(b, n_j, n_t) / torch.sqrt((norm_p * norm_r).clamp_min(1e-30))[:, :, None]
            inside = np.sqrt(((shifts[sl][:, None, :] + d_shift[None]) ** 2).sum(-1)) <= max_shift_vox + 1e-6  # (b, T)
            cc = cc.masked_fill(~torch.from_numpy(inside)[:, None, :], -math.inf)
            val, flat = cc.reshape(b, -1).max(dim=1)
            j_idx, t_idx = (flat // n_t).numpy(), (flat % n_t).numpy()
            val = val.double().numpy()
            new_shift = shifts[sl] + d_shift[t_idx]
            ok = val > scores[sl] + 1e-9
            idx = np.arange(sl.start, sl.stop)[ok]
            mats[idx] = cand[ok, j_idx[ok]]
            shifts[idx] = new_shift[ok]
            scores[idx] = val[ok]
        if (rot_step <= final_rot_step_deg + 1e-9 and sh_step <= 0.25 + 1e-9) or (max_levels is not None and level >= max_levels):
            break
        rot_step = max(rot_step / 2.0, final_rot_step_deg)
        sh_step = max(sh_step / 2.0, 0.125)
    return Alignment(mats, shifts, scores)


def global_cutoff(cutoff: float, config: AlignConfig, voxel_size_a: float, box: int) -> float:
    """Frequency limit (cycles/voxel) of the global search: the reference's, capped by the config's.

    The default cap ``max(0.125, 2 / (step_rad * box))`` is the frequency at which an orientation error of half
    the angular step moves a point at radius ``box / 4`` (a particle filling half the box) by a quarter period:
    finer detail cannot be matched by the nearest grid orientation anyway.
    """
    if config.global_max_resolution_a is not None:
        cap = voxel_size_a / config.global_max_resolution_a
    else:
        cap = max(0.125, 2.0 / (math.radians(config.angular_step_deg) * box))
    return min(cutoff, cap)


def align_particles(
    spectra: ParticleSpectra,
    reference: ReferenceSampler,
    config: AlignConfig,
    *,
    voxel_size_a: float = 1.0,
    start: Alignment | None = None,
    progress: Callable[[int], None] | None = None,
) -> Alignment:
    """Align particles (their :func:`particle_spectra`) to a reference: global search, then local refinement.

    With ``start`` given, the global search is skipped and the local refinement starts from ``start`` at the
    step ``config.angular_step_deg / 2``. ``progress(k)`` is called with the number of particles finished.
    """
    cutoff = float(spectra.radius.max())
    n_part = spectra.values.shape[0]
    rot_step = config.angular_step_deg / 2.0
    if start is None:
        g_cut = global_cutoff(cutoff, config, voxel_size_a, spectra.box)
        coarse = spectra.subset(g_cut)
        spacing = max(1.0, min(config.max_shift_vox, 0.4 / g_cut)) if config.max_shift_vox > 0 else 1.0
        shifts = shift_grid(config.max_shift_vox, spacing)
        rots = euler_zyz_to_matrix(angular_sampling(config.angular_step_deg))
        rot_idx, shift_idx, _ = global_search(coarse, reference, rots, shifts, config.chunk_mb, config.candidates)
        n_c = rot_idx.shape[1]
        # one refinement level of every candidate at the global search's resolution, then keep the best
        rows = np.repeat(np.arange(n_part), n_c)
        expanded = ParticleSpectra(coarse.values[torch.from_numpy(rows)], coarse.k_zyx, coarse.radius, coarse.sigma, coarse.box)
        cand = Alignment(rots[rot_idx.ravel()], shifts[shift_idx.ravel()], np.full(n_part * n_c, -np.inf))
        cand = local_refine(expanded, reference, cand, rot_step, rot_step, spacing / 2.0, config.max_shift_vox, config.chunk_mb, max_levels=1)
        pick = np.arange(n_part) * n_c + cand.scores.reshape(n_part, n_c).argmax(1)
        start = Alignment(cand.matrices_xyz[pick], cand.shifts_zyx[pick], cand.scores[pick])
        rot_step, sh_step = rot_step / 2.0, spacing / 4.0
    else:
        sh_step = 1.0
    # rescore the start at full resolution so the local search compares like with like
    start = Alignment(start.matrices_xyz, start.shifts_zyx, np.full(n_part, -np.inf))
    result = local_refine(
        spectra, reference, start, max(rot_step, config.local_step_deg), config.local_step_deg, max(sh_step, 0.25),
        config.max_shift_vox, config.chunk_mb,
    )  # fmt: skip
    if progress is not None:
        progress(n_part)
    return result


def align_subtomogram(
    particle: np.ndarray,
    reference: np.ndarray,
    tilt_range_deg: tuple[float, float] = (-60.0, 60.0),
    config: AlignConfig | None = None,
    *,
    cutoff: float = 0.5,
    whiten: bool | None = None,
) -> Alignment:
    """Align one ``(n, n, n)`` subtomogram (with a missing wedge) to an ``(n, n, n)`` reference.

    ``cutoff``: highest frequency used (cycles/voxel). Returns an :class:`Alignment` of one pose: the reference
    rotated by ``matrices_xyz[0]`` and shifted by ``shifts_zyx[0]`` matches the particle.
    """
    cfg = config or AlignConfig()
    p = np.asarray(particle, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    if p.ndim != 3 or len(set(p.shape)) != 1:
        raise InputError(f"subtomogram must be a cube, got shape {p.shape}")
    if r.shape != p.shape:
        raise InputError(f"reference shape {r.shape} differs from the subtomogram's {p.shape}")
    cut = min(float(cutoff), 0.5 - 1.0 / p.shape[0])
    spectra = particle_spectra(p[None], cut, tilt_range_deg, whiten=cfg.whiten if whiten is None else whiten)
    return align_particles(spectra, ReferenceSampler(r), cfg)
