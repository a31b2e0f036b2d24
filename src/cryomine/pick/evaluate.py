"""Evaluation of picks against true particle positions: precision, recall and F1, overall and per class.

Hit rule (SHREC, CZII cryo-ET challenge): a pick is a hit for a true particle when their distance is at most
``hit_fraction`` (0.5) times the radius of that particle's class. Each true particle is matched at most once and
each pick at most once: among all admissible pick-truth pairs a maximum-cardinality matching of minimum total
distance is found with the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`), run separately on
each connected component of the admissible-pair graph (so it scales to many thousands of particles). Unmatched
picks are false positives, unmatched true particles false negatives.

Two matchings are reported:

- ``localisation``: classes ignored (all picks vs all true particles);
- ``localisation_and_class`` (when picks carry class names): picks of class ``c`` vs true particles of class
  ``c``, summed over classes; a correctly placed pick with the wrong class is a false positive and leaves a
  false negative.

Picks and true particles of different tomograms (``rlnTomoName``, when both files name them) never match.

Per class: ``localisation`` gives the recall of that class's true particles (and, for classed picks, the
precision of the picks labelled ``c`` that hit any particle); ``localisation_and_class`` gives the class-aware
precision, recall and F1. Empty denominators give 0.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cryomine.errors import CryomineWarning, InputError
from cryomine.io.star import ParticleTable, coordinates_xyz_voxels
from cryomine.io.tomo_particles import tomo_key, tomo_names
from cryomine.pick.config import MatchingConfig
from cryomine.pick.peaks import predicted_classes, read_picks
from cryomine.structures import bundled_radius_a

__all__ = ["PointSet", "load_point_set", "match_points", "evaluate_point_sets", "evaluate_pick_files", "class_radii_vox"]


@dataclass(frozen=True)
class PointSet:
    """Particles to compare: ``coords_zyx`` ``(n, 3)`` voxels, ``class_names`` and ``tomo_names`` ``(n,)`` str
    arrays or None (``tomo_names``: :func:`~cryomine.io.tomo_particles.tomo_key` of ``rlnTomoName``)."""

    coords_zyx: np.ndarray
    class_names: np.ndarray | None = None
    tomo_names: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.coords_zyx)


def _class_column(table: ParticleTable) -> np.ndarray | None:
    df = table.particles
    for col in ("rlnClassName", "cmClassName"):
        if col in df.columns:
            return df[col].astype(str).to_numpy()
    return None


def load_point_set(path: str | os.PathLike[str], predictions: str | os.PathLike[str] | None = None) -> PointSet:
    """Read a particle STAR (non-empty); classes from ``predictions`` (``cryomine predict`` output) or the file's
    ``rlnClassName`` column."""
    table = read_picks(path)
    coords = coordinates_xyz_voxels(table)[:, ::-1].copy()
    names = predicted_classes(predictions, table) if predictions is not None else _class_column(table)
    tomos = tomo_names(table)
    return PointSet(coords, None if names is None else np.asarray(names, dtype=object),
                    None if tomos is None else np.array([tomo_key(t) for t in tomos], dtype=object))


def match_points(picks_zyx: np.ndarray, truth_zyx: np.ndarray, max_distance: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of picks to true points within a per-truth distance.

    Args:
        picks_zyx: ``(p, 3)`` pick positions. truth_zyx: ``(t, 3)`` true positions.
        max_distance: ``(t,)`` (or one) largest admissible distance for each true point (inclusive).

    Returns:
        ``(pick_index, truth_index)`` int arrays of the matched pairs: a maximum-cardinality matching of minimum
        total distance among admissible pairs (Hungarian algorithm per connected component).
    """
    p = np.asarray(picks_zyx, np.float64).reshape(-1, 3)
    t = np.asarray(truth_zyx, np.float64).reshape(-1, 3)
    limit = np.broadcast_to(np.asarray(max_distance, np.float64), (len(t),))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(p) == 0 or len(t) == 0:
        return empty
    dist = cKDTree(t).sparse_distance_matrix(cKDTree(p), float(limit.max()), output_type="coo_matrix")
    keep = dist.data <= limit[dist.row] + 1e-9
    rows, cols, d = dist.row[keep], dist.col[keep], dist.data[keep]
    if len(rows) == 0:
        return empty
    nt = len(t)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols + nt)), shape=(nt + len(p),) * 2)
    _, label = connected_components(graph, directed=False)
    out_p, out_t = [], []
    comp_of_edge = label[rows]
    for comp in np.unique(comp_of_edge):
        sel = comp_of_edge == comp
        tr, pc, dd = rows[sel], cols[sel], d[sel]
        ut, ti = np.unique(tr, return_inverse=True)
        up, pi = np.unique(pc, return_inverse=True)
        big = (float(dd.max()) + 1.0) * (min(len(ut), len(up)) + 1)
        cost = np.full((len(ut), len(up)), big)
        cost[ti, pi] = dd
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < big
        out_t.append(ut[r[ok]])
        out_p.append(up[c[ok]])
    return np.concatenate(out_p).astype(np.int64), np.concatenate(out_t).astype(np.int64)


