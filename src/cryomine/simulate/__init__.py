"""Simulated cryo-ET data: imaging physics (tilt series, CTF, noise, WBP) and crowded scenes.

Imaging model (see :mod:`cryomine.simulate.imaging` for the pipeline, the SNR definition and the contrast
convention: returned reconstructions have PROTEIN BRIGHT):

- :mod:`cryomine.acquisition.ctf`: :class:`MicroscopeConfig`, electron wavelength, CTF, envelope, detector MTF.
- :mod:`cryomine.simulate.tilt`: :class:`TiltSeriesConfig`, :func:`project`, :func:`backproject_wbp`.
- :mod:`cryomine.simulate.imaging`: :class:`ImagingConfig`, :func:`image_scene`, :func:`image_scenes`,
  :func:`image_tilt_series` (noise + WBP of detector images).
- :mod:`cryomine.simulate.fourier`: :func:`fourier_approximation` (fast approximate alternative).

Volumes are ``(d, h, w)`` = ``(z, y, x)``; the beam is along ``z`` at zero tilt and the tilt axis is ``y``.
"""

from __future__ import annotations

from cryomine.acquisition.ctf import (
    MicroscopeConfig,
    ctf,
    ctf_first_zero_a_inv,
    detector_mtf,
    electron_wavelength_a,
    envelope,
    transfer_function,
)
from cryomine.simulate.fourier import fourier_approximation
from cryomine.simulate.imaging import (
    CONTRAST_SIGN,
    ImagingConfig,
    ImagingResult,
    image_scene,
    image_scenes,
    image_tilt_series,
    reconstruct,
    simulate_tilt_series,
)
from cryomine.simulate.tilt import TiltSeriesConfig, backproject_wbp, project

__all__ = [
    "CONTRAST_SIGN",
    "ImagingConfig",
    "ImagingResult",
    "MicroscopeConfig",
    "TiltSeriesConfig",
    "backproject_wbp",
    "ctf",
    "ctf_first_zero_a_inv",
    "detector_mtf",
    "electron_wavelength_a",
    "envelope",
    "fourier_approximation",
    "image_scene",
    "image_scenes",
    "image_tilt_series",
    "project",
    "reconstruct",
    "simulate_tilt_series",
    "transfer_function",
]
