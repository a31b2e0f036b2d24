"""Per-tilt Fourier weighting of a template (pytom-match-pick's ``--per-tilt-weighting``).

A tomogram reconstructed by weighted back-projection from a tilt series of CTF-modulated images carries, at a
3-D frequency ``k``, the average of the transfers of the tilts whose central slices pass through ``k``. The
template is weighted the same way, in its ``(m, m, m)`` box (``rfftn`` layout, frequencies in cycles/voxel):

``W(k) = sum_t s_t(k) T_t(k) / sum_t s_t(k)`` where ``sum_t s_t(k) > 0``, else 0,

- ``s_t(k) = max(0, 1 - m |k . n_t|)``: the tilt's central slice, one Fourier voxel thick (triangular profile),
  with ``n_t = (cos theta, 0, sin theta)`` in ``(k_z, k_y, k_x)`` (the plane ``(k_z, k_x) ~ (-sin, cos)`` that
  the projection at ``theta`` samples; :mod:`cryomine.simulate.tilt`). Between the slices, beyond the Crowther
  frequency, it leaves the gaps that a real tilt series leaves; outside the tilt range, the missing wedge.
- ``T_t(k) = -CTF_t(|k|) * envelope * MTF`` (the tilt's own defocus; the minus for protein-bright tomograms, as
  :func:`cryomine.pick.template.template_weight`) times the exposure filter ``exp(-N_t / (2 N_e(|k|)))`` of the
  dose ``N_t`` accumulated before the tilt (Grant & Grigorieff 2015: ``N_e = 0.245 k^-1.665 + 2.81`` e/Å², ``k``
  in 1/Å, for 300 kV; times 0.8 below 300 kV, as summovie and tomoDRGN scale it for 200 kV).

With one defocus for every tilt, no dose, and tilts dense enough this is the missing-wedge mask times the CTF
weight of the continuous model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cryomine.acquisition.ctf import MicroscopeConfig, transfer_function
from cryomine.errors import InputError

__all__ = ["TiltWeighting", "critical_exposure", "per_tilt_weight"]


@dataclass(frozen=True)
class TiltWeighting:
    """The tilt series a template is weighted for: ``tilt_angles_deg`` (cryomine's sign), optional per-tilt
    ``defocus_um`` (µm, positive = underfocus; one value or one per tilt) and ``dose_e_a2`` (cumulative exposure
    before each tilt, e/Å²), both in the order of the angles."""

    tilt_angles_deg: tuple[float, ...]
    defocus_um: tuple[float, ...] | None = None
    dose_e_a2: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        angles = np.asarray(self.tilt_angles_deg, np.float64).reshape(-1)
        if angles.size < 2 or not np.isfinite(angles).all() or np.abs(angles).max() > 90:
            raise InputError("per-tilt weighting needs at least 2 finite tilt angles within +-90 degrees", "--per-tilt-weighting")
        for name in ("defocus_um", "dose_e_a2"):
            values = getattr(self, name)
            if values is None:
                continue
            arr = np.asarray(values, np.float64).reshape(-1)
            if arr.size not in (1, angles.size) or not np.isfinite(arr).all() or (name == "dose_e_a2" and (arr < 0).any()):
                raise InputError(f"per-tilt {name}: need 1 or {angles.size} finite values{' >= 0' if name == 'dose_e_a2' else ''}, "
                                 f"got {arr.size}", "--per-tilt-weighting")  # fmt: skip


def critical_exposure(k_inv_a: np.ndarray, voltage_kv: float = 300.0) -> np.ndarray:
    """Grant & Grigorieff's critical exposure (e/Å²) at spatial frequencies ``k_inv_a`` (1/Å; module docstring)."""
    k = np.maximum(np.asarray(k_inv_a, np.float64), 1e-6)
    return (0.245 * k**-1.665 + 2.81) * (1.0 if voltage_kv >= 300 else 0.8)


def per_tilt_weight(size: int, voxel_size_a: float, weighting: TiltWeighting, microscope: MicroscopeConfig | None) -> np.ndarray:
    """The ``(m, m, m // 2 + 1)`` float32 weight ``W`` of the module docstring for an ``m``-voxel template box."""
    m = int(size)
    kz = np.fft.fftfreq(m)[:, None, None]
    ky = np.fft.fftfreq(m)[None, :, None]
    kx = np.fft.rfftfreq(m)[None, None, :]
    k = np.sqrt(kz**2 + ky**2 + kx**2) / float(voxel_size_a)  # 1/Å
    angles = np.asarray(weighting.tilt_angles_deg, np.float64)
    n = angles.size

    def per_tilt(values: tuple[float, ...] | None) -> np.ndarray | None:
        return None if values is None else np.broadcast_to(np.asarray(values, np.float64), (n,))

    defocus, dose = per_tilt(weighting.defocus_um), per_tilt(weighting.dose_e_a2)
    total = np.zeros(k.shape)
    weight = np.zeros(k.shape)
    for t, theta in enumerate(np.radians(angles)):
        s = np.maximum(0.0, 1.0 - m * np.abs(kz * math.cos(theta) + kx * math.sin(theta)))
        s = np.broadcast_to(s, k.shape)
        transfer = np.ones(k.shape)
        if microscope is not None:
            mic = microscope if defocus is None else replace(microscope, defocus_um=float(defocus[t]))
            transfer = -transfer_function(k, mic, voxel_size_a)
        if dose is not None:
            volt = microscope.voltage_kv if microscope is not None else 300.0
            transfer = transfer * np.exp(-dose[t] / (2.0 * critical_exposure(k, volt)))
        total += s
        weight += s * transfer
    out = np.where(total > 0, weight / np.maximum(total, 1e-12), 0.0)
    return out.astype(np.float32)
