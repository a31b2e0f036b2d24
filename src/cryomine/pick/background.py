"""Random-phase background correction of template matching (STOPGAP; pytom-match-pick's
``--random-phase-correction``).

A template with the same amplitude spectrum as the real one but random phases has no structure, only its
power: it correlates with a tomogram's noise and its unstructured density (ice, membranes, edges) as the
template does, and with its particles no better than with anything else. Searched over the same orientations,
its maximum score per voxel ``noise(p)`` is the background of the real maximum score ``raw(p)``; the corrected
score is ``raw(p) - noise(p) + mean(noise)`` (the mean over every searched voxel, so that scores keep their
scale and the false-positive threshold of the raw search statistics still applies). It doubles the work.
"""

from __future__ import annotations

import numpy as np

from cryomine.resources import release_pages

__all__ = ["phase_randomized", "add_background_mean"]


def phase_randomized(template: np.ndarray, seed: int) -> np.ndarray:
    """``(m, m, m)`` float32: ``template`` with the same Fourier amplitudes and uniformly random phases (those of
    seeded white noise, so Hermitian symmetry holds and the result is real); the zero frequency keeps its phase,
    i.e. the template's mean. Deterministic for a ``seed``.

    The noise fills the box (the correlation mask then cuts it). Keeping it compact by Gerchberg-Saxton
    iterations with the mask as support (as recent pytom-match-pick offers) is phase retrieval: with a support
    as tight as the template's, the "noise" becomes the template again (measured here for 4v4r at 10 Å: Pearson
    correlation 0.42 with the template after 10 iterations, against 0.08 without), so it is not done."""
    t = np.asarray(template, np.float64)
    spec = np.fft.rfftn(t)
    phase = np.fft.rfftn(np.random.default_rng(seed).standard_normal(t.shape))
    out = np.abs(spec) * phase / np.maximum(np.abs(phase), 1e-300)
    out[0, 0, 0] = spec[0, 0, 0]
    return np.fft.irfftn(out, s=t.shape, axes=(0, 1, 2)).astype(np.float32)


def add_background_mean(difference: np.ndarray, out: np.ndarray, noise_mean: float, within: np.ndarray | None = None,
                        slab: int = 16) -> None:  # fmt: skip
    """``out = difference + noise_mean`` for ``(d, h, w)`` maps of ``raw - noise`` (``out`` may be ``difference``
    itself or another map, e.g. a memory map; written ``slab`` z-planes at a time), 0 where the bool ``within``
    (the searched region, if given) is not set."""
    for z0 in range(0, difference.shape[0], slab):
        part = np.asarray(difference[z0 : z0 + slab], np.float32) + np.float32(noise_mean)
        if within is not None:
            part[~within[z0 : z0 + slab]] = 0.0
        out[z0 : z0 + slab] = part
        release_pages(difference, out)