def _prf(tp: int, n_pred: int | None, n_true: int) -> dict[str, float | int | None]:
    precision = None if n_pred is None else (tp / n_pred if n_pred else 0.0)
    recall = tp / n_true if n_true else 0.0
    f1 = None if precision is None else (2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    out: dict[str, float | int | None] = {"tp": int(tp)}
    if n_pred is not None:
        out["fp"] = int(n_pred - tp)
    out["fn"] = int(n_true - tp)
    out.update(precision=precision, recall=recall, f1=f1)
    return out


def class_radii_vox(names: list[str], config: MatchingConfig, voxel_size_a: float | None) -> dict[str, float]:
    """Particle radius (voxels) per class: ``config.radius_a`` for all, else half the bundled structure's diameter."""
    if voxel_size_a is None:
        raise InputError("voxel size unknown: pass --voxel-size (Å) to convert radii to voxels")
    if config.radius_a is not None:
        return {n: float(config.radius_a) / voxel_size_a for n in names}
    radius = {n: bundled_radius_a(n) for n in names}
    unknown = sorted(n for n in names if radius[n] is None)
    if unknown:
        raise InputError(f"no bundled structure named {', '.join(unknown[:5])}: pass --radius (Å) for the particle radius")
    return {n: radius[n] / voxel_size_a for n in names}


_TOMO_GAP_VOX = 1e9  # tomograms are placed this far apart, so no pick matches a particle of another tomogram


def _per_tomogram(picks: PointSet, truth: PointSet) -> tuple[np.ndarray, np.ndarray]:
    """Pick and truth positions with each tomogram shifted to a place of its own (when both name tomograms)."""
    p, t = np.asarray(picks.coords_zyx, np.float64), np.asarray(truth.coords_zyx, np.float64)
    if picks.tomo_names is None or truth.tomo_names is None:
        return p, t
    if not set(picks.tomo_names) & set(truth.tomo_names):
        warnings.warn(f"the picks name tomogram(s) {sorted(set(picks.tomo_names))[:4]} and the true particles "
                      f"{sorted(set(truth.tomo_names))[:4]}: no tomogram in common, so no pick can match "
                      "(fix rlnTomoName, e.g. pick with --tomo-name)", CryomineWarning, stacklevel=3)
    order = {name: k for k, name in enumerate(sorted(set(picks.tomo_names) | set(truth.tomo_names)))}
    shift = lambda names: np.array([[order[n] * _TOMO_GAP_VOX, 0.0, 0.0] for n in names]).reshape(-1, 3)  # noqa: E731
    return p + shift(picks.tomo_names), t + shift(truth.tomo_names)


def evaluate_point_sets(picks: PointSet, truth: PointSet, radius_vox: dict[str, float], hit_fraction: float = 0.5) -> dict:
    """Scores of ``picks`` against ``truth`` (module docstring); ``radius_vox`` maps each true class to its radius.
    When both sets name their tomograms, picks only match particles of the same tomogram."""
    t_names = truth.class_names if truth.class_names is not None else np.full(len(truth), "all", dtype=object)
    limit = np.array([hit_fraction * radius_vox[str(n)] for n in t_names])
    p_zyx, t_zyx = _per_tomogram(picks, truth)
    pi, ti = match_points(p_zyx, t_zyx, limit)
    classed = picks.class_names is not None
    p_names = picks.class_names if classed else None
    classes = sorted(set(map(str, t_names)) | (set(map(str, p_names)) if classed else set()))
    report: dict = {
        "n_picks": len(picks),
        "n_true": len(truth),
        "hit_fraction": hit_fraction,
        "radius_vox": {c: round(radius_vox[c], 3) for c in classes if c in radius_vox},
        "localisation": _prf(len(pi), len(picks), len(truth)),
        "localisation_and_class": None,
        "per_class": {},
    }
    matched_truth = np.zeros(len(truth), bool)
    matched_truth[ti] = True
    matched_pick = np.zeros(len(picks), bool)
    matched_pick[pi] = True
    tp_cls_total = 0
    for c in classes:
        is_t = np.array([str(n) == c for n in t_names], bool)
        entry: dict = {"n_true": int(is_t.sum()), "n_picked": None}
        if classed:
            is_p = np.array([str(n) == c for n in p_names], bool)  # type: ignore[union-attr]
            entry["n_picked"] = int(is_p.sum())
            loc = _prf(int(matched_truth[is_t].sum()), None, int(is_t.sum()))
            prec = float(matched_pick[is_p].sum() / is_p.sum()) if is_p.any() else 0.0
            rec = loc["recall"]
            loc.update(precision=prec, f1=(2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0))  # type: ignore[operator]
            entry["localisation"] = loc
            cp, _ = match_points(p_zyx[is_p], t_zyx[is_t], limit[is_t])
            tp_cls_total += len(cp)
            entry["localisation_and_class"] = _prf(len(cp), int(is_p.sum()), int(is_t.sum()))
        else:
            entry["localisation"] = _prf(int(matched_truth[is_t].sum()), None, int(is_t.sum()))
            entry["localisation_and_class"] = None
        report["per_class"][c] = entry
    if classed:
        report["localisation_and_class"] = _prf(tp_cls_total, len(picks), len(truth))
    return report


def _voxel_size_from(paths: list[Path]) -> float | None:
    """Voxel size (Å) from a STAR file's sibling JSON (the simulator's and ``cryomine pick``'s metadata)."""
    for p in paths:
        meta = p.with_suffix(".json")
        if meta.is_file():
            try:
                data = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            for value in (data.get("voxel_size_a"), (data.get("config") or {}).get("voxel_size_a")):
                if isinstance(value, (int, float)) and value > 0:
                    return float(value)
    return None


def evaluate_pick_files(
    picks_path: str | os.PathLike[str],
    truth_path: str | os.PathLike[str],
    config: MatchingConfig = MatchingConfig(),
    predictions: str | os.PathLike[str] | None = None,
) -> dict:
    """Evaluate a picks STAR against a truth STAR (both voxel coordinates of the same tomogram).

    The voxel size is ``config.voxel_size_a`` or read from the truth's / picks' sibling ``.json`` (written by
    ``cryomine simulate tomogram`` and ``cryomine pick``). Class radii: see :func:`class_radii_vox`.
    """
    truth = load_point_set(truth_path)
    picks = load_point_set(picks_path, predictions)
    voxel = config.voxel_size_a or _voxel_size_from([Path(truth_path), Path(picks_path)])
    names = sorted(set(map(str, truth.class_names))) if truth.class_names is not None else ["all"]
    if truth.class_names is None and config.radius_a is None:
        raise InputError("true particles have no rlnClassName: pass --radius (Å)", truth_path)
    radii = class_radii_vox(names, config, voxel)
    report = evaluate_point_sets(picks, truth, radii, config.hit_fraction)
    report.update(picks=str(picks_path), truth=str(truth_path), voxel_size_a=voxel)
    return report
