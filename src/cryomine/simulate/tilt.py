"""Single-axis tilt-series projection and weighted back-projection (WBP), in torch (CPU or CUDA).

Geometry (the same as :mod:`cryomine.geometry.wedge`):

- Volumes are ``(..., d, h, w)`` = ``(z, y, x)``; ``z`` is the beam direction at zero tilt, ``y`` the tilt axis.
  Projections are ``(..., n_tilts, h, w)``: the detector has the volume's ``h`` rows (along ``y``) and ``w``
  columns (``x'``), with the same pixel size as the voxels.
- Coordinates are centred: voxel ``(i, j)`` of a ``(z, x)`` plane sits at ``z = i - (d - 1) / 2``,
  ``x = j - (w - 1) / 2``; detector column ``k`` at ``x' = k - (w - 1) / 2``. The rotation centre is the box
  centre.
- At tilt ``theta`` the beam runs along ``(z, x) = (cos theta, sin theta)`` and ``x' = x cos theta - z sin theta``.
  The projection is the line integral ``P(y, x') = integral f dt`` along the beam (path length in voxels).
  By the central-slice theorem it samples the Fourier plane ``(k_z, k_x) = k (-sin theta, cos theta)``.
- Each ``y`` row is independent (single tilt axis), so both operators act on ``(z, x)`` planes and can be
  chunked over rows (``chunk_rows``) to bound memory.

Projector: Joseph's method (each ray is sampled once per voxel row, along ``z`` for ``|theta| <= 45`` degrees or
along ``x`` beyond, with 1-D linear interpolation and zero outside the box, weighted by the step length
``1 / max(|cos|, |sin|)``). Back-projector: voxel-driven, 1-D linear interpolation of each filtered projection
at ``x'`` of the voxel. Both are precomputed as sparse matrices acting on flattened ``(z, x)`` planes (cached
per ``(d, w, angles, device)`` up to ~128 MB, e.g. for subtomogram batches): a batch is then one sparse matrix
product.

WBP: ``f = sum_theta dtheta * (ramp-filtered P_theta)(x')``, the discrete form of
``f = integral dtheta integral |k| P^_theta(k) exp(2 pi i k x') dk`` (``k`` in cycles per voxel), with no further
scale factor. The ramp is the band-limited (Ram-Lak) kernel sampled in real space (Kak & Slaney:
``h(0) = 1/4``, ``h(n odd) = -1 / (pi n)^2``), applied as a linear (not circular) convolution, i.e. a ``(w, w)``
Toeplitz matrix product (exact, and faster than FFTs at these sizes); unlike a frequency-sampled ``|k|`` it
causes no DC offset. ``dtheta`` is the trapezoid-rule angular weight (radians), so the weights sum to the tilt
range. Apodisation: a raised-cosine taper of the ramp, 1 below ``apodisation_start`` (fraction of Nyquist,
default 0.8) and 0 at Nyquist, to damp the ramp-amplified noise at the highest frequencies.

Normalisation: the reconstruction of ``project(vol)`` reproduces ``vol`` in values (not just shape) in the
sampled Fourier region; the linear interpolations of the projector and back-projector blur it (signal power
~0.85 at 0.1, ~0.6 at 0.25 cycles/voxel). The missing wedge arises only from the tilts projected: nothing is
masked. Beyond the Crowther frequency ``1 / (thickness * step_rad)`` the discrete tilts leave gaps and streaks
(a few % of the power leaks into the wedge). The detector is only ``w`` wide, so at high tilt the corners of
the box fall off it (truncation): pad scenes and crop the reconstruction to keep edges out of the result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from cryomine.errors import InputError
from cryomine.geometry.tilts import check_tilt_range

_CHUNK_BYTES = 256 * 2**20  # default working-set target per chunk of y rows


@dataclass(frozen=True)
class TiltSeriesConfig:
    """Tilt angles ``min_deg, min_deg + step_deg, ... <= max_deg`` (degrees; default -60..60 step 3: 41 tilts)."""

    min_deg: float = -60.0
    max_deg: float = 60.0
    step_deg: float = 3.0

    def __post_init__(self) -> None:
        check_tilt_range(self.min_deg, self.max_deg, "--tilt-min/--tilt-max")
        try:
            ok = math.isfinite(float(self.step_deg)) and not isinstance(self.step_deg, bool)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"tilt step must be a finite number of degrees, got {self.step_deg!r}", "--tilt-step")
        if not self.step_deg > 0:
            raise InputError(f"tilt step must be > 0 degrees, got {self.step_deg:g}", "--tilt-step")
        if (self.max_deg - self.min_deg) / self.step_deg > 3600:
            raise InputError(f"tilt step {self.step_deg:g} degrees gives more than 3600 tilts", "--tilt-step")
        if self.step_deg > 0.5 * (self.max_deg - self.min_deg):
            raise InputError(f"tilt step {self.step_deg:g} degrees leaves fewer than 3 tilts in {self.min_deg:g}..{self.max_deg:g}: "
                             "not a tilt series", "--tilt-step")  # fmt: skip

    @property
    def angles_deg(self) -> np.ndarray:
        """``(n_tilts,)`` float64 tilt angles in degrees, increasing."""
        n = int(math.floor((self.max_deg - self.min_deg) / self.step_deg + 1e-9)) + 1
        return self.min_deg + self.step_deg * np.arange(n, dtype=np.float64)

    @property
    def n_tilts(self) -> int:
        return len(self.angles_deg)


def _angles(angles_deg) -> tuple[float, ...]:
    arr = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InputError("need at least one tilt angle")
    if not np.isfinite(arr).all() or np.abs(arr).max() > 90:
        raise InputError("tilt angles must be finite and within +-90 degrees")
    if np.unique(arr).size != arr.size:
        raise InputError("tilt angles must be distinct")
    return tuple(float(a) for a in arr)


def angle_weights_rad(angles_deg) -> np.ndarray:
    """``(n_tilts,)`` angular weight (radians) of each tilt in WBP: the trapezoid rule, any input order.

    Interior tilts get half the distance between their neighbours and the two end tilts half the distance to
    their only neighbour, so the weights sum to ``max - min``: the reconstruction covers exactly the range that
    :func:`cryomine.geometry.wedge.missing_wedge_mask` calls sampled. A single tilt gets ``pi``.
    """
    ang = np.radians(np.asarray(_angles(angles_deg)))
    if ang.size == 1:
        return np.array([math.pi])
    order = np.argsort(ang)
    s = ang[order]
    gaps = np.diff(s)
    w_sorted = np.empty_like(s)
    w_sorted[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    w_sorted[0], w_sorted[-1] = 0.5 * gaps[0], 0.5 * gaps[-1]
    out = np.empty_like(w_sorted)
    out[order] = w_sorted
    return out


def _csr(row_counts: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int], device: str):
    """A torch CSR matrix from entries already in row order (columns ascending within a row), ``row_counts`` per
    row: no sort and no row array, so big tomograms can build ~10^8-entry operators."""
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(row_counts, out=crow[1:])
    idx = np.int32 if max(shape) < 2**31 and len(vals) < 2**31 else np.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow.astype(idx)),
            torch.from_numpy(cols.astype(idx, copy=False)),
            torch.from_numpy(vals.astype(np.float32, copy=False)),
            size=shape,
            device=device,
        )


def _row_taps(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation taps of ``(rows, steps)`` fractional indices on ``[0, n)``, in row order:
    ``(entries per row, step index, tap, weight)`` of the taps that fall inside with a weight > 0."""
    base = np.floor(pos)
    frac = pos - base
    tap = base.astype(np.int64)[..., None] + np.array([0, 1])  # (rows, steps, 2)
    wgt = np.stack([1.0 - frac, frac], axis=-1)
    ok = (tap >= 0) & (tap < n) & (wgt > 0)
    step = np.broadcast_to(np.arange(pos.shape[1])[None, :, None], ok.shape)
    return ok.reshape(len(pos), -1).sum(axis=1), step[ok], tap[ok], wgt[ok].astype(np.float32)


