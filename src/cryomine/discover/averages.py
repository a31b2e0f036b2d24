"""Per-cluster mean densities, brought into the reference frame by the true poses, and their FSC against truth.

Poses. In a dataset with ground truth the target of row ``i`` is the reference rotated by RELION's matrix ``A`` of
``eulers_zyz[i]`` and then shifted by ``shifts_zyx[i]`` (a reference feature at offset ``r`` from the box centre
``n // 2`` appears at ``A r + s``). :func:`unrotate` inverts that (``out(q) = in(A q + s)``), so averages of
un-rotated densities are in the reference frame and can be compared with the true structure. Without poses the
densities are averaged as they are (random orientations blur such an average; the summary says so).

True structures (:func:`true_structures`): for a simulated dataset whose config lists ``structures``, the
structure's simulation template (:func:`cryomine.simulate.templates.prepare_template`, centre of mass at the box
centre, cropped or padded to the box); otherwise (or when that fails) the mean of the class's un-rotated clean
``target_density`` rows. The FSC (:func:`cryomine.evaluate.fsc.fsc`) is unmasked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from cryomine.errors import InputError
from cryomine.evaluate.fsc import FSCResult, fsc
from cryomine.geometry import euler_zyz_to_matrix, rotate_volumes
from cryomine.geometry.boxes import place_in_box
from cryomine.io.subtomo_h5 import DatasetHeader, read_rows
from cryomine.simulate.templates import prepare_template

_BATCH = 64


def unrotate(volumes: np.ndarray, eulers_zyz: np.ndarray, shifts_zyx: np.ndarray) -> np.ndarray:
    """Bring ``(n, d, h, w)`` volumes in true poses (``(n, 3)`` RELION ZYZ degrees, ``(n, 3)`` zyx voxel shifts)
    back into the reference frame (trilinear interpolation, zeros outside); returns ``(n, d, h, w)`` float32."""
    vols = np.asarray(volumes, np.float32)
    a = euler_zyz_to_matrix(np.asarray(eulers_zyz, np.float64).reshape(-1, 3))
    if vols.ndim != 4 or a.shape[0] != vols.shape[0]:
        raise InputError(f"unrotate: {vols.shape[0]} volumes but {a.shape[0]} poses")
    a_t = np.transpose(a, (0, 2, 1))
    s_xyz = np.asarray(shifts_zyx, np.float64).reshape(-1, 3)[:, ::-1]
    t_zyx = -np.einsum("nij,nj->ni", a_t, s_xyz)[:, ::-1]
    out = rotate_volumes(torch.from_numpy(vols), torch.from_numpy(a_t.astype(np.float32)),
                         torch.from_numpy(np.ascontiguousarray(t_zyx, dtype=np.float32)))
    return out.numpy()


class ClusterMeans:
    """Running per-cluster sums of ``(d, h, w)`` volumes; :meth:`means` gives ``(k, d, h, w)`` float32 means."""

    def __init__(self, k: int, shape_zyx: Sequence[int]) -> None:
        self.sums = np.zeros((k, *shape_zyx), np.float64)
        self.counts = np.zeros(k, np.int64)

    def add(self, volumes: np.ndarray, labels: np.ndarray) -> None:
        """Add ``(b, d, h, w)`` volumes to the clusters ``labels`` ``(b,)``."""
        labels = np.asarray(labels, np.int64)
        for c in np.unique(labels):
            sel = labels == c
            self.sums[c] += volumes[sel].sum(axis=0, dtype=np.float64)
            self.counts[c] += int(sel.sum())

    def means(self) -> np.ndarray:
        """``(k, d, h, w)`` means (zeros for an empty cluster)."""
        return (self.sums / np.maximum(self.counts, 1)[:, None, None, None]).astype(np.float32)


def _batches(n: int, size: int = _BATCH) -> Iterator[np.ndarray]:
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def cluster_means(
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    label_sets: Sequence[np.ndarray],
    ks: Sequence[int],
    shape_zyx: Sequence[int],
    poses: tuple[np.ndarray, np.ndarray] | None,
) -> list[np.ndarray]:
    """Per-cluster means of volumes streamed as ``(positions (b,), volumes (b, d, h, w))`` batches, for each
    labelling in ``label_sets`` (``(n,)`` each, indexed by position, ``ks[j]`` clusters), after :func:`unrotate`
    with ``poses = (eulers_zyz (n, 3), shifts_zyx (n, 3))`` when given. Returns one ``(k_j, d, h, w)`` array per
    labelling."""
    accs = [ClusterMeans(k, shape_zyx) for k in ks]
    for pos, vols in batches:
        batch = vols if poses is None else unrotate(vols, poses[0][pos], poses[1][pos])
        for acc, labels in zip(accs, label_sets):
            acc.add(batch, labels[pos])
    return [acc.means() for acc in accs]


def array_batches(volumes: np.ndarray, size: int = _BATCH) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(positions, volumes[positions])`` batches of an in-memory ``(n, d, h, w)`` array."""
    for pos in _batches(volumes.shape[0], size):
        yield pos, volumes[pos]


