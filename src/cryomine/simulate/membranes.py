"""Membranes in simulated tomograms: vesicles and sheets with a lipid-bilayer density profile, and their masks.

Geometry (voxels, ``(z, y, x)``): a vesicle is a sphere of radius ``R`` about a centre ``c`` (signed distance
``d = |x - c| - R``), a sheet a plane through ``p`` with unit normal ``n`` (``d = n . (x - p)``). Bilayer profile
across the membrane, in the density units of the templates (mean 1 inside a protein's mask):
``rho(d) = head * (g(d - s/2) + g(d + s/2)) + core * g_core(d)`` with Gaussians ``g`` of width ``sigma`` at the
two head-group layers ``s`` apart (``leaflet_separation_a``, ~40 Å) and a broader, negative ``g_core`` for the
hydrocarbon core (lipid tails are slightly less dense than water). The membrane's mask (its ground truth) is
``|d| <= s/2 + sigma``; particles must keep out of ``|d| <= s/2 + 2 sigma``. Membrane proteins sit with their
centre on the mid-plane and the template's ``z`` axis along the local normal (the OPM convention for membrane
protein coordinates), with a random rotation about the normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cryomine.errors import InputError

__all__ = ["MEMBRANE_LABEL", "Membrane", "MembraneConfig", "bilayer_profile", "draw_membranes", "render_membranes", "normal_frame"]

MEMBRANE_LABEL = "membrane"  # the class-map name of membranes: segmented, never picked as particles


@dataclass(frozen=True)
class MembraneConfig:
    """How many vesicles (radius drawn uniformly in ``vesicle_radius_a``) and sheets, and the bilayer profile
    (Å and relative densities); ``membrane_fraction`` caps the volume fraction inside membrane masks."""

    vesicles: int = 0
    vesicle_radius_a: tuple[float, float] = (200.0, 450.0)
    sheets: int = 0
    leaflet_separation_a: float = 40.0
    leaflet_sigma_a: float = 5.0
    head_density: float = 1.0
    core_density: float = -0.3
    membrane_fraction: float = 0.3
    max_attempts: int = 500

    def __post_init__(self) -> None:
        for name in ("vesicles", "sheets", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 10_000:
                raise InputError(f"{name} must be an integer in [0, 10000], got {value!r}", f"--{name.replace('_', '-')}")
        lo, hi = (float(v) for v in self.vesicle_radius_a)
        if not 0 < lo <= hi <= 1e5:
            raise InputError(f"vesicle radius range must satisfy 0 < min <= max, got ({lo:g}, {hi:g}) Å", "--vesicle-radius")
        object.__setattr__(self, "vesicle_radius_a", (lo, hi))
        if not 0 < self.leaflet_separation_a <= 200 or not 0 < self.leaflet_sigma_a <= 50:
            raise InputError("bilayer: leaflet separation must be in (0, 200] Å and sigma in (0, 50] Å", "membranes")
        if not 0 < self.membrane_fraction <= 1:
            raise InputError(f"membrane fraction must be in (0, 1], got {self.membrane_fraction:g}", "--membrane-fraction")

    @property
    def active(self) -> bool:
        return self.vesicles > 0 or self.sheets > 0


@dataclass(frozen=True)
class Membrane:
    """One membrane: ``kind`` ``"vesicle"`` (``centre_zyx``, ``radius_vox``) or ``"sheet"`` (``centre_zyx`` a
    point on it, ``normal_zyx``)."""

    kind: str
    centre_zyx: tuple[float, float, float]
    radius_vox: float = 0.0
    normal_zyx: tuple[float, float, float] = (1.0, 0.0, 0.0)

    def signed_distance(self, grid_zyx: np.ndarray) -> np.ndarray:
        """Signed distance (voxels) of ``(3, ...)`` points to the membrane's mid-surface (outside/along normal > 0)."""
        c = np.asarray(self.centre_zyx, np.float64).reshape(3, *([1] * (grid_zyx.ndim - 1)))
        if self.kind == "vesicle":
            return np.sqrt(((grid_zyx - c) ** 2).sum(0)) - self.radius_vox
        n = np.asarray(self.normal_zyx, np.float64).reshape(3, *([1] * (grid_zyx.ndim - 1)))
        return ((grid_zyx - c) * n).sum(0)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "centre_zyx": list(self.centre_zyx), "radius_vox": self.radius_vox,
                "normal_zyx": list(self.normal_zyx)}  # fmt: skip


