"""Isosurface pictures (issue 18, item 4): the ray-cast surface of an analytic map sits where it should."""

from __future__ import annotations

import numpy as np
import pytest

from cryomine.errors import InputError
from cryomine.viz import enclosing_level, isosurface_figure, isosurface_view


def _ball(shape=(33, 41, 37), centre=(16.0, 22.0, 17.0), sigma=6.0):
    z, y, x = np.indices(shape, dtype=np.float64)
    r2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
    return np.exp(-r2 / (2 * sigma**2)), r2


def test_surface_is_the_analytic_sphere_seen_from_each_axis():
    vol, r2 = _ball()
    radius = 8.0
    level = float(np.exp(-(radius**2) / (2 * 6.0**2)))
    for axis in range(3):
        img = isosurface_view(vol, level, axis, smooth_vox=0)
        hit = np.isfinite(img)
        # the silhouette is the disc of the sphere's radius around the centre, in the two remaining axes
        others = [a for a in range(3) if a != axis]
        c = np.array((16.0, 22.0, 17.0))[others]
        u, v = np.indices(img.shape)
        inside = (u - c[0]) ** 2 + (v - c[1]) ** 2 < (radius - 1) ** 2
        outside = (u - c[0]) ** 2 + (v - c[1]) ** 2 > (radius + 1) ** 2
        assert hit[inside].all() and not hit[outside].any()
        # facing the light most squarely near the centre: brightest there, darker toward the rim
        centre_val = img[int(c[0]), int(c[1])]
        rim = img[hit & ((u - c[0]) ** 2 + (v - c[1]) ** 2 > (radius - 2) ** 2)]
        assert centre_val > np.median(rim)


def test_enclosing_level_encloses_the_fraction():
    vol = _ball()[0] + 1e-9 * np.random.default_rng(0).random((33, 41, 37))  # no ties between equal radii
    for fraction in (0.02, 0.1, 0.3):
        assert (vol > enclosing_level(vol, fraction)).mean() == pytest.approx(fraction, abs=1e-3)
    with pytest.raises(InputError, match="enclosed fraction"):
        enclosing_level(vol, 1.5)
    with pytest.raises(InputError, match="finite 3-D"):
        isosurface_view(np.full((4, 4, 4), np.nan), 0.5)


def test_figure_has_one_row_per_map_and_a_column_per_view():
    vol, _ = _ball()
    fig = isosurface_figure({"a": vol, "b": vol[::-1]}, {"a": 0.05, "b": 0.1})
    assert len(fig.axes) == 6