def _template_truth(header: DatasetHeader, class_id: int) -> np.ndarray | None:
    cfg = header.config or {}
    structures = cfg.get("structures")
    if not isinstance(structures, list) or len(structures) != len(header.class_names):
        return None
    try:
        t = prepare_template(str(structures[class_id]), header.voxel_size_a, float(cfg.get("mask_threshold", 0.1)))
    except (InputError, OSError, ValueError):
        return None
    return place_in_box(t.density, (header.size,) * 3)


def true_structures(
    dataset: str | os.PathLike[str],
    header: DatasetHeader,
    class_ids: Iterable[int],
    rows: np.ndarray,
    classes: np.ndarray,
    poses: tuple[np.ndarray, np.ndarray],
) -> dict[int, tuple[np.ndarray, str]]:
    """True ``(s, s, s)`` map and its source (``"template"`` or ``"target_density"``) of each class in ``class_ids``.

    ``rows``: ``(n,)`` dataset rows, ``classes`` their ``(n,)`` class ids, ``poses`` their true
    ``(eulers_zyz (n, 3), shifts_zyx (n, 3))`` (used for the ``target_density`` fallback).
    """
    out: dict[int, tuple[np.ndarray, str]] = {}
    missing: list[int] = []
    for c in sorted(set(int(c) for c in class_ids)):
        t = _template_truth(header, c)
        if t is not None:
            out[c] = (t, "template")
        elif (classes == c).any():
            missing.append(c)
    if missing:
        sel = np.flatnonzero(np.isin(classes, missing))
        remap = {c: j for j, c in enumerate(missing)}
        acc = ClusterMeans(len(missing), (header.size,) * 3)
        for pos in _batches(sel.size):
            idx = sel[pos]
            dens = read_rows(dataset, ("target_density",), rows[idx])["target_density"]
            acc.add(unrotate(dens, poses[0][idx], poses[1][idx]), np.array([remap[int(c)] for c in classes[idx]]))
        means = acc.means()
        for c, j in remap.items():
            out[c] = (means[j], "target_density")
    return out


def compare_to_truth(
    average: np.ndarray, truth: np.ndarray, voxel_size_a: float
) -> tuple[FSCResult | None, dict[str, float | None]]:
    """FSC of a ``(d, h, w)`` average against a same-shape truth, and its summary ``fsc_sum``,
    ``resolution_fsc05_a``, ``resolution_fsc0143_a`` (the result ``None`` and the values ``None`` where the FSC is
    undefined, e.g. a constant map)."""
    try:
        r = fsc(average, truth, voxel_size_a=voxel_size_a)
    except InputError:
        return None, {"fsc_sum": None, "resolution_fsc05_a": None, "resolution_fsc0143_a": None}

    def clean(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return r, {"fsc_sum": clean(r.fsc_sum), "resolution_fsc05_a": clean(r.resolution_05_a),
               "resolution_fsc0143_a": clean(r.resolution_0143_a)}


def fsc_summary(average: np.ndarray, truth: np.ndarray, voxel_size_a: float) -> dict[str, float | None]:
    """The summary part of :func:`compare_to_truth`."""
    return compare_to_truth(average, truth, voxel_size_a)[1]