def _projector(d: int, w: int, angles: tuple[float, ...], device: str):
    """Sparse ``(n_tilts * w, d * w)`` Joseph projector on flattened ``(z, x)`` planes (entries in row order)."""
    zc = np.arange(d) - (d - 1) / 2.0
    xc = np.arange(w) - (w - 1) / 2.0
    det = xc
    index = np.int32 if d * w < 2**31 else np.int64
    counts, cols, vals = [], [], []
    for theta in np.radians(angles):  # one tilt at a time: its rows are contiguous
        c, s = math.cos(theta), math.sin(theta)
        if abs(c) >= abs(s):  # step along z: x = x'/cos + z tan
            pos = det[:, None] / c + zc[None, :] * (s / c) + (w - 1) / 2.0  # (w_det, d)
            n, step, tap, wgt = _row_taps(pos, w)
            col, scale = step * w + tap, 1.0 / abs(c)
        else:  # step along x: z = x cot - x'/sin
            pos = xc[None, :] * (c / s) - det[:, None] / s + (d - 1) / 2.0  # (w_det, w)
            n, step, tap, wgt = _row_taps(pos, d)
            col, scale = tap * w + step, 1.0 / abs(s)
            order = np.lexsort((col, np.repeat(np.arange(len(n)), n)))  # columns ascending within each row
            col, wgt = col[order], wgt[order]
        counts.append(n), cols.append(col.astype(index)), vals.append(wgt * np.float32(scale))
    shape = (len(angles) * w, d * w)
    return _csr(np.concatenate(counts), np.concatenate(cols), np.concatenate(vals), shape, device)


