"""Peak extraction from 3-D score maps: local maxima, then greedy non-maximum suppression with an exclusion radius.

Shared by DoG and template matching. A score map may be processed in pieces (tiles): :func:`local_maxima`
returns the candidates of one region (a voxel is a candidate when it is >= all 26 neighbours and > the floor),
the candidates of all pieces are concatenated, and :func:`select_peaks` keeps, best first, each candidate that
lies farther than ``min_distance`` from every candidate kept before it, up to ``top_n`` and down to
``threshold``.

Memory is bounded whatever the map size: :func:`map_candidates` reads a (memory-mapped) score map in z-slabs,
and with ``top_n`` keeps only the best ``top_n * (1 + M)`` candidates, where ``M`` is the number of voxels
closer than ``min_distance`` to a voxel (no kept peak can suppress more, so greedy suppression of that many
gives the same picks as of all); the suppression itself (:func:`_greedy_nms`, compiled) looks only at kept
peaks in the neighbouring cells of a grid, so it needs no neighbour lists.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from cryomine.errors import InputError
from cryomine.io.star import ParticleTable, coordinates_xyz_voxels, make_particles, read_particles
from cryomine.io.tomo_particles import tomo_key, tomo_names
from cryomine.pick.config import PeakConfig
from cryomine.resources import release_pages

__all__ = ["Picks", "read_picks", "predicted_classes", "Candidates", "local_maxima", "robust_threshold", "select_peaks", "find_peaks",
           "candidate_floor", "map_candidates", "suppression_bound", "population_split"]

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Candidates:
    """Peak candidates: ``coords_zyx`` ``(n, 3)`` int64 voxel indices and their ``scores`` ``(n,)`` float32."""

    coords_zyx: np.ndarray
    scores: np.ndarray

    @staticmethod
    def empty() -> Candidates:
        return Candidates(np.zeros((0, 3), np.int64), np.zeros(0, np.float32))

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        if not parts:
            return Candidates.empty()
        return Candidates(np.concatenate([p.coords_zyx for p in parts]), np.concatenate([p.scores for p in parts]))

    def __len__(self) -> int:
        return len(self.scores)


def local_maxima(
    scores: np.ndarray,
    keep: tuple[slice, slice, slice] | None = None,
    offset_zyx: tuple[int, int, int] = (0, 0, 0),
    floor: float = 0.0,
) -> Candidates:
    """Voxels of ``scores`` that are >= their 26 neighbours and > ``floor``.

    Args:
        scores: ``(d, h, w)`` score map (a region of a larger map: include a 1-voxel halo around ``keep`` so the
            neighbour test at the region's edge sees the true neighbours; outside the region counts as -inf).
        keep: only candidates inside these slices of ``scores`` are returned (default: all).
        offset_zyx: added to the returned coordinates (the region's origin in the full map).
        floor: candidates must score strictly above it.

    Returns:
        :class:`Candidates` in full-map coordinates.
    """
    arr = np.asarray(scores, dtype=np.float32)
    if arr.ndim != 3:
        raise InputError(f"score map must be 3-D, got shape {arr.shape}")
    maxed = ndimage.maximum_filter(arr, size=3, mode="constant", cval=-np.inf)
    is_max = (arr >= maxed) & (arr > floor)
    if keep is not None:
        inside = np.zeros_like(is_max)
        inside[keep] = True
        is_max &= inside
    idx = np.argwhere(is_max)
    return Candidates(idx.astype(np.int64) + np.asarray(offset_zyx, np.int64), arr[is_max].astype(np.float32))


def robust_threshold(sample: np.ndarray, n_sigma: float) -> float:
    """``median + n_sigma * 1.4826 * MAD`` of ``sample`` (any shape): n robust standard deviations above the median."""
    values = np.asarray(sample, dtype=np.float64).ravel()
    if values.size == 0:
        raise InputError("cannot set an automatic threshold from an empty score map")
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    return med + float(n_sigma) * MAD_TO_SIGMA * mad


def select_peaks(
    candidates: Candidates,
    min_distance_vox: float,
    top_n: int | None = None,
    threshold: float | None = None,
    shape_zyx: tuple[int, int, int] | None = None,
    border_vox: int = 0,
) -> Candidates:
    """Greedy non-maximum suppression: best first, drop any candidate within ``min_distance_vox`` of a kept one.

    Two kept peaks are always more than ``min_distance_vox`` apart (Euclidean, voxels). Candidates below
    ``threshold`` or closer than ``border_vox`` to a face of ``shape_zyx`` are dropped first; at most ``top_n``
    are returned, sorted by decreasing score (ties broken by z, y, x for determinism).
    """
    if not np.isfinite(min_distance_vox) or min_distance_vox <= 0:
        raise InputError(f"minimum distance must be > 0 voxels, got {min_distance_vox!r}", "--min-distance")
    coords, scores = candidates.coords_zyx, candidates.scores
    ok = np.ones(len(scores), bool)
    if threshold is not None:
        ok &= scores >= threshold
    if border_vox and shape_zyx is not None:
        hi = np.asarray(shape_zyx) - border_vox
        ok &= ((coords >= border_vox) & (coords < hi)).all(axis=1)
    coords, scores = coords[ok], scores[ok]
    if len(scores) == 0:
        return Candidates.empty()
    order = np.lexsort((coords[:, 2], coords[:, 1], coords[:, 0], -scores.astype(np.float64)))
    coords, scores = coords[order], scores[order]
    limit = top_n if top_n is not None else len(scores)
    span = coords.max(axis=0) - coords.min(axis=0) + 1
    cell = max(float(min_distance_vox), float(np.prod(span.astype(np.float64)) / _MAX_CELLS) ** (1 / 3))
    sel = _greedy_nms(np.ascontiguousarray(coords, np.int64), float(min_distance_vox) * (1 - 1e-9), int(limit), cell)
    return Candidates(coords[sel], scores[sel])


_MAX_CELLS = 2**22  # the suppression grid's cells (int64 heads: 32 MB at most)


@numba.njit(cache=True, nogil=True)
def _greedy_nms(coords, radius, limit, cell):  # pragma: no cover - compiled
    """Indices (in order) of the candidates kept by greedy suppression: ``coords`` ``(n, 3)`` sorted best first; a
    candidate within ``radius`` (inclusive) of a kept one is dropped. Kept peaks are filed in a grid of ``cell``
    (>= radius) voxels, so only the 27 cells around a candidate are searched."""
    n = coords.shape[0]
    lo = np.empty(3, np.int64)
    dims = np.empty(3, np.int64)
    for ax in range(3):
        lo[ax], hi = coords[0, ax], coords[0, ax]
        for i in range(n):
            lo[ax] = min(lo[ax], coords[i, ax])
            hi = max(hi, coords[i, ax])
        dims[ax] = int((hi - lo[ax]) / cell) + 1
    head = np.full(dims[0] * dims[1] * dims[2], -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    kept = np.empty(min(n, limit), np.int64)
    nk = 0
    r2 = radius * radius
    for i in range(n):
        cz, cy, cx = int((coords[i, 0] - lo[0]) / cell), int((coords[i, 1] - lo[1]) / cell), int((coords[i, 2] - lo[2]) / cell)
        free = True
        for z in range(max(cz - 1, 0), min(cz + 2, dims[0])):
            for y in range(max(cy - 1, 0), min(cy + 2, dims[1])):
                for x in range(max(cx - 1, 0), min(cx + 2, dims[2])):
                    j = head[(z * dims[1] + y) * dims[2] + x]
                    while j >= 0 and free:
                        dz, dy, dx = coords[i, 0] - coords[j, 0], coords[i, 1] - coords[j, 1], coords[i, 2] - coords[j, 2]
                        if dz * dz + dy * dy + dx * dx <= r2:
                            free = False
                        j = nxt[j]
        if free:
            kept[nk] = i
            nk += 1
            c = (cz * dims[1] + cy) * dims[2] + cx
            nxt[i], head[c] = head[c], i
            if nk >= limit:
                break
    return kept[:nk]


ASHMAN_D = 4.0  # groups further apart than this (pooled standard deviations) are "clearly separate": Otsu's split of
# one Gaussian sample gives D ~ 2.7
MIN_LOWER = 3  # the lower group (what is dropped) must hold at least this many peaks


def population_split(scores: np.ndarray) -> float | None:
    """The score between two clearly separate groups of peak scores, or None when there is one group.

    Otsu's split of the sorted scores (the cut maximising the between-group variance), accepted when Ashman's
    ``D = |m1 - m2| / sqrt((s1^2 + s2^2) / 2)`` exceeds :data:`ASHMAN_D` (clearly bimodal) and the lower group
    holds at least :data:`MIN_LOWER` peaks; the threshold returned is the lowest score of the upper group.
    """
    s = np.sort(np.asarray(scores, np.float64))
    n = s.size
    if n < MIN_LOWER + 1:
        return None
    csum = np.cumsum(s)
    k = np.arange(1, n)  # lower group s[:k], upper s[k:]
    m1, m2 = csum[k - 1] / k, (csum[-1] - csum[k - 1]) / (n - k)
    cut = int(np.argmax(k * (n - k) * (m2 - m1) ** 2)) + 1
    lo, hi = s[:cut], s[cut:]
    if lo.size < MIN_LOWER:
        return None
    spread = math.sqrt((lo.var() + hi.var()) / 2.0)
    d = (hi.mean() - lo.mean()) / max(spread, 1e-12)
    return float(hi[0]) if d > ASHMAN_D else None


def suppression_bound(min_distance_vox: float) -> int:
    """``M``: the number of voxels closer than ``min_distance_vox`` to a voxel (itself excluded), the most
    candidates one kept peak can suppress."""
    r = float(min_distance_vox)
    k = int(np.ceil(r))
    g = np.arange(-k, k + 1) ** 2
    return int((g[:, None, None] + g[None, :, None] + g[None, None, :] < r * r).sum()) - 1


def map_candidates(scores: np.ndarray, floor: float, *, top_n: int | None = None, min_distance_vox: float = 1.0,
                   slab_voxels: int = 2**23) -> Candidates:  # fmt: skip
    """The local maxima of a whole ``(d, h, w)`` score map above ``floor``, read in z-slabs with a 1-voxel halo
    (``scores`` may be a memory map; working memory ~``slab_voxels`` voxels plus the candidates). With
    ``top_n``, only the best ``top_n * (1 + M)`` are kept (module docstring): the same picks as from all."""
    d, h, w = scores.shape
    per = max(1, slab_voxels // max(1, h * w))
    cap = None if top_n is None else int(top_n) * (1 + suppression_bound(min_distance_vox))
    kept = Candidates.empty()
    for z0 in range(0, d, per):
        z1 = min(d, z0 + per)
        a, b = max(0, z0 - 1), min(d, z1 + 1)
        part = local_maxima(np.asarray(scores[a:b]), keep=(slice(z0 - a, z1 - a), slice(None), slice(None)), offset_zyx=(a, 0, 0),
                            floor=floor)  # fmt: skip
        kept = Candidates.concat([kept, part])
        release_pages(scores)
        if cap is not None and len(kept) > cap:
            best = np.argpartition(-kept.scores, cap - 1)[:cap]
            kept = Candidates(kept.coords_zyx[best], kept.scores[best])
    return kept


def candidate_floor(threshold: float | None) -> float:
    """A floor just below ``threshold`` for :func:`local_maxima` (``-inf`` without one); the exact cut is in
    :func:`select_peaks`."""
    if threshold is None:
        return -np.inf
    return float(threshold) - 1e-6 * max(1.0, abs(float(threshold)))


def find_peaks(scores: np.ndarray, config: PeakConfig, default_distance_vox: float) -> Candidates:
    """Peaks of a whole in-memory ``(d, h, w)`` score map with :class:`PeakConfig`; ``default_distance_vox`` (the
    particle radius) is the exclusion radius when ``config.min_distance_vox`` is None and sets the default face
    exclusion (:meth:`PeakConfig.border_for`)."""
    arr = np.asarray(scores, dtype=np.float32)
    threshold = config.threshold
    if threshold is None and config.top_n is None:
        threshold = robust_threshold(arr[::2, ::2, ::2], config.auto_sigma)
    floor = candidate_floor(threshold)
    cands = local_maxima(arr, floor=floor)
    dist = config.min_distance_vox if config.min_distance_vox is not None else default_distance_vox
    return select_peaks(cands, dist, config.top_n, threshold, arr.shape, config.border_for(default_distance_vox))


@dataclass(frozen=True)
class Picks:
    """Picked particles: ``coords_zyx`` ``(n, 3)`` voxel positions, ``scores`` ``(n,)`` (best first), optional
    ``eulers_zyz`` ``(n, 3)`` RELION (rot, tilt, psi) degrees (template matching) and ``class_name``: one name
    for all (the template's) or an ``(n,)`` array of names, one per pick (the learned picker's classes)."""

    coords_zyx: np.ndarray
    scores: np.ndarray
    eulers_zyz: np.ndarray | None = None
    class_name: str | np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_table(self, tomo_name: str | None = None) -> ParticleTable:
        """A RELION particle table: ``rlnCoordinateX/Y/Z`` (voxels), ``rlnAutopickFigureOfMerit`` (the score),
        ``rlnAngleRot/Tilt/Psi`` when known, ``rlnClassName`` when known, ``rlnTomoName`` when given."""
        extra: dict[str, np.ndarray] = {"rlnAutopickFigureOfMerit": np.asarray(self.scores, np.float64)}
        if self.class_name is not None and len(self):
            names = [self.class_name] * len(self) if isinstance(self.class_name, str) else list(self.class_name)
            extra["rlnClassName"] = np.array(names, dtype=object)
        coords = np.asarray(self.coords_zyx, np.float64).reshape(-1, 3)[:, ::-1]
        return make_particles(coords, self.eulers_zyz, tomo_name=tomo_name if len(self) else None, extra=extra)


def read_picks(path: str | os.PathLike[str]) -> ParticleTable:
    """Read a particle STAR file (picks or truth) that must hold at least one particle (InputError otherwise)."""
    table = read_particles(path)
    if len(table) == 0:
        raise InputError("STAR file holds no particles", path)
    return table


def predicted_classes(predictions: str | os.PathLike[str], picks: ParticleTable) -> np.ndarray:
    """Class name of every pick of ``picks`` from ``cryomine predict``'s ``predictions.star`` of the dataset that
    ``cryomine extract`` made from them, joined by position: same tomogram (``rlnTomoName``, when both name one)
    and the same ``rlnCoordinateX/Y/Z`` within 0.01 voxel. Returns an ``(n,)`` object array; InputError naming the
    file when predictions lack positions or some picks have no prediction (e.g. picks of another tomogram)."""
    try:
        table = read_particles(predictions)
    except InputError as exc:
        raise InputError(f"no positions in these predictions ({exc}); predict the dataset 'cryomine extract' made from "
                         "the picks (predictions.star then has rlnCoordinateX/Y/Z and rlnTomoName)") from None
    pred = table.particles
    if "cmClassName" not in pred.columns and "rlnClassName" not in pred.columns:
        raise InputError("not a cryomine predictions file: needs cmClassName (or rlnClassName)", predictions)
    names = (pred["cmClassName"] if "cmClassName" in pred.columns else pred["rlnClassName"]).astype(str).to_numpy()
    index = {}
    pred_tomo = tomo_names(table)
    for k, key in enumerate(_position_keys(coordinates_xyz_voxels(table), pred_tomo)):
        index[key] = k
    pick_tomo = tomo_names(picks) if pred_tomo is not None else None
    keys = _position_keys(coordinates_xyz_voxels(picks), pick_tomo)
    found = np.array([index.get(key, -1) for key in keys])
    if (found < 0).any():
        raise InputError(f"{int((found < 0).sum())} of {len(found)} picks have no prediction at their position (predict "
                         "the dataset 'cryomine extract' made from these picks)", predictions)  # fmt: skip
    return names[found].astype(object)


def _position_keys(xyz: np.ndarray, tomo: np.ndarray | None) -> list[tuple]:
    grid = np.rint(np.asarray(xyz, np.float64) * 100).astype(np.int64)  # 0.01 voxel
    names = [""] * len(grid) if tomo is None else [tomo_key(t) for t in tomo]
    return [(n, *map(int, g)) for n, g in zip(names, grid)]


