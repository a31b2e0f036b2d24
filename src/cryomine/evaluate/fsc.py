"""Fourier shell correlation (FSC) between two maps, its resolution estimates, and its CSV / PNG outputs.

``FSC(shell) = Re sum_k A(k) conj(B(k)) / sqrt(sum_k |A(k)|^2 sum_k |B(k)|^2)``, the sums over the Fourier
components ``k`` of one shell. Shell ``j`` holds the frequencies with ``round(|k| * n_max) == j`` where ``|k|`` is
in cycles per voxel (``np.fft.fftfreq`` on every axis, so non-cubic boxes work) and ``n_max`` is the largest box
edge; shells run from 0 (DC) to Nyquist (``n_max // 2``). Shell ``j`` is at frequency ``j / (n_max * voxel)``
(1/Å). The half spectrum (``rfftn``) is used with the Hermitian weights (2 for columns whose mirror image is not
stored), so the sums equal full-spectrum sums.

Resolution at a threshold (0.5, or 0.143 for gold-standard half maps): the first crossing of the curve below
the threshold after DC, linearly interpolated between the two shells around it; ``1 / frequency`` in Å. Two
curves have no crossing, and :func:`crossing` says which (:meth:`FSCResult.describe` words it):

- ``ABOVE`` (the curve never drops below the threshold): the resolution is reported as Nyquist, ``2 * voxel
  size``, a bound (the maps agree at least that far);
- ``BELOW`` (already below it in shell 1, e.g. anti-correlated maps): no resolution, reported as ``inf``
  (interpolating between DC and shell 1 would give a number beyond the box size, which means nothing).

An optional real-space mask multiplies both maps before the transform.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.grids import frequency_magnitude
from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import Volume, read_mrc
from cryomine.viz import fsc_figure, save_png

__all__ = [
    "ABOVE",
    "BELOW",
    "CROSSED",
    "FSCResult",
    "crossing",
    "fsc",
    "fsc_files",
    "shell_index",
    "resolution_at",
    "write_fsc_csv",
    "plot_fsc",
]

MapLike = np.ndarray | Volume

#: :func:`crossing` outcomes: the curve crosses the threshold; stays at or above it to Nyquist; is below it from shell 1.
CROSSED, ABOVE, BELOW = "crossed", "above", "below"


@dataclass(frozen=True)
class FSCResult:
    """An FSC curve and what is read from it.

    ``frequency_a_inv``: ``(s,)`` shell frequencies (1/Å), shell 0 is DC. ``fsc``: ``(s,)`` correlation per shell
    (shell 0 included; NaN for a shell where a map has no power). ``n_components``: ``(s,)`` Fourier components
    per shell (full spectrum). ``resolution_05_a`` / ``resolution_0143_a``: resolution (Å) at FSC 0.5 / 0.143.
    ``fsc_sum``: sum of the FSC over the shells 1..Nyquist. ``voxel_size_a``: voxel size (Å). A curve that never
    crosses a threshold gives ``2 * voxel_size_a`` (above it to Nyquist) or ``inf`` (below it from the start);
    :meth:`crossing` tells them apart and :meth:`describe` words the result.
    """

    frequency_a_inv: np.ndarray
    fsc: np.ndarray
    n_components: np.ndarray
    resolution_05_a: float
    resolution_0143_a: float
    fsc_sum: float
    voxel_size_a: float

    def resolution(self, threshold: float) -> float:
        """Resolution (Å) where the curve first drops below ``threshold`` (see :func:`resolution_at`)."""
        return resolution_at(self.frequency_a_inv, self.fsc, threshold, self.voxel_size_a)

    def crossing(self, threshold: float) -> str:
        """``CROSSED``, ``ABOVE`` (to Nyquist) or ``BELOW`` (from shell 1): see :func:`crossing`."""
        return crossing(self.fsc, threshold)

    def describe(self, threshold: float, digits: int = 2) -> str:
        """The resolution at ``threshold`` in words: ``"12.34 Å"``, ``"better than 8.00 Å (FSC stays above 0.143
        to Nyquist, 2 x voxel)"`` or ``"none (FSC below 0.143 at all frequencies)"``."""
        state = self.crossing(threshold)
        if state == BELOW:
            return f"none (FSC below {threshold:g} at all frequencies)"
        if state == ABOVE:
            return f"better than {2.0 * self.voxel_size_a:.{digits}f} Å (FSC stays above {threshold:g} to Nyquist, 2 x voxel)"
        return f"{self.resolution(threshold):.{digits}f} Å"

    def to_dict(self) -> dict:
        """JSON-able summary and curve (a resolution with no crossing is ``null`` with its ``crossing`` state)."""

        def finite(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "voxel_size_a": self.voxel_size_a,
            "resolution_fsc05_a": finite(self.resolution_05_a),
            "resolution_fsc0143_a": finite(self.resolution_0143_a),
            "crossing_fsc05": self.crossing(0.5),
            "crossing_fsc0143": self.crossing(0.143),
            "fsc_sum": self.fsc_sum,
            "frequency_a_inv": [float(f) for f in self.frequency_a_inv],
            "fsc": [None if not math.isfinite(v) else float(v) for v in self.fsc],
        }