def _backprojector(d: int, w: int, angles: tuple[float, ...], device: str, zx_range: tuple[int, int, int, int] | None = None):
    """Sparse ``(nz * nx, n_tilts * w)`` voxel-driven back-projector (no weights) on flattened planes, into the
    voxels ``z0 <= z < z1``, ``x0 <= x < x1`` (``zx_range``; default the whole ``(d, w)`` plane) of a ``d``-deep
    reconstruction from a ``w``-wide detector. Entries are generated in row order (voxel, then tilt, then tap)."""
    z0, z1, x0, x1 = zx_range if zx_range is not None else (0, d, 0, w)
    nz, nx, t = z1 - z0, x1 - x0, len(angles)
    zc = np.arange(z0, z1) - (d - 1) / 2.0
    xc = np.arange(x0, x1) - (w - 1) / 2.0
    th = np.radians(np.asarray(angles))
    counts, cols, vals = [], [], []
    for zi in range(nz):  # one z plane at a time: temporaries of (nx, t, 2), whatever the volume
        pos = xc[:, None] * np.cos(th)[None, :] - zc[zi] * np.sin(th)[None, :] + (w - 1) / 2.0  # (nx, t)
        n, tilt, tap, wgt = _row_taps(pos, w)
        counts.append(n), cols.append((tilt * w + tap).astype(np.int32 if t * w < 2**31 else np.int64)), vals.append(wgt)
    shape = (nz * nx, t * w)
    return _csr(np.concatenate(counts), np.concatenate(cols), np.concatenate(vals), shape, device)


_cached_projector = lru_cache(maxsize=4)(_projector)
_cached_backprojector = lru_cache(maxsize=4)(_backprojector)
_CACHE_ENTRIES = 2**24  # operators up to ~128 MB are kept for the next batch; bigger ones (tomograms) are not


def _maybe_cached(build, cached, entries: int, *args):
    """``build(*args)``, through its cache when the operator (``entries`` non-zeros) is small."""
    return (cached if entries <= _CACHE_ENTRIES else build)(*args)


@lru_cache(maxsize=8)
def _ramp_matrix(w: int, apodisation_start: float, device: str) -> torch.Tensor:
    """``(w, w)`` matrix ``K`` with ``(p @ K)[k] = sum_j p[j] h(k - j)``: the apodised ramp as a linear filter."""
    length = 2 * w
    n = np.arange(length)
    n = np.where(n < w, n, n - length)  # taps -w .. w-1 (enough for linear filtering of w samples)
    kernel = np.zeros(length)
    kernel[n == 0] = 0.25
    odd = n % 2 != 0
    kernel[odd] = -1.0 / (math.pi**2 * n[odd].astype(np.float64) ** 2)  # band-limited ramp (Ram-Lak) samples
    frac = np.fft.rfftfreq(length) / 0.5  # fraction of Nyquist
    t = np.clip((frac - apodisation_start) / max(1.0 - apodisation_start, 1e-12), 0.0, 1.0)
    apod = 0.5 * (1.0 + np.cos(math.pi * t))
    kernel = np.fft.irfft(np.fft.rfft(kernel) * apod, n=length)
    offsets = np.arange(w)[None, :] - np.arange(w)[:, None]  # k - j
    return torch.from_numpy(kernel[offsets % length].astype(np.float32)).to(device)


