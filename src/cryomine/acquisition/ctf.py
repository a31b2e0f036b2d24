"""Contrast transfer function (CTF), B-factor envelope and detector MTF of a transmission electron microscope.

Physics and conventions (all frequencies ``k`` are spatial frequencies in 1/Å; lengths in Å unless named):

- Relativistic electron wavelength ``lambda = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))`` (0.019687 Å at
  300 kV).
- Phase shift (aberration function) ``chi(k) = pi lambda df k^2 - (pi / 2) Cs lambda^3 k^4`` with the defocus
  ``df`` in Å, POSITIVE = UNDERFOCUS (the usual cryo-EM operating point), and the spherical aberration ``Cs``
  in Å. Overfocus (``df < 0``) and zero defocus are allowed (e.g. to model phase-plate-like imaging).
- ``CTF(k) = -(sqrt(1 - A^2) sin chi + A cos chi)`` with amplitude contrast ``A``. This is the PHYSICAL sign:
  ``CTF(0) = -A < 0`` and, in underfocus, the CTF stays negative up to its first zero, so positive projected
  density (protein) appears DARK in the image, as in real micrographs. :mod:`cryomine.simulate.imaging` flips
  the reconstruction so that protein is bright.
- Envelope ``E(k) = exp(-B k^2 / 4)`` with the B-factor ``B`` in Å^2 (structure-factor convention). Default
  ``B = 150 Å^2``: the effective per-image envelope of a cryo-ET tilt image (partial coherence, beam-induced
  motion, radiation damage over a 100-150 e/Å^2 series) is usually quoted at 100-200 Å^2; 150 is mid-range.
  At 10 Å voxels it attenuates Nyquist (20 Å) to exp(-150 / 1600) = 0.91, at 8 Å resolution to 0.56.
- Detector MTF ("counting"): the pixel-aperture MTF of an ideal counting detector, taken isotropic,
  ``MTF(k) = sinc(pi k / (2 k_N))`` with ``k_N = 1 / (2 p)`` the detector Nyquist for the detector pixel ``p``
  (``detector_pixel_a``; default the voxel size, i.e. unbinned; give the physical pixel when simulating binned
  data). It falls to ``2 / pi = 0.64`` at Nyquist and is clamped to 0 beyond ``2 k_N``. ``"none"`` means 1.
- The defocus is constant over each tilt image: the defocus gradient across a tilted image is ignored.

The transfer function applied to each projection is ``CTF * E * MTF`` (see :func:`transfer_function`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.grids import frequency_magnitude

_H = 6.62607015e-34  # Planck constant, J s
_M0 = 9.1093837015e-31  # electron rest mass, kg
_E = 1.602176634e-19  # elementary charge, C
_C = 299792458.0  # speed of light, m/s

MTF_MODELS = ("counting", "none")


def _finite(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {v}")
    return v


@dataclass(frozen=True)
class MicroscopeConfig:
    """Imaging optics and detector. Defocus in µm (positive = underfocus, negative = overfocus allowed)."""

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    defocus_um: float = 5.0
    amplitude_contrast: float = 0.07
    b_factor_a2: float = 150.0
    mtf: str = "counting"
    detector_pixel_a: float | None = None

    def __post_init__(self) -> None:
        v = _finite("voltage_kv", self.voltage_kv)
        if not 1.0 <= v <= 5000.0:
            raise InputError(f"voltage_kv must be in [1, 5000] kV, got {v:g}")
        if not 0.0 <= _finite("cs_mm", self.cs_mm) <= 100.0:
            raise InputError(f"cs_mm must be in [0, 100] mm, got {self.cs_mm:g}")
        if abs(_finite("defocus_um", self.defocus_um)) > 100.0:
            raise InputError(f"defocus_um must be within +-100 µm, got {self.defocus_um:g}")
        if not 0.0 <= _finite("amplitude_contrast", self.amplitude_contrast) < 1.0:
            raise InputError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast:g}")
        if not 0.0 <= _finite("b_factor_a2", self.b_factor_a2) <= 1e5:
            raise InputError(f"b_factor_a2 must be in [0, 1e5] Å^2, got {self.b_factor_a2:g}")
        if self.mtf not in MTF_MODELS:
            raise InputError(f"mtf must be one of {', '.join(MTF_MODELS)}, got {self.mtf!r}")
        if self.detector_pixel_a is not None and not _finite("detector_pixel_a", self.detector_pixel_a) > 0:
            raise InputError(f"detector_pixel_a must be > 0 Å, got {self.detector_pixel_a:g}")

    @property
    def wavelength_a(self) -> float:
        """Relativistic electron wavelength in Å."""
        return electron_wavelength_a(self.voltage_kv)


def electron_wavelength_a(voltage_kv: float) -> float:
    """Relativistic electron wavelength (Å) for an accelerating voltage in kV (0.019687 Å at 300 kV)."""
    v = _finite("voltage_kv", voltage_kv)
    if v <= 0:
        raise InputError(f"voltage_kv must be > 0, got {v:g}")
    ev = _E * v * 1e3
    return _H / math.sqrt(2.0 * _M0 * ev * (1.0 + ev / (2.0 * _M0 * _C**2))) * 1e10


def ctf_chi(k_a_inv: np.ndarray, config: MicroscopeConfig) -> np.ndarray:
    """Aberration phase ``chi(k)`` (radians) at spatial frequencies ``k`` (1/Å, any shape)."""
    lam = config.wavelength_a
    df = config.defocus_um * 1e4
    cs = config.cs_mm * 1e7
    k2 = np.asarray(k_a_inv, dtype=np.float64) ** 2
    return math.pi * lam * df * k2 - 0.5 * math.pi * cs * lam**3 * k2**2


def ctf(k_a_inv: np.ndarray, config: MicroscopeConfig) -> np.ndarray:
    """Physical-sign CTF ``-(sqrt(1 - A^2) sin chi + A cos chi)`` at ``|k|`` (1/Å, any shape); ``CTF(0) = -A``."""
    chi = ctf_chi(k_a_inv, config)
    a = config.amplitude_contrast
    return -(math.sqrt(1.0 - a * a) * np.sin(chi) + a * np.cos(chi))


def envelope(k_a_inv: np.ndarray, b_factor_a2: float) -> np.ndarray:
    """B-factor envelope ``exp(-B k^2 / 4)`` at ``|k|`` (1/Å)."""
    k2 = np.asarray(k_a_inv, dtype=np.float64) ** 2
    return np.exp(-float(b_factor_a2) * k2 / 4.0)


def detector_mtf(k_a_inv: np.ndarray, config: MicroscopeConfig, voxel_size_a: float) -> np.ndarray:
    """Detector MTF at ``|k|`` (1/Å); the detector pixel is ``config.detector_pixel_a`` or ``voxel_size_a``."""
    k = np.asarray(k_a_inv, dtype=np.float64)
    if config.mtf == "none":
        return np.ones_like(k)
    pixel = config.detector_pixel_a if config.detector_pixel_a is not None else float(voxel_size_a)
    x = k * pixel  # = k / (2 k_N)
    return np.where(x < 1.0, np.sinc(x), 0.0)


def transfer_function(k_a_inv: np.ndarray, config: MicroscopeConfig, voxel_size_a: float) -> np.ndarray:
    """Total image transfer ``CTF * envelope * MTF`` at ``|k|`` (1/Å, any shape)."""
    return ctf(k_a_inv, config) * envelope(k_a_inv, config.b_factor_a2) * detector_mtf(k_a_inv, config, voxel_size_a)


def frequency_magnitude_2d(shape_hw: tuple[int, int], voxel_size_a: float, rfft: bool = True) -> np.ndarray:
    """``|k|`` (1/Å) on the unshifted FFT grid of an ``(h, w)`` image (``(h, w // 2 + 1)`` when ``rfft``)."""
    h, w = (int(s) for s in shape_hw)
    return frequency_magnitude((h, w), rfft) / float(voxel_size_a)


def transfer_function_2d(
    shape_hw: tuple[int, int], voxel_size_a: float, config: MicroscopeConfig, rfft: bool = True
) -> np.ndarray:
    """``CTF * envelope * MTF`` on the unshifted (r)FFT grid of an ``(h, w)`` projection image (float64)."""
    return transfer_function(frequency_magnitude_2d(shape_hw, voxel_size_a, rfft), config, voxel_size_a)


def ctf_first_zero_a_inv(config: MicroscopeConfig) -> float:
    """Spatial frequency (1/Å) of the CTF's first zero for ``k > 0`` (``inf`` if it never crosses zero).

    Derivation: ``CTF = 0`` iff ``tan chi = -A / sqrt(1 - A^2)``, i.e. ``chi = -asin(A) + n pi``. With
    ``u = k^2``, ``chi = b u - a u^2`` where ``b = pi lambda df`` and ``a = (pi / 2) Cs lambda^3 >= 0``, and
    ``chi(0) = 0``. In underfocus (``b > 0``) ``chi`` rises to ``chi_max = b^2 / (4 a)`` and then falls: the first
    zero is where it reaches ``pi - asin(A)`` on the way up, ``u = 2 c / (b + sqrt(b^2 - 4 a c))`` with
    ``c = pi - asin(A)`` (``u = c / b`` when ``Cs = 0``), if ``chi_max >= c``; otherwise where it falls back to
    ``-asin(A)``, the larger root of ``a u^2 - b u - asin(A) = 0``. In overfocus (``b <= 0``) ``chi`` only
    decreases and the first zero is at ``chi = -asin(A)`` (``-pi`` when ``A = 0``, since ``chi = 0`` is ``k = 0``).
    """
    lam = config.wavelength_a
    b = math.pi * lam * config.defocus_um * 1e4
    a = 0.5 * math.pi * config.cs_mm * 1e7 * lam**3
    asin_a = math.asin(config.amplitude_contrast)
    if b > 0:
        c = math.pi - asin_a
        disc = b * b - 4.0 * a * c
        if disc >= 0:
            return math.sqrt(2.0 * c / (b + math.sqrt(disc)))
        return math.sqrt((b + math.sqrt(b * b + 4.0 * a * asin_a)) / (2.0 * a))
    target = asin_a if asin_a > 0 else math.pi  # solve a u^2 - b u = target (b <= 0)
    if a == 0.0:
        return math.inf if b == 0.0 else math.sqrt(target / -b)
    return math.sqrt((b + math.sqrt(b * b + 4.0 * a * target)) / (2.0 * a))