def shell_index(shape_zyx: Sequence[int], rfft: bool = True) -> tuple[np.ndarray, int]:
    """Shell number of every Fourier component of a ``(d, h, w)`` box and the number of shells ``n_max // 2 + 1``.

    Returns a ``(d, h, w // 2 + 1)`` (``rfft``) or ``(d, h, w)`` int array in unshifted FFT layout; components
    beyond Nyquist (corners of the cube) get the index ``n_shells`` (one past the last shell).
    """
    d, h, w = (int(s) for s in shape_zyx)
    n_max = max(d, h, w)
    radius = frequency_magnitude((d, h, w), rfft) * n_max
    n_shells = n_max // 2 + 1
    idx = np.rint(radius).astype(np.int64)
    return np.minimum(idx, n_shells), n_shells


def hermitian_weights(shape_zyx: Sequence[int]) -> np.ndarray:
    """``(w // 2 + 1,)`` weights of ``rfftn`` columns: 1 for DC (and Nyquist when ``w`` is even), else 2."""
    w = int(shape_zyx[-1])
    weights = np.full(w // 2 + 1, 2.0)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0
    return weights


def _curve(curve: np.ndarray) -> np.ndarray:
    c = np.nan_to_num(np.asarray(curve, dtype=np.float64), nan=0.0).copy()
    c[0] = 1.0
    return c


def crossing(curve: np.ndarray, threshold: float) -> str:
    """``BELOW`` if shell 1 is already below ``threshold``, ``ABOVE`` if no shell after DC is, else ``CROSSED``
    (NaN shells count as 0)."""
    below = np.nonzero(_curve(curve)[1:] < threshold)[0]
    if below.size == 0:
        return ABOVE
    return BELOW if int(below[0]) == 0 else CROSSED


def resolution_at(frequency_a_inv: np.ndarray, curve: np.ndarray, threshold: float, voxel_size_a: float) -> float:
    """Resolution (Å) at the first crossing of ``curve`` below ``threshold`` after shell 0 (interpolated).

    Shell 0 (DC) counts as FSC 1. NaN shells count as 0. No crossing (:func:`crossing`): ``2 * voxel`` (Nyquist,
    a bound) when the curve stays at or above the threshold, ``inf`` (no resolution) when shell 1 is below it.
    The result is never larger than the box (shell 1).
    """
    f = np.asarray(frequency_a_inv, dtype=np.float64)
    c = _curve(curve)
    state = crossing(curve, threshold)
    if state == ABOVE:
        return 2.0 * float(voxel_size_a)
    if state == BELOW:
        return math.inf
    j = int(np.nonzero(c[1:] < threshold)[0][0]) + 1  # first shell below the threshold; shell j - 1 (>= 1) is at or above it
    c0, c1 = c[j - 1], c[j]
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    freq = f[j - 1] + t * (f[j] - f[j - 1])
    return float(1.0 / freq) if freq > 0 else math.inf


def _as_map(value: MapLike, name: str) -> tuple[np.ndarray, float | None]:
    if isinstance(value, Volume):
        return check_volume(value.data, name=name), float(value.voxel_size_a)
    return check_volume(value, name=name), None


def fsc(
    map_a: MapLike,
    map_b: MapLike,
    *,
    voxel_size_a: float | None = None,
    mask: MapLike | None = None,
) -> FSCResult:
    """FSC between two ``(d, h, w)`` maps (arrays or :class:`~cryomine.io.mrc.Volume`), optionally masked.

    ``voxel_size_a`` (Å) is taken from the Volumes when not given (1 Å for plain arrays). Raises
    :class:`InputError` for maps (or a mask) of different shapes, Volumes of different voxel sizes, an all-zero
    mask or maps with no power after masking.
    """
    a, vs_a = _as_map(map_a, "first map")
    b, vs_b = _as_map(map_b, "second map")
    if a.shape != b.shape:
        raise InputError(f"maps have different shapes {a.shape} and {b.shape}: FSC needs maps on the same grid")
    if vs_a is not None and vs_b is not None and not math.isclose(vs_a, vs_b, rel_tol=1e-3):
        raise InputError(f"maps have different voxel sizes {vs_a:g} Å and {vs_b:g} Å: resample one first")
    if voxel_size_a is None:
        voxel_size_a = vs_a if vs_a is not None else (vs_b if vs_b is not None else 1.0)
    vs = check_voxel_size(voxel_size_a, "voxel_size_a")
    if mask is not None:
        m, _ = _as_map(mask, "mask")
        if m.shape != a.shape:
            raise InputError(f"mask has shape {m.shape}, the maps {a.shape}")
        if not np.any(m != 0):
            raise InputError("mask is all zero")
        a, b = a * m, b * m
    if not (np.any(a != a.flat[0]) and np.any(b != b.flat[0])):
        raise InputError("a map is constant (after masking): FSC is undefined")
    fa = np.fft.rfftn(a.astype(np.float64))
    fb = np.fft.rfftn(b.astype(np.float64))
    idx, n_shells = shell_index(a.shape)
    wts = np.broadcast_to(hermitian_weights(a.shape)[None, None, :], idx.shape).ravel()
    flat = idx.ravel()
    cross = np.bincount(flat, weights=wts * (fa * np.conj(fb)).real.ravel(), minlength=n_shells + 1)[:n_shells]
    pa = np.bincount(flat, weights=wts * (np.abs(fa) ** 2).ravel(), minlength=n_shells + 1)[:n_shells]
    pb = np.bincount(flat, weights=wts * (np.abs(fb) ** 2).ravel(), minlength=n_shells + 1)[:n_shells]
    count = np.bincount(flat, weights=wts, minlength=n_shells + 1)[:n_shells]
    denom = np.sqrt(pa * pb)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(denom > 0, cross / np.where(denom > 0, denom, 1.0), np.nan)
    freq = np.arange(n_shells) / (max(a.shape) * vs)
    return FSCResult(
        frequency_a_inv=freq,
        fsc=curve,
        n_components=count.astype(np.int64),
        resolution_05_a=resolution_at(freq, curve, 0.5, vs),
        resolution_0143_a=resolution_at(freq, curve, 0.143, vs),
        fsc_sum=float(np.nansum(curve[1:])),
        voxel_size_a=vs,
    )


def fsc_files(
    path_a: str | os.PathLike[str], path_b: str | os.PathLike[str], mask_path: str | os.PathLike[str] | None = None,
    voxel_size_a: float | None = None,
) -> FSCResult:
    """FSC between two MRC files (optionally masked by a third); errors name the offending file. The voxel size is
    the headers' (an unset, 0 header is an error) or ``voxel_size_a`` (``--voxel-size``), which overrides them."""
    va = read_mrc(path_a, voxel_size_a=voxel_size_a, option="--voxel-size", strict=True)
    vb = read_mrc(path_b, voxel_size_a=voxel_size_a, option="--voxel-size", strict=True)
    if va.data.shape != vb.data.shape:
        raise InputError(f"map has shape {vb.data.shape}, but {path_a} has {va.data.shape}", path_b)
    if not math.isclose(va.voxel_size_a, vb.voxel_size_a, rel_tol=1e-3):
        raise InputError(f"voxel size {vb.voxel_size_a:g} Å differs from {path_a}'s {va.voxel_size_a:g} Å", path_b)
    mask = None
    if mask_path is not None:
        mask = read_mrc(mask_path).data
        if mask.shape != va.data.shape:
            raise InputError(f"mask has shape {mask.shape}, the maps {va.data.shape}", mask_path)
    return fsc(va, vb, mask=mask)


def write_fsc_csv(path: str | os.PathLike[str], result: FSCResult) -> Path:
    """Write ``shell,frequency_a_inv,resolution_a,fsc,n_components`` rows (atomically); returns the path."""
    p = Path(path)
    lines = ["shell,frequency_a_inv,resolution_a,fsc,n_components"]
    for j, (f, c, n) in enumerate(zip(result.frequency_a_inv, result.fsc, result.n_components)):
        res = f"{1.0 / f:.4f}" if f > 0 else "inf"
        val = f"{c:.6f}" if math.isfinite(c) else "nan"
        lines.append(f"{j},{f:.6f},{res},{val},{int(n)}")
    with atomic_output(p) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return p


def plot_fsc(
    path: str | os.PathLike[str],
    curves: FSCResult | dict[str, FSCResult],
    title: str | None = None,
) -> Path:
    """Plot one or more FSC curves (a dict label -> result) with the 0.5 and 0.143 lines into a PNG."""
    items = curves if isinstance(curves, dict) else {"FSC": curves}
    labelled = {}
    for label, r in items.items():
        short = {ABOVE: f"better than {2 * r.voxel_size_a:.1f} Å", BELOW: "none"}.get(r.crossing(0.143), f"{r.resolution_0143_a:.1f} Å")
        labelled[f"{label} ({short} at 0.143)"] = r
    fig = fsc_figure({k: (r.frequency_a_inv, r.fsc) for k, r in labelled.items()}, title,
                     {k: r.resolution_0143_a for k, r in labelled.items()})
    return save_png(fig, path)