def _device(x, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")


def _as_tensor(x, device: torch.device, name: str, min_ndim: int) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim < min_ndim:
        raise InputError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(t.shape)}")
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise InputError(f"{name} must be real, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.float32)


def _rows_per_chunk(chunk_rows: int | None, h: int, per_row_bytes: int) -> int:
    if chunk_rows is None:
        return max(1, min(h, _CHUNK_BYTES // max(per_row_bytes, 1)))
    if int(chunk_rows) < 1:
        raise InputError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return min(h, int(chunk_rows))


def project(volume, angles_deg, *, device=None, chunk_rows: int | None = None) -> torch.Tensor:
    """Line-integral projections of ``(..., d, h, w)`` volumes at each tilt: ``(..., n_tilts, h, w)`` float32.

    ``volume`` is a tensor or array (``z, y, x``); ``angles_deg`` the tilt angles in degrees; ``device`` the torch
    device to compute on (default: the input's); ``chunk_rows`` the number of ``y`` rows per chunk (default:
    automatic, ~256 MB of working set).
    """
    dev = _device(volume, device)
    vol = _as_tensor(volume, dev, "volume", 3)
    angles = _angles(angles_deg)
    *lead, d, h, w = vol.shape
    vol = vol.reshape(-1, d, h, w)
    n, t = vol.shape[0], len(angles)
    op = _maybe_cached(_projector, _cached_projector, 2 * t * d * w, d, w, angles, str(dev))
    out = torch.empty((n, t, h, w), dtype=torch.float32, device=dev)
    rows = _rows_per_chunk(chunk_rows, h, 4 * n * w * (2 * d + 2 * t))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        x = vol[:, :, y0:y1, :].permute(1, 3, 0, 2).reshape(d * w, n * (y1 - y0))  # (d*w, n*r)
        p = (op @ x).reshape(t, w, n, y1 - y0)
        out[:, :, y0:y1, :] = p.permute(2, 0, 3, 1)
    return out.reshape(*lead, t, h, w)


def ramp_filter(projections: torch.Tensor, angles: tuple[float, ...], apodisation_start: float) -> torch.Tensor:
    """WBP weighting ``dtheta * ramp * apod`` of ``(n, n_tilts, r, w)`` projections along ``x'`` (module docstring)."""
    ramp = _ramp_matrix(projections.shape[-1], apodisation_start, str(projections.device))
    dtheta = torch.as_tensor(angle_weights_rad(angles), dtype=torch.float32, device=projections.device)
    return (projections @ ramp).mul_(dtheta.view(-1, 1, 1))


def _zx_range(crop_zx, depth: int, w: int) -> tuple[int, int, int, int] | None:
    if crop_zx is None:
        return None
    zs, xs = crop_zx
    z0, z1, _ = zs.indices(depth)
    x0, x1, _ = xs.indices(w)
    if z1 <= z0 or x1 <= x0 or zs.step not in (None, 1) or xs.step not in (None, 1):
        raise InputError(f"crop_zx must be two non-empty unit-step slices of the ({depth}, {w}) plane, got {crop_zx}")
    return z0, z1, x0, x1


def backproject_wbp(
    projections,
    angles_deg,
    depth: int,
    *,
    apodisation_start: float = 0.8,
    device=None,
    chunk_rows: int | None = None,
    crop_zx: tuple[slice, slice] | None = None,
) -> torch.Tensor:
    """Weighted back-projection of ``(..., n_tilts, h, w)`` projections into ``(..., depth, h, w)`` volumes.

    Inverse of :func:`project` in the sampled Fourier region (see the module docstring for the filter,
    apodisation and normalisation). ``apodisation_start`` in ``(0, 1]`` (fraction of Nyquist; 1 = plain ramp).
    ``crop_zx``: ``(z slice, x slice)`` of the ``(depth, w)`` plane to reconstruct (default all); the result is
    then ``(..., nz, h, nx)``, equal to that part of the whole reconstruction, at a fraction of the cost (to crop
    in ``y``, pass only those rows of the projections).
    """
    dev = _device(projections, device)
    proj = _as_tensor(projections, dev, "projections", 3)
    angles = _angles(angles_deg)
    depth = int(depth)
    if depth < 1:
        raise InputError(f"reconstruction depth must be >= 1, got {depth}")
    if not 0.0 < float(apodisation_start) <= 1.0:
        raise InputError(f"apodisation_start must be in (0, 1], got {apodisation_start}")
    *lead, t, h, w = proj.shape
    if t != len(angles):
        raise InputError(f"projections have {t} tilts but {len(angles)} angles were given")
    zx = _zx_range(crop_zx, depth, w)
    nz, nx = (depth, w) if zx is None else (zx[1] - zx[0], zx[3] - zx[2])
    proj = proj.reshape(-1, t, h, w)
    n = proj.shape[0]
    op = _maybe_cached(_backprojector, _cached_backprojector, 2 * t * nz * nx, depth, w, angles, str(dev), zx)
    out = torch.empty((n, nz, h, nx), dtype=torch.float32, device=dev)
    rows = _rows_per_chunk(chunk_rows, h, 4 * n * (2 * nz * nx + 6 * t * w))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        q = ramp_filter(proj[:, :, y0:y1, :], angles, float(apodisation_start))  # (n, t, r, w)
        q = q.permute(1, 3, 0, 2).reshape(t * w, n * (y1 - y0))
        v = (op @ q).reshape(nz, nx, n, y1 - y0)
        out[:, :, y0:y1, :] = v.permute(2, 0, 3, 1)
    return out.reshape(*lead, nz, h, nx)
