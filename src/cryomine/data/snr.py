"""SNR of a dataset under more than one definition, so its numbers can be compared with published ones.

- **box** (cryomine's, what ``simulate --snr`` sets): ``var(S) / var(N)`` of the noise-free reconstruction ``S``
  and the noise ``N = sigma N1`` in the whole box, all frequencies.
- **in-band**: the same ratio after a low-pass at half Nyquist (``|k| < 0.25`` cycles/voxel, a sharp cut on the
  rfft grid): the band the Xu lab's simulator keeps (AITom band-passes its subtomograms at half Nyquist, radius 10
  of a 40³ box). Noise that WBP amplifies at high frequencies is left out, so the in-band SNR is higher than the
  box SNR.

Both need the dataset's noise model (format 2: ``noise_free``, ``noise_unit``, ``noise_sigma``).
"""

from __future__ import annotations

import os

import numpy as np

from cryomine.geometry.grids import frequency_magnitude
from cryomine.io.subtomo_h5 import DatasetHeader, read_rows

__all__ = ["IN_BAND_CUTOFF", "snr_by_definition"]

IN_BAND_CUTOFF = 0.25  # cycles per voxel: half the Nyquist frequency


def _band_variance(volumes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-volume variance of the part of ``(n, d, h, w)`` volumes inside the Fourier region ``keep`` (Parseval)."""
    spec = np.fft.rfftn(volumes, axes=(-3, -2, -1))
    weight = np.full(keep.shape, 2.0)
    weight[..., 0] = 1.0  # the kx = 0 plane appears once in the rfft half-space
    if volumes.shape[-1] % 2 == 0:
        weight[..., -1] = 1.0  # so does the Nyquist plane of an even box
    keep = keep.copy()
    keep[0, 0, 0] = False  # the mean is not part of the variance
    power = (np.abs(spec) ** 2 * (weight * keep)).reshape(len(volumes), -1).sum(axis=1)
    return power / float(np.prod(volumes.shape[-3:])) ** 2


def snr_by_definition(path: str | os.PathLike[str], header: DatasetHeader, max_rows: int = 256) -> dict | None:
    """``{"box": {...}, "in_band": {...}, "n": rows}`` (mean, min, max over the first ``max_rows`` rows) or None
    for a dataset without a noise model. Noise-free rows (``sigma = 0``) are skipped."""
    if not header.has_noise_model or header.n_written == 0:
        return None
    rows = np.arange(min(header.n_written, int(max_rows)))
    data = read_rows(path, ("noise_free", "noise_unit", "noise_sigma"), rows)
    sigma = np.asarray(data["noise_sigma"], np.float64)
    use = sigma > 0
    if not use.any():
        return None
    signal = np.asarray(data["noise_free"], np.float64)[use]
    noise = np.asarray(data["noise_unit"], np.float64)[use] * sigma[use, None, None, None]
    shape = signal.shape[-3:]
    everything = np.ones((shape[0], shape[1], shape[2] // 2 + 1), bool)
    band = frequency_magnitude(shape) < IN_BAND_CUTOFF
    out = {"n": int(use.sum()), "in_band_cutoff_cycles_per_voxel": IN_BAND_CUTOFF}
    for name, keep in (("box", everything), ("in_band", band)):
        ratio = _band_variance(signal, keep) / _band_variance(noise, keep)
        out[name] = {"mean": float(ratio.mean()), "min": float(ratio.min()), "max": float(ratio.max())}
    return out
