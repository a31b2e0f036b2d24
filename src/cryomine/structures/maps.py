"""Operations on density maps: resampling to a new voxel size, centring, padding to a cube, background removal.

Resampling (:func:`resample_volume`) uses cubic B-spline interpolation (:func:`scipy.ndimage.affine_transform`).
When the voxel size grows (down-sampling) the map is first low-pass filtered in Fourier space at the new Nyquist
frequency with a raised-cosine edge (from 80% to 100% of it), so the coarser map is not aliased. The physical centre
is kept: voxel ``n // 2`` of the input and voxel ``m // 2`` of the output are the same point in space, and the output
has ``m = round(n * old / new)`` voxels per axis (the same physical extent, to within one voxel).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from cryomine.errors import InputError
from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.io.mrc import Volume


def resample_volume(volume: Volume, voxel_size_a: float) -> Volume:
    """Resample ``volume`` (a :class:`Volume` holding a ``(d, h, w)`` array) to ``voxel_size_a`` Å per voxel.

    See the module docstring for the method. Returns a new :class:`Volume` with a float32 ``(d', h', w')``
    array, ``d' = max(1, round(d * volume.voxel_size_a / voxel_size_a))`` (likewise h', w'), the new voxel size
    and an origin moved so that the centre voxel keeps its physical position. The input is not modified; if the
    voxel size is unchanged the data is returned as a copy.
    """
    old = check_voxel_size(volume.voxel_size_a, "volume.voxel_size_a")
    new = check_voxel_size(voxel_size_a, "voxel_size_a")
    data = check_volume(volume.data, "volume")
    if np.isclose(old, new, rtol=1e-9, atol=0.0):
        return Volume(data=data.copy(), voxel_size_a=old, origin_zyx_a=tuple(volume.origin_zyx_a))
    scale = new / old  # input voxels per output voxel
    in_shape = np.array(data.shape)
    out_shape = np.maximum(1, np.rint(in_shape / scale).astype(int))
    src = data.astype(np.float64)
    if scale > 1.0:
        src = lowpass_volume(src, cutoff=0.5 / scale)
    offset = in_shape // 2 - scale * (out_shape // 2)
    out = ndi.affine_transform(
        src, np.full(3, scale), offset=offset, output_shape=tuple(out_shape), order=3, mode="nearest", prefilter=True
    )
    origin = tuple(
        float(o + (n // 2) * old - (m // 2) * new) for o, n, m in zip(volume.origin_zyx_a, in_shape, out_shape)
    )
    return Volume(data=out.astype(np.float32), voxel_size_a=new, origin_zyx_a=origin)  # type: ignore[arg-type]


def center_of_mass_zyx(data: np.ndarray) -> np.ndarray:
    """Centre of mass ``(z, y, x)`` in voxels of the positive part of a ``(d, h, w)`` volume.

    Raises :class:`InputError` if no voxel is positive.
    """
    arr = np.clip(check_volume(data, "volume").astype(np.float64), 0.0, None)
    total = arr.sum()
    if not total > 0:
        raise InputError("volume has no positive density: its centre of mass is undefined")
    return np.array([(arr.sum(axis=tuple(a for a in range(3) if a != ax)) * np.arange(arr.shape[ax])).sum()
                     for ax in range(3)]) / total


def center_volume(data: np.ndarray) -> np.ndarray:
    """Shift a ``(d, h, w)`` volume so that its centre of mass is at voxel ``(d//2, h//2, w//2)``.

    The centre of mass is that of the positive part (:func:`center_of_mass_zyx`); the sub-voxel shift uses
    cubic-spline interpolation with zeros entering at the faces. Returns a new float32 array of the same shape.
    """
    arr = check_volume(data, "volume")
    shift = np.array(arr.shape) // 2 - center_of_mass_zyx(arr)
    out = ndi.shift(arr.astype(np.float64), shift, order=3, mode="grid-constant", cval=0.0, prefilter=True)
    return out.astype(np.float32)


def pad_to_cube(data: np.ndarray, size: int | None = None, value: float = 0.0) -> np.ndarray:
    """Pad a ``(d, h, w)`` volume with ``value`` to a ``(size, size, size)`` cube (default ``max(d, h, w)``).

    The centre voxel is kept at the centre: input voxel ``(d//2, h//2, w//2)`` lands on ``(size//2,) * 3``.
    Raises :class:`InputError` if ``size`` is smaller than an axis of ``data``.
    """
    arr = check_volume(data, "volume")
    n = max(arr.shape) if size is None else size
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < max(arr.shape):
        raise InputError(f"pad_to_cube: size must be an integer >= the largest axis {max(arr.shape)}, got {size!r}")
    n = int(n)
    before = [n // 2 - s // 2 for s in arr.shape]
    pad = [(b, n - s - b) for b, s in zip(before, arr.shape)]
    return np.pad(arr, pad, mode="constant", constant_values=value)


def subtract_border_background(data: np.ndarray) -> np.ndarray:
    """Subtract the median of the six faces of a ``(d, h, w)`` volume (its solvent level); returns float32."""
    arr = check_volume(data, "volume")
    faces = np.concatenate(
        [arr[0].ravel(), arr[-1].ravel(), arr[:, 0].ravel(), arr[:, -1].ravel(), arr[:, :, 0].ravel(),
         arr[:, :, -1].ravel()]
    )
    return (arr - np.float32(np.median(faces))).astype(np.float32)


def gaussian_lowpass(data: np.ndarray, sigma_a: float, voxel_size_a: float) -> np.ndarray:
    """Blur a ``(d, h, w)`` volume with an isotropic Gaussian of standard deviation ``sigma_a`` Å (float32 out)."""
    arr = check_volume(data, "volume")
    if sigma_a <= 0:
        return arr.copy()
    return ndi.gaussian_filter(arr.astype(np.float64), sigma_a / voxel_size_a, mode="constant", truncate=4.0).astype(
        np.float32
    )


def lowpass_volume(data: np.ndarray, cutoff: float) -> np.ndarray:
    """Low-pass a volume at ``cutoff`` cycles/voxel with a raised-cosine edge from 0.8 to 1.0 of the cutoff."""
    spec = scipy.fft.rfftn(data, workers=-1)
    freqs = [scipy.fft.fftfreq(n) for n in data.shape[:-1]] + [scipy.fft.rfftfreq(data.shape[-1])]
    fz, fy, fx = np.meshgrid(*freqs, indexing="ij", sparse=True)
    f = np.sqrt(fz**2 + fy**2 + fx**2) / cutoff
    weight = np.clip((1.0 - f) / 0.2, 0.0, 1.0)  # 1 below 0.8, 0 above 1.0
    weight = 0.5 - 0.5 * np.cos(np.pi * weight)
    return scipy.fft.irfftn(spec * weight, s=data.shape, workers=-1)
