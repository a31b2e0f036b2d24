"""SNR by definition (box vs in-band): Parseval variances against real-space computations."""

from __future__ import annotations

import numpy as np
import pytest

from cryomine.data.snr import IN_BAND_CUTOFF, snr_by_definition
from cryomine.geometry import frequency_magnitude
from cryomine.io.subtomo_h5 import read_header, read_rows


def _real_space_snr(signal: np.ndarray, noise: np.ndarray, cutoff: float | None) -> np.ndarray:
    if cutoff is not None:
        keep = frequency_magnitude(signal.shape[-3:]) < cutoff
        low = lambda v: np.fft.irfftn(np.fft.rfftn(v, axes=(-3, -2, -1)) * keep, s=v.shape[-3:], axes=(-3, -2, -1))  # noqa: E731
        signal, noise = low(signal), low(noise)
    return signal.reshape(len(signal), -1).var(1) / noise.reshape(len(noise), -1).var(1)


def test_box_and_in_band_snr_match_real_space(blob_dataset):
    header = read_header(blob_dataset)
    got = snr_by_definition(blob_dataset, header)
    rows = read_rows(blob_dataset, ("noise_free", "noise_unit", "noise_sigma", "snr_measured"), np.arange(got["n"]))
    signal = rows["noise_free"].astype(np.float64)
    noise = rows["noise_unit"].astype(np.float64) * rows["noise_sigma"][:, None, None, None]
    box = _real_space_snr(signal, noise, None)
    band = _real_space_snr(signal, noise, IN_BAND_CUTOFF)
    assert got["box"]["mean"] == pytest.approx(box.mean(), rel=1e-9)
    assert got["in_band"]["mean"] == pytest.approx(band.mean(), rel=1e-9)
    assert got["in_band"]["min"] == pytest.approx(band.min(), rel=1e-9) and got["in_band"]["max"] == pytest.approx(band.max(), rel=1e-9)


def test_without_a_noise_model_there_is_nothing_to_measure(blob_dataset_factory):
    path = blob_dataset_factory("legacy_snr", noise_model=False)
    assert snr_by_definition(path, read_header(path)) is None
