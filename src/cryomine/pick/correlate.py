"""The FFT correlation engine of template matching: one tile window against every template orientation (torch).

Holds the tile-size transforms (:class:`_FFT`, ``scipy.fft`` on CPU, ``torch.fft`` on CUDA), the phase ramp
that aligns the correlation region (:func:`_shift_ramp`) and the fast-local-correlation scan over orientations
(:class:`_Correlator`). The method is described in :mod:`cryomine.pick.template`, which drives it tile by tile.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
import scipy.fft as sfft
import torch
from tqdm import tqdm

from cryomine.geometry import rotate_volumes

_VAR_EPS = 1e-3  # local variance (tomogram standardised to variance 1) below which the score is set to 0


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})  # one thread: called by every scan worker at once
def _fold_orientation(score: np.ndarray, best: np.ndarray, best_idx: np.ndarray, index: int, lo: np.ndarray,
                      hi: np.ndarray, inv_core: np.ndarray, within: np.ndarray) -> tuple[float, float]:  # fmt: skip
    """One pass over one orientation's ``(rz, ry, rx)`` scores (any strides): where ``score > best``, set ``best``
    and ``best_idx = index``; return the float64 sum and sum of squares of the scores in the core
    ``[lo, hi)`` (per axis, region indices), each times ``inv_core[core voxel]`` if ``inv_core`` is not empty,
    counting only core voxels where the bool ``within`` (core-shaped) is set if it is not empty. Replaces five
    whole-array torch passes (compare, maximum, masked fill, sum, dot) that cost a quarter of the scan; the
    sums may be reassociated (vectorised), which changes only their rounding."""
    use_inv = inv_core.size > 0
    use_within = within.size > 0
    s = 0.0
    s2 = 0.0
    nz, ny, nx = score.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):  # branch-free selects: vectorised
                v = score[z, y, x]
                take = v > best[z, y, x]
                best[z, y, x] = v if take else best[z, y, x]
                best_idx[z, y, x] = index if take else best_idx[z, y, x]
            if not (lo[0] <= z < hi[0] and lo[1] <= y < hi[1]):
                continue
            cz, cy = z - lo[0], y - lo[1]
            for x in range(lo[2], hi[2]):
                a = np.float64(score[z, y, x])
                if use_inv:
                    a *= inv_core[cz, cy, x - lo[2]]
                if use_within and not within[cz, cy, x - lo[2]]:
                    a = 0.0
                s += a
                s2 += a * a
    return s, s2


class _FFT:
    """The tile-size transforms: forward spectra of small ``(b, m, m, m)`` boxes zero-padded at the end to the
    window ``(Lz, Ly, Lx)``, and inverse real transforms. On CUDA: ``torch.fft``. On CPU: ``scipy.fft`` (pocketfft),
    which here is 1.5-2x faster than torch's CPU FFT for these 3-D real transforms, and lets the forward transform
    skip the zero padding axis by axis (``m`` of ``L`` planes are non-zero). Tensors share memory with numpy."""

    def __init__(self, shape: tuple[int, int, int], device: torch.device, workers: int | None = None) -> None:
        self.shape = shape
        self.cpu = device.type == "cpu"
        self.workers = workers if workers is not None else max(1, torch.get_num_threads())

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``rfftn`` of ``(b, m, m, m)`` boxes padded to the window: ``(b, Lz, Ly, Lx // 2 + 1)`` complex."""
        lz, ly, lx = self.shape
        if not self.cpu:
            return torch.fft.rfftn(x, s=self.shape, dim=(-3, -2, -1))
        f = sfft.rfft(x.numpy(), n=lx, axis=-1, workers=self.workers)
        f = sfft.fft(f, n=ly, axis=-2, workers=self.workers, overwrite_x=True)
        return torch.from_numpy(sfft.fft(f, n=lz, axis=-3, workers=self.workers, overwrite_x=True))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """``rfftn`` of a window-size volume."""
        if not self.cpu:
            return torch.fft.rfftn(v)
        return torch.from_numpy(sfft.rfftn(v.numpy(), workers=self.workers))

    def inverse(self, spec: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        """``irfftn`` of ``(b, Lz, Ly, Lx // 2 + 1)`` spectra: ``b`` real ``(Lz, Ly, Lx)`` volumes (on CPU a list, one
        transform at a time, each in the array scipy allocates: copying into a preallocated batch costs more)."""
        if not self.cpu:
            return torch.fft.irfftn(spec, s=self.shape, dim=(-3, -2, -1))
        arr = spec.numpy()
        return [torch.from_numpy(sfft.irfftn(arr[k], s=self.shape, workers=self.workers, overwrite_x=True)) for k in range(arr.shape[0])]


def _shift_ramp(shape: tuple[int, int, int], shift: list[int], device: torch.device) -> torch.Tensor:
    """``rfftn``-layout phase ``exp(2 pi i k . shift / L)``: multiplying a spectrum by it moves index ``shift`` of
    the (circular) signal to index 0."""
    ramps = []
    for axis, (n, s) in enumerate(zip(shape, shift)):
        k = np.fft.rfftfreq(n) if axis == 2 else np.fft.fftfreq(n)
        ramps.append(np.exp(2j * np.pi * k * (s % n)))
    ramp = ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
    return torch.from_numpy(ramp.astype(np.complex64)).to(device)


class TileScores(NamedTuple):
    """What :meth:`_Correlator.run` gives for one tile: ``best`` and ``index`` ``(region)`` (maximum score and its
    orientation), ``sums`` ``[sum, sum of squares]`` of every score in the core, ``noise`` ``(region)`` the
    phase-randomised template's maximum score (None without random-phase correction)."""

    best: np.ndarray
    index: np.ndarray
    sums: np.ndarray
    noise: np.ndarray | None


class _Fold:
    """The compiled per-orientation update (:func:`_fold_orientation`) with one tile's fixed arguments: the core's
    bounds in the region, ``1 / sigma_M`` on the core (spherical mask) and the search region on the core."""

    _NONE_F = np.zeros((0, 0, 0), np.float32)
    _NONE_B = np.zeros((0, 0, 0), bool)

    def __init__(self, region: tuple[int, int, int], core: tuple[slice, ...], inv: torch.Tensor | None,
                 within: torch.Tensor | None) -> None:  # fmt: skip
        self.lo = np.array([c.indices(n)[0] for c, n in zip(core, region)], np.int64)
        self.hi = np.array([c.indices(n)[1] for c, n in zip(core, region)], np.int64)
        self.inv = np.ascontiguousarray(inv[core].numpy()) if inv is not None else self._NONE_F
        self.within = within.numpy() if within is not None else self._NONE_B
        self.scratch = np.zeros(region, np.int32)
        self.empty = np.zeros(3, np.int64)

    def best(self, score: torch.Tensor, best: torch.Tensor, best_idx: torch.Tensor, index: int) -> tuple[float, float]:
        return _fold_orientation(score.numpy(), best.numpy(), best_idx.numpy(), index, self.lo, self.hi, self.inv, self.within)

    def maximum(self, score: torch.Tensor, best: torch.Tensor) -> None:
        """Running maximum only (an empty core: no moments)."""
        _fold_orientation(score.numpy(), best.numpy(), self.scratch, 0, self.empty, self.empty, self._NONE_F, self._NONE_B)


def _fold_torch(score: torch.Tensor, best: torch.Tensor, best_idx: torch.Tensor, index: int, sums: torch.Tensor,
                core: tuple[slice, ...], inv: torch.Tensor | None, within: torch.Tensor | None) -> None:  # fmt: skip
    """:func:`_fold_orientation` in torch (CUDA): in place, one orientation at a time (cheaper than a batched max)."""
    better = torch.gt(score, best)
    torch.maximum(best, score, out=best)
    best_idx.masked_fill_(better, index)
    a = score[core]
    if inv is not None:
        a = a * inv[core]
    a = (a[within] if within is not None else a).reshape(-1)
    sums[0] += a.sum(dtype=torch.float64)
    sums[1] += torch.dot(a, a).double()


class _Correlator:
    """Correlates one tile window with every orientation (see the module docstring)."""

    def __init__(self, template: np.ndarray, mask: np.ndarray, spherical: bool, weight: np.ndarray,
                 matrices_xyz: np.ndarray, batch: int, device: torch.device, noise_template: np.ndarray | None = None) -> None:  # fmt: skip
        self.device = device
        self.template = torch.from_numpy(np.ascontiguousarray(template, np.float32)).to(device)
        self.noise = None if noise_template is None else torch.from_numpy(np.ascontiguousarray(noise_template, np.float32)).to(device)
        self.mask = torch.from_numpy(np.ascontiguousarray(mask, np.float32)).to(device)
        self.spherical = spherical
        self.weight = torch.from_numpy(weight).to(device)
        self.mats = torch.from_numpy(matrices_xyz.astype(np.float32)).to(device)
        self.batch = batch
        self.m = template.shape[0]

    def _prepare(self, mats: torch.Tensor, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated, filtered, mask-normalised templates ``(b, m, m, m)`` (divided by N) and their masks."""
        b, m = mats.shape[0], self.m
        t = rotate_volumes(template.expand(b, m, m, m), mats)
        t = torch.fft.irfftn(torch.fft.rfftn(t, dim=(-3, -2, -1)) * self.weight, s=(m, m, m), dim=(-3, -2, -1))
        mk = self.mask[None] if self.spherical else (rotate_volumes(self.mask.expand(b, m, m, m), mats) > 0.5).to(t.dtype)
        n = mk.sum(dim=(-3, -2, -1), keepdim=True)
        mean = (t * mk).sum(dim=(-3, -2, -1), keepdim=True) / n
        t = (t - mean) * mk
        std = torch.sqrt((t * t).sum(dim=(-3, -2, -1), keepdim=True) / n).clamp_min(1e-12)
        return t / (std * n), mk

    def _correlate(self, boxes: torch.Tensor, fft: _FFT, vf: torch.Tensor, region: tuple[int, int, int]) -> list[torch.Tensor]:
        """``sum_x box(x) v(p + x - m // 2)`` at every region voxel ``p``: ``b`` views of shape ``region``.

        The boxes are flipped so that the product of spectra is a convolution (no complex conjugate pass); ``vf``
        carries the phase ramp that moves region voxel 0 to index 0 (see :meth:`run`).
        """
        spec = fft.spectrum(torch.flip(boxes, dims=(-3, -2, -1)).contiguous())
        spec.mul_(vf)
        return [c[: region[0], : region[1], : region[2]] for c in fft.inverse(spec)]

    def _inv_sigma(self, mk: torch.Tensor, fft: _FFT, vf: torch.Tensor, v2f: torch.Tensor,
                   region: tuple[int, int, int]) -> torch.Tensor:  # fmt: skip
        """``1 / sigma_M`` at every region position for masks ``(b, m, m, m)`` -> ``(b, *region)`` (0 where flat)."""
        n = mk.sum(dim=(-3, -2, -1)).reshape(-1, 1, 1, 1)
        mu = torch.stack(self._correlate(mk, fft, vf, region)) / n
        ex2 = torch.stack(self._correlate(mk, fft, v2f, region)) / n
        var = ex2 - mu * mu
        return torch.where(var > _VAR_EPS, torch.rsqrt(var.clamp_min(_VAR_EPS)), torch.zeros_like(var))

    def _scan(self, batches: list[int], fft: _FFT, vf: torch.Tensor, v2f: torch.Tensor, inv: torch.Tensor | None,
              region: tuple[int, int, int], core: tuple[slice, ...], within: torch.Tensor | None,
              bar: tqdm | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """Running maximum and its orientation index over the angle batches starting at ``batches``, the sum and
        sum of squares (float64) of every score in the ``core`` of the region (each orientation, each voxel; only
        where the bool ``within`` of the core's shape is set, if given), and the running maximum of the
        phase-randomised template's scores (None without one)."""
        best = torch.full(region, -torch.inf, device=self.device)
        best_idx = torch.zeros(region, dtype=torch.int32, device=self.device)
        noise = None if self.noise is None else torch.full(region, -torch.inf, device=self.device)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        fold = _Fold(region, core, inv, within) if self.device.type == "cpu" else None
        for start in batches:
            mats = self.mats[start : start + self.batch]
            t, mk = self._prepare(mats, self.template)
            inv_m = None if inv is not None else self._inv_sigma(mk, fft, vf, v2f, region)
            cc = self._correlate(t, fft, vf, region)
            if inv_m is not None:
                cc = list(torch.stack(cc) * inv_m)
            for k, score in enumerate(cc):
                if fold is not None:
                    sums += torch.tensor(fold.best(score, best, best_idx, start + k), dtype=torch.float64)
                else:
                    _fold_torch(score, best, best_idx, start + k, sums, core, inv, within)
            if noise is not None:  # the same orientations of the phase-randomised template: background only
                tn, _ = self._prepare(mats, self.noise)
                cn = self._correlate(tn, fft, vf, region)
                for score in (cn if inv_m is None else list(torch.stack(cn) * inv_m)):
                    if fold is not None:
                        fold.maximum(score, noise)
                    else:
                        torch.maximum(noise, score, out=noise)
            if bar is not None:
                bar.update(mats.shape[0])
        return best, best_idx, sums, noise

    @torch.no_grad()
    def run(self, window: np.ndarray, region: tuple[int, int, int], lead: tuple[int, int, int], bar: tqdm | None = None,
            workers: int = 1, core: tuple[slice, ...] | None = None,
            within: np.ndarray | None = None) -> TileScores:  # fmt: skip
        """Best score and best orientation index ``(region)`` for a standardised window (``L`` per axis) whose
        voxel ``lead`` is the region's first voxel (``m // 2`` with edge padding, 0 for circular matching), and
        ``[sum, sum of squares]`` (float64) of all scores (every orientation) in the region's ``core`` (default the
        whole region; only its voxels where ``within`` is set, if given): the statistics of the search space that
        the automatic threshold needs; with a phase-randomised template, its best score too (the background of
        the random-phase correction; :mod:`cryomine.pick.background`).

        The product of a window spectrum with a flipped box's spectrum is a convolution in which region voxel
        ``j`` sits at index ``j + lead + m - 1 - m // 2`` (mod ``L``); the window spectra are multiplied once by
        the phase ramp of that shift, so every correlation's region is its leading ``region`` block.

        On CPU with ``workers > 1`` the angle batches are shared among that many threads, each running
        single-threaded transforms (scipy.fft and torch release the GIL), with per-thread maxima merged at the
        end (ties go to the lower orientation index, as in a sequential scan). For a spherical mask
        ``1 / sigma_M`` is the same for every orientation, so the maximum is taken over the raw correlations and
        normalised once at the end.
        """
        shape = tuple(window.shape)
        fft = _FFT(shape, self.device, 1 if workers > 1 else None)  # type: ignore[arg-type]
        v = torch.from_numpy(window).to(self.device)
        ramp = _shift_ramp(shape, [d + self.m - 1 - self.m // 2 for d in lead], self.device)  # type: ignore[arg-type]
        vf = fft.forward(v).mul_(ramp)
        v2f = fft.forward(v * v).mul_(ramp)
        del v, ramp
        inv = self._inv_sigma(self.mask[None], fft, vf, v2f, region)[0] if self.spherical else None
        starts = list(range(0, self.mats.shape[0], self.batch))
        core = core if core is not None else (slice(None),) * 3
        inside = None if within is None else torch.from_numpy(np.ascontiguousarray(within, bool)).to(self.device)
        if workers <= 1 or self.device.type != "cpu" or len(starts) < 2:
            best, best_idx, sums, noise = self._scan(starts, fft, vf, v2f, inv, region, core, inside, bar)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(lambda w: self._scan(starts[w::workers], fft, vf, v2f, inv, region, core, inside, bar), range(workers)))
            best, best_idx, sums, noise = parts[0]
            for b, i, s, nz in parts[1:]:
                take = (b > best) | ((b == best) & (i < best_idx))
                best = torch.where(take, b, best)
                best_idx = torch.where(take, i, best_idx)
                sums = sums + s
                noise = None if noise is None else torch.maximum(noise, nz)
        if inv is not None:
            best = torch.where(inv > 0, best * inv, torch.zeros_like(best))
            noise = None if noise is None else torch.where(inv > 0, noise * inv, torch.zeros_like(noise))
        return TileScores(best.cpu().numpy(), best_idx.cpu().numpy(), sums.cpu().numpy(), None if noise is None else noise.cpu().numpy())
