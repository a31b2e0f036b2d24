"""Templates for template matching: bundled structures, atomic models, and users' MRC maps (own box, own mask).

- **Bundled ids and PDB/mmCIF files** are computed at the tomogram's voxel size, re-centred on their centre of
  mass and cropped to a rotation-safe box (:func:`cryomine.simulate.templates.prepare_template`); they are
  protein bright by construction (``invert_template`` is refused for them).
- **MRC maps** (``.mrc``, ``.map``, ``.rec``) keep their own box and centre by default: the particle centre is
  voxel ``m // 2`` (as in RELION, PyTom and STOPGAP), nothing is clipped, re-centred or cropped, so a mask made
  for the map (same box) applies as is. Only the solvent level is set to 0 (the median of the box faces is
  subtracted: a constant does not change the masked, normalised correlation, but the radius estimate and the
  positive-density check need it). ``invert_template`` negates the map (protein-dark templates);
  ``recenter_template`` gives it the bundled structures' treatment instead (face-median background subtracted,
  clipped, re-centred, cropped, resampled by splines), which a user mask cannot follow: the two exclude each other.
- **Voxel size**: a map whose header voxel size differs from the tomogram's by more than ``VOXEL_TOLERANCE``
  (0.2 %) is rescaled by cropping (coarser) or zero-padding (finer) its centred Fourier spectrum
  (:func:`fourier_rescale`), the mask with it (then binarised at 0.5). The new box must hold ``n * old / new``
  voxels exactly, so the box is first padded (the map with its face median, the mask with 0) by the fewest
  voxels that make this an integer to within the tolerance, at most doubling it; where no such box exists the
  template is refused. A map whose header voxel size is 0 (unset) is refused, never guessed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.validate import check_volume
from cryomine.io.mrc import Volume
from cryomine.io.volume import read_volume
from cryomine.pick.config import TemplateMatchConfig
from cryomine.simulate.templates import prepare_template, template_from_density
from cryomine.structures import structure_ids
from cryomine.structures.library import MAP_SUFFIXES
from cryomine.structures.maps import lowpass_volume, resample_volume, subtract_border_background

__all__ = ["MatchTemplate", "VOXEL_TOLERANCE", "fourier_rescale", "load_match_template", "is_map_file"]

#: Relative voxel-size difference below which a template is used unscaled, and the accuracy of a rescaling.
VOXEL_TOLERANCE = 0.002


@dataclass(frozen=True)
class MatchTemplate:
    """A template ready for :func:`~cryomine.pick.template.match_template`.

    ``density``: ``(m, m, m)`` float32, protein positive, centre at voxel ``m // 2``. ``mask``: the user's mask
    in the same box (or None: a sphere). ``radius_vox``: particle radius (voxels) for the default exclusion
    distance, mask and border. ``source_voxel_size_a``: the template's own voxel size (Å); ``voxel_size_a``: the
    one it has now (the tomogram's, to within ``VOXEL_TOLERANCE``). ``kind``: ``"structure"`` (bundled id or
    atomic model), ``"map"`` (own box) or ``"recentred map"``.
    """

    name: str
    density: np.ndarray
    mask: np.ndarray | None
    radius_vox: float | None
    source_voxel_size_a: float
    voxel_size_a: float
    kind: str

    @property
    def rescaled(self) -> bool:
        return not math.isclose(self.source_voxel_size_a, self.voxel_size_a, rel_tol=VOXEL_TOLERANCE)


def is_map_file(template: str | os.PathLike[str]) -> bool:
    """True for an existing ``.mrc``/``.map``/``.rec`` file that is not also a bundled structure id."""
    p = Path(template)
    known = {s.lower() for s in structure_ids()}
    return p.suffix.lower() in MAP_SUFFIXES and p.is_file() and str(template).strip().lower() not in known


def rescaled_box(size: int, ratio: float, tolerance: float = VOXEL_TOLERANCE) -> tuple[int, int] | None:
    """``(padded, new)``: the smallest ``padded`` in ``[size, 2 size]`` with ``new = round(padded * ratio)`` within
    ``tolerance`` (relative) of ``padded * ratio``; None if there is none. ``ratio`` = old / new voxel size."""
    for padded in range(int(size), 2 * int(size) + 1):
        exact = padded * float(ratio)
        new = round(exact)
        if new >= 3 and abs(exact - new) <= tolerance * new:
            return padded, new
    return None


def fourier_resize(data: np.ndarray, size: int) -> np.ndarray:
    """Crop or zero-pad the centred spectrum of a cubic ``(n, n, n)`` volume to ``(size,) * 3``.

    Voxel ``n // 2`` stays the centre (voxel ``size // 2``); values keep their scale (a constant stays that
    constant). Cropping is an ideal low-pass at the new Nyquist frequency; padding is sinc interpolation.
    """
    n = data.shape[0]
    spec = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(np.asarray(data, np.float64))))
    k = min(n, int(size))
    lo, hi = -(k // 2), k - 1 - k // 2
    src = slice(lo + n // 2, hi + n // 2 + 1)
    dst = slice(lo + size // 2, hi + size // 2 + 1)
    out = np.zeros((size, size, size), np.complex128)
    out[dst, dst, dst] = spec[src, src, src]
    real = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(out))).real
    return (real * (size / n) ** 3).astype(np.float32)


def _pad_centred(data: np.ndarray, size: int, value: float) -> np.ndarray:
    before = size // 2 - data.shape[0] // 2
    return np.pad(data, [(before, size - data.shape[0] - before)] * 3, mode="constant", constant_values=value)


def fourier_rescale(data: np.ndarray, from_voxel_a: float, to_voxel_a: float, pad_value: float | None = None,
                    source: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, float]:  # fmt: skip
    """Rescale a cubic ``(n, n, n)`` volume from ``from_voxel_a`` to ``to_voxel_a`` Å per voxel (see the module
    docstring); ``pad_value`` fills the padding (default: the median of the faces). Returns the volume and its
    exact new voxel size. Raises :class:`InputError` naming ``source`` when no box gives the ratio exactly."""
    n = data.shape[0]
    ratio = float(from_voxel_a) / float(to_voxel_a)
    box = rescaled_box(n, ratio)
    if box is None:
        raise InputError(f"cannot rescale the {n}³ box from {from_voxel_a:g} to {to_voxel_a:g} Å/voxel exactly "
                         f"(no box of {n}-{2 * n} voxels gives a whole number of voxels): resample it to "
                         f"{to_voxel_a:g} Å/voxel first", source)  # fmt: skip
    padded, new = box
    if pad_value is None:
        pad_value = float(np.median(np.concatenate([data[[0, -1]].ravel(), data[:, [0, -1]].ravel(), data[:, :, [0, -1]].ravel()])))
    out = fourier_resize(_pad_centred(np.asarray(data, np.float32), padded, pad_value), new)
    return out, float(from_voxel_a) * padded / new


def _read_map(path: Path, voxel_size_a: float | None) -> Volume:
    """The template map (MRC or .em) with its voxel size: ``voxel_size_a`` (--template-voxel-size) or the header's."""
    vol = read_volume(path, voxel_size_a, option="--template-voxel-size")
    return Volume(check_volume(vol.data, path, name="template"), vol.voxel_size_a, vol.origin_zyx_a)


