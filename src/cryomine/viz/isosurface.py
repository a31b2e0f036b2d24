"""Isosurface pictures of maps (averages, cluster means) without a 3-D engine: each view casts a ray per pixel along
one axis, finds where it first crosses the iso-level (sub-voxel, by linear interpolation between the two voxels the
crossing lies between), and shades that surface by the angle between its normal (from the depth map's gradient) and
a light, dimmed with depth: what ChimeraX shows for a surface at that level, orthographic and grey.

The level is chosen to enclose a volume: ``enclosed_fraction`` of the box's voxels lie above it (e.g. the structure's
expected volume over the box volume), the usual way to pick a contour for a map without absolute scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter

from cryomine.errors import InputError

__all__ = ["enclosing_level", "isosurface_figure", "isosurface_view"]

_LIGHT = np.array([0.45, 0.45, 0.77])  # (u, v, towards the viewer), normalised below
SMOOTH_VOX = 1.0  # Gaussian sigma (voxels) applied before rendering: voxel steps would stripe the shading
VIEWS = (("along z (top)", 0), ("along y (side)", 1), ("along x (side)", 2))


def enclosing_level(volume: np.ndarray, enclosed_fraction: float) -> float:
    """The value above which ``enclosed_fraction`` (0..1) of the voxels of ``volume`` lie."""
    if not 0.0 < enclosed_fraction < 1.0:
        raise InputError(f"enclosed fraction must be in (0, 1), got {enclosed_fraction!r}")
    return float(np.quantile(np.asarray(volume, np.float64), 1.0 - enclosed_fraction))


def isosurface_view(volume: np.ndarray, level: float, axis: int = 0, smooth_vox: float = SMOOTH_VOX) -> np.ndarray:
    """``(a, b)`` shading in [0, 1] of the surface ``volume == level`` seen along ``axis`` of a ``(d, h, w)`` volume
    (the remaining two axes in their order; NaN where the ray meets no surface). ``smooth_vox``: the volume is
    Gaussian-smoothed by this sigma first (voxel steps would stripe the shading; 0 = none)."""
    vol = np.asarray(volume, np.float64)
    if vol.ndim != 3 or min(vol.shape) < 2 or not np.isfinite(vol).all():
        raise InputError(f"an isosurface needs a finite 3-D volume, got shape {vol.shape}")
    if smooth_vox > 0:
        vol = gaussian_filter(vol, smooth_vox, mode="nearest")
    v = np.moveaxis(vol, axis, 0)
    above = v >= level
    hit = above.any(axis=0)
    first = above.argmax(axis=0)
    cur = np.take_along_axis(v, first[None], 0)[0]
    prev = np.take_along_axis(v, np.maximum(first - 1, 0)[None], 0)[0]
    step = np.where(first > 0, np.clip((level - prev) / np.where(cur > prev, cur - prev, 1.0), 0.0, 1.0), 1.0)
    depth = np.where(hit, first - 1 + step, np.nan)
    filled = np.where(hit, depth, np.nanmax(depth) if hit.any() else 0.0)
    du, dv = np.gradient(filled)
    normals = np.stack([-du, -dv, np.ones_like(du)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    lambert = np.clip(normals @ (_LIGHT / np.linalg.norm(_LIGHT)), 0.0, 1.0)
    cue = 1.0 - 0.5 * filled / max(1.0, v.shape[0] - 1)
    return np.where(hit, (0.15 + 0.85 * lambert) * cue, np.nan)


def isosurface_figure(maps: Mapping[str, np.ndarray], enclosed: Mapping[str, float] | float = 0.1, *,
                      views: Sequence[tuple[str, int]] = VIEWS, title: str | None = None) -> Figure:
    """One row per map (``(d, h, w)``), one column per view (:data:`VIEWS`), each at the level enclosing
    ``enclosed`` (one fraction, or one per map name) of its box."""
    if not maps:
        raise InputError("no maps to draw")
    fig = Figure(figsize=(2.2 * len(views) + 1.2, 2.2 * len(maps) + (0.4 if title else 0.1)), layout="constrained")
    axes = np.asarray(fig.subplots(len(maps), len(views), squeeze=False))
    for row, (name, vol) in enumerate(maps.items()):
        fraction = float(enclosed[name] if isinstance(enclosed, Mapping) else enclosed)
        smoothed = gaussian_filter(np.asarray(vol, np.float64), SMOOTH_VOX, mode="nearest")  # once, for the level and every view
        level = enclosing_level(smoothed, fraction)
        for col, (label, axis) in enumerate(views):
            ax = axes[row, col]
            ax.imshow(isosurface_view(smoothed, level, axis, smooth_vox=0), cmap="bone", vmin=0.0, vmax=1.0, origin="lower", interpolation="bilinear")
            ax.set_facecolor("black")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=8)
        axes[row, 0].set_ylabel(f"{name}\n({100 * fraction:.0f}% of box)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
