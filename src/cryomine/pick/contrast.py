"""Does an input look protein-dark? The heuristics behind the warnings of ``pick`` and ``extract``.

cryomine's convention is **protein bright** (the simulator writes it, DoG looks for bright blobs, template
matching weights templates by ``-CTF``, DSM-Net was trained on it); most reconstructions and most templates
made by other tools are protein dark (the raw contrast). ``--invert`` / ``--invert-template`` negate them; these
checks only warn (one line), they never change the data.

- **Tomogram** (:func:`tomogram_contrast`): the skewness of the voxel values after a Gaussian smoothing of
  ``sigma = 1.5`` voxels (it averages the noise away and keeps particle-scale density), in a central block of
  at most ``160`` voxels per axis. Particles are sparse dense objects on a flat background, so a protein-bright
  tomogram has a long bright tail (skewness > 0), a protein-dark one a long dark tail (< 0). It looks dark when
  ``skewness < -max(0.1, 4 SE)``, ``SE = sqrt(6 / N_eff)`` the standard error of the skewness of
  ``N_eff = N / (2 sqrt(pi) sigma)^3`` independent values (the correlation volume of smoothed white noise), so
  a tomogram of pure noise does not warn. Gold fiducials are dense too and push the same way.
- **Template** (:func:`template_contrast`): the mean density inside the template's mask (the given mask, else a
  ball of radius ``m / 4`` about the centre voxel ``m // 2``) minus the mean outside it (with the default ball:
  beyond ``0.4 m`` from the centre), in units of the template's standard deviation. A protein-bright template
  is denser in its middle than around it; it looks dark when this contrast is below ``-0.05``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryomine.errors import CryomineWarning

__all__ = ["ContrastCheck", "ContrastWarning", "tomogram_contrast", "template_contrast", "warn_if_dark"]

SMOOTH_SIGMA_VOX = 1.5
BLOCK_VOX = 160
MIN_SKEW = 0.1
N_SE = 4.0
TEMPLATE_LIMIT = -0.05


class ContrastWarning(CryomineWarning):
    """An input looks protein-dark (or, after inversion, looks like it was protein bright already)."""


@dataclass(frozen=True)
class ContrastCheck:
    """``statistic`` (skewness for a tomogram, centre-minus-surround contrast for a template), the ``limit``
    below which the input looks protein-dark, ``dark`` (statistic < limit) and ``what`` the statistic is."""

    statistic: float
    limit: float
    what: str

    @property
    def dark(self) -> bool:
        return self.statistic < self.limit


def _central_block(volume: np.ndarray, edge: int) -> np.ndarray:
    sl = tuple(slice(max(0, (n - edge) // 2), max(0, (n - edge) // 2) + min(n, edge)) for n in volume.shape)
    return np.asarray(volume[sl], dtype=np.float64)


def tomogram_contrast(volume: np.ndarray, invert: bool = False) -> ContrastCheck:
    """Skewness test of a ``(d, h, w)`` tomogram (any array-like, e.g. a memory map), negated when ``invert``."""
    block = _central_block(volume, BLOCK_VOX)
    if invert:
        block = -block
    smooth = ndimage.gaussian_filter(block, SMOOTH_SIGMA_VOX, mode="reflect")
    centred = smooth - smooth.mean()
    var = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / var**1.5 if var > 0 else 0.0
    n_eff = max(block.size / (2.0 * math.sqrt(math.pi) * SMOOTH_SIGMA_VOX) ** 3, 1.0)
    limit = -max(MIN_SKEW, N_SE * math.sqrt(6.0 / n_eff))
    return ContrastCheck(skew, limit, "skewness of the smoothed voxel values")


def template_contrast(template: np.ndarray, mask: np.ndarray | None = None) -> ContrastCheck:
    """Centre-minus-surround test of an ``(m, m, m)`` template (inside vs outside ``mask`` when given)."""
    t = np.asarray(template, np.float64)
    m = t.shape[0]
    offsets = np.indices(t.shape) - (np.asarray(t.shape) // 2)[:, None, None, None]
    r = np.sqrt((offsets**2).sum(axis=0))
    inside = outside = None
    if mask is not None:
        inside = np.asarray(mask) > 0.5
        outside = ~inside
    if inside is None or not inside.any() or not outside.any():  # type: ignore[union-attr]
        inside, outside = r <= m / 4.0, r > 0.4 * m
    std = float(t.std())
    value = (float(t[inside].mean()) - float(t[outside].mean())) / std if std > 0 else 0.0
    return ContrastCheck(value, TEMPLATE_LIMIT, "mean density inside the mask minus outside, in standard deviations")


def warn_if_dark(check: ContrastCheck, source: str | os.PathLike[str], flag: str, inverted: bool) -> bool:
    """Issue one :class:`ContrastWarning` line naming ``source`` when ``check`` says dark; returns ``check.dark``.

    ``flag`` is the option that inverts (``--invert``, ``--invert-template``); ``inverted`` whether it was given
    (then a dark result means the input was protein bright already).
    """
    if not check.dark:
        return False
    stat = f"{check.what} {check.statistic:+.2f} < {check.limit:+.2f}"
    if inverted:
        msg = f"{source}: looks protein-dark after {flag} ({stat}): the input seems protein-bright already; drop {flag}?"
    else:
        msg = f"{source}: looks protein-dark ({stat}); cryomine expects protein bright: add {flag}?"
    warnings.warn(msg, ContrastWarning, stacklevel=2)
    return True