def bilayer_profile(d_a: np.ndarray, config: MembraneConfig) -> np.ndarray:
    """Density across a bilayer at signed distances ``d_a`` (Å) from its mid-plane (module docstring)."""
    s, sig = config.leaflet_separation_a, config.leaflet_sigma_a
    g = lambda x, w: np.exp(-0.5 * (x / w) ** 2)  # noqa: E731
    return config.head_density * (g(d_a - s / 2, sig) + g(d_a + s / 2, sig)) + config.core_density * g(d_a, s / 4)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _mask_fraction(m: Membrane, shape_zyx: tuple[int, int, int], half_vox: float, stride: int = 3) -> float:
    """Fraction of the volume within ``half_vox`` of the membrane (sampled on every ``stride``-th voxel)."""
    grid = np.indices(tuple(-(-n // stride) for n in shape_zyx), dtype=np.float32) * stride
    return float((np.abs(m.signed_distance(grid)) <= half_vox).mean())


def _clear(m: Membrane, others: list[Membrane], gap: float) -> bool:
    """Whether ``m`` keeps ``gap`` voxels from every vesicle in ``others`` (sheets may not cut vesicles)."""
    for o in others:
        if o.kind != "vesicle":
            continue
        dist = abs(float(m.signed_distance(np.asarray(o.centre_zyx, np.float64).reshape(3, 1))[0]))
        reach = o.radius_vox + gap + (m.radius_vox if m.kind == "vesicle" else 0.0)
        if dist < reach:
            return False
    return True


def draw_membranes(shape_zyx: tuple[int, int, int], voxel_size_a: float, config: MembraneConfig,
                   rng: np.random.Generator) -> list[Membrane]:
    """Vesicles inside the volume, then sheets through it (rejection sampling): no membrane touches a vesicle, and
    membranes stop being added when their masks would cover more than ``membrane_fraction`` of the volume."""
    shape = np.asarray(shape_zyx, np.float64)
    half = (config.leaflet_separation_a / 2 + 2 * config.leaflet_sigma_a) / voxel_size_a  # keep-out half width
    mask_half = (config.leaflet_separation_a / 2 + config.leaflet_sigma_a) / voxel_size_a
    out: list[Membrane] = []
    covered = 0.0
    for kind, count in (("vesicle", config.vesicles), ("sheet", config.sheets)):
        placed, failures = 0, 0
        while placed < count and failures < config.max_attempts:
            if kind == "vesicle":
                r = rng.uniform(*config.vesicle_radius_a) / voxel_size_a
                if 2 * (r + half) > shape.min() - 1:
                    failures += 1
                    continue
                m = Membrane("vesicle", tuple(float(rng.uniform(r + half, n - 1 - r - half)) for n in shape), float(r))
            else:
                point = tuple(map(float, rng.uniform(0.2, 0.8, 3) * (shape - 1)))
                m = Membrane("sheet", point, 0.0, tuple(map(float, _random_unit(rng))))
            frac = _mask_fraction(m, shape_zyx, mask_half)
            if not _clear(m, out, 2 * half) or covered + frac > config.membrane_fraction:
                failures += 1
                continue
            out.append(m)
            covered += frac
            placed, failures = placed + 1, 0
    return out


def render_membranes(shape_zyx: tuple[int, int, int], voxel_size_a: float, membranes: list[Membrane],
                     config: MembraneConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(density, mask, keep_out)``: the summed bilayer densities (float32), the membranes' masks (uint8, the
    1-based membrane index, last one wins where they cross) and the region particles must avoid (bool)."""
    density = np.zeros(shape_zyx, np.float32)
    mask = np.zeros(shape_zyx, np.uint8)
    keep_out = np.zeros(shape_zyx, bool)
    s, sig = config.leaflet_separation_a, config.leaflet_sigma_a
    d_z, h, w = shape_zyx
    slab = max(1, (2**24) // max(1, h * w))  # z slices per slab: a bounded working set for cell-sized tomograms
    for z0 in range(0, d_z if membranes else 0, slab):
        grid = np.indices((min(slab, d_z - z0), h, w), dtype=np.float32)
        grid[0] += z0
        sl = slice(z0, z0 + grid.shape[1])
        for i, m in enumerate(membranes, start=1):
            d = m.signed_distance(grid) * voxel_size_a
            near = np.abs(d) <= s / 2 + 4 * sig
            density[sl][near] += bilayer_profile(d[near], config).astype(np.float32)
            mask[sl][np.abs(d) <= s / 2 + sig] = min(i, 255)
            keep_out[sl] |= np.abs(d) <= s / 2 + 2 * sig
    return density, mask, keep_out


def normal_frame(normal_zyx: np.ndarray, spin_rad: float) -> np.ndarray:
    """A ``(3, 3)`` rotation (acting on ``(x, y, z)`` vectors) taking ``z`` to ``normal`` (given ``(z, y, x)``),
    then spun by ``spin_rad`` about it: the orientation of a membrane protein with its z axis along the normal."""
    n = np.asarray(normal_zyx, np.float64)[::-1]  # (x, y, z)
    n = n / np.linalg.norm(n)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(helper, n)
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    base = np.stack([a, b, n], axis=1)  # columns: images of x, y, z
    c, s = math.cos(spin_rad), math.sin(spin_rad)
    spin = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return base @ spin