def _read_mask(path: str | os.PathLike[str], shape: tuple[int, ...]) -> np.ndarray:
    mask = read_volume(path, 1.0).data  # only its shape and values matter (it lives in the template's box)
    if mask.shape != shape:
        raise InputError(f"mask is {'x'.join(map(str, mask.shape))} voxels; it must match the template's own box "
                         f"{'x'.join(map(str, shape))}", path)  # fmt: skip
    return mask


def _mask_radius_vox(mask: np.ndarray) -> float:
    idx = np.argwhere(mask > 0.5)
    if len(idx) == 0:
        raise InputError("mask has no voxel above 0.5", "--mask")
    return float(np.sqrt(((idx - np.asarray(mask.shape) // 2) ** 2).sum(axis=1)).max()) + 1.0


def _own_box(path: Path, vol: Volume, voxel_size_a: float, mask_path: str | os.PathLike[str] | None) -> MatchTemplate:
    data = vol.data
    if len(set(data.shape)) != 1:
        raise InputError(f"template must be a cubic box to keep its centre, got {'x'.join(map(str, data.shape))} voxels: "
                         "pad it to a cube, or give --recenter-template", path)  # fmt: skip
    mask = _read_mask(mask_path, data.shape) if mask_path is not None else None
    vs = vol.voxel_size_a
    if not math.isclose(vs, voxel_size_a, rel_tol=VOXEL_TOLERANCE):
        data, vs = fourier_rescale(data, vol.voxel_size_a, voxel_size_a, source=path)
        if mask is not None:
            mask, _ = fourier_rescale(mask, vol.voxel_size_a, voxel_size_a, pad_value=0.0, source=mask_path)
    data = subtract_border_background(data)
    if not float(data.max()) > 0:
        raise InputError("template has no density above the solvent level (its face median): a protein-dark "
                         "template? give --invert-template", path)  # fmt: skip
    radius = _mask_radius_vox(mask) if mask is not None else None
    return MatchTemplate(path.name.split(".")[0], data, mask, radius, vol.voxel_size_a, vs, "map")


def _recentred(path: Path, vol: Volume, voxel_size_a: float) -> MatchTemplate:
    flat = subtract_border_background(vol.data)
    resampled = resample_volume(Volume(flat, vol.voxel_size_a), voxel_size_a)
    tmpl = template_from_density(str(path), resampled.data, resampled.voxel_size_a)
    return MatchTemplate(path.name.split(".")[0], tmpl.density, None, tmpl.radius_vox, vol.voxel_size_a, resampled.voxel_size_a, "recentred map")


def _filtered(tmpl: MatchTemplate, config: TemplateMatchConfig) -> MatchTemplate:
    """``tmpl`` low-passed at ``config.template_lowpass_a`` (no-op when unset or finer than Nyquist)."""
    if config.template_lowpass_a is None:
        return tmpl
    cutoff = tmpl.voxel_size_a / float(config.template_lowpass_a)  # cycles/voxel
    if cutoff >= 0.5:
        return tmpl
    return replace(tmpl, density=lowpass_volume(tmpl.density, cutoff).astype(np.float32))


def load_match_template(
    template: str | os.PathLike[str],
    voxel_size_a: float,
    config: TemplateMatchConfig = TemplateMatchConfig(),
    mask: str | os.PathLike[str] | None = None,
    template_voxel_size_a: float | None = None,
) -> MatchTemplate:
    """The template ``template`` (bundled id, PDB/mmCIF or MRC file) at the tomogram's ``voxel_size_a`` (Å), with
    ``config.invert_template`` / ``config.recenter_template`` and the user's ``mask`` (an MRC of the template's
    own box) applied as the module docstring describes."""
    if not is_map_file(template):
        if config.invert_template:
            raise InputError("--invert-template is for MRC templates: bundled structures and atomic models are "
                             "protein bright already", template)  # fmt: skip
        tmpl = prepare_template(str(template), voxel_size_a)
        mask_arr = _read_mask(mask, tmpl.density.shape) if mask is not None else None
        return _filtered(MatchTemplate(Path(str(template)).name.split(".")[0], tmpl.density, mask_arr, tmpl.radius_vox,
                                       tmpl.voxel_size_a, tmpl.voxel_size_a, "structure"), config)  # fmt: skip
    path = Path(template)
    vol = _read_map(path, template_voxel_size_a)
    if config.invert_template:
        vol = Volume(-vol.data, vol.voxel_size_a, vol.origin_zyx_a)
    if config.recenter_template:
        if mask is not None:
            raise InputError("a mask needs the template's own box: drop --recenter-template (or --mask)", mask)
        return _filtered(_recentred(path, vol, voxel_size_a), config)
    return _filtered(_own_box(path, vol, voxel_size_a, mask), config)
