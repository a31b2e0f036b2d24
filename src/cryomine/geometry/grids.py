"""Frequency grids: the one place that lays out spatial frequencies of an FFT.

Layout: numpy's unshifted FFT order (``np.fft.fftfreq`` on every axis, ``rfftfreq`` on the last one for real
transforms), in cycles per voxel (divide by the voxel size in Å for 1/Å). Axes follow the array: ``(z, y, x)``
for volumes, ``(y, x)`` for images; each returned component broadcasts against the others (sparse grids).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fft_frequencies", "frequency_magnitude"]


def fft_frequencies(shape: Sequence[int], rfft: bool = True, dtype: type = np.float64) -> tuple[np.ndarray, ...]:
    """One broadcastable frequency array per axis of an array of ``shape`` (cycles/voxel): for ``(d, h, w)`` the
    ``(d, 1, 1)``, ``(1, h, 1)`` and ``(1, 1, w')`` arrays ``kz, ky, kx`` with ``w' = w // 2 + 1`` when ``rfft``."""
    dims = [int(s) for s in shape]
    out = []
    for axis, n in enumerate(dims):
        f = np.fft.rfftfreq(n) if (rfft and axis == len(dims) - 1) else np.fft.fftfreq(n)
        view = [1] * len(dims)
        view[axis] = f.size
        out.append(f.astype(dtype).reshape(view))
    return tuple(out)


def frequency_magnitude(shape: Sequence[int], rfft: bool = True, dtype: type = np.float64) -> np.ndarray:
    """``|k|`` (cycles/voxel) on the full (dense) FFT grid of an array of ``shape``."""
    parts = fft_frequencies(shape, rfft, dtype)
    return np.sqrt(sum(p**2 for p in parts))
