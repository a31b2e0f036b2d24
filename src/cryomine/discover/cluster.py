"""Clustering and its scores: seeded k-means, a 2-D t-SNE embedding, purity and held-out recall / precision.

Conventions: ``labels`` are ``(n,)`` cluster ids ``0 .. k-1``; ``classes`` are ``(n,)`` true class ids with
``-1`` for unknown (rows with ``classes < 0`` are left out of every score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cryomine.errors import InputError


def check_k(k: int, n_samples: int) -> int:
    """``k`` as an int, or InputError unless ``2 <= k <= n_samples``."""
    if isinstance(k, bool) or int(k) != k:
        raise InputError(f"k must be an integer, got {k!r}", "--k")
    if k < 2:
        raise InputError(f"k must be >= 2 clusters, got {k}", "--k")
    if k > n_samples:
        raise InputError(f"k = {k} clusters is more than the {n_samples} subtomograms to cluster", "--k")
    return int(k)


def kmeans(features: np.ndarray, k: int, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means (scikit-learn, k-means++ init, ``n_init`` restarts, seeded) of ``(n, f)`` features.

    Returns ``(n,)`` int64 labels renumbered by cluster size (0 = largest; ties by first row), so the numbering
    does not depend on k-means' internal order.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(features, np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError(f"features must be a finite (n, f) array, got shape {x.shape}")
    k = check_k(k, x.shape[0])
    raw = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    sizes = np.bincount(raw, minlength=k)
    first = np.array([np.flatnonzero(raw == c)[0] if sizes[c] else x.shape[0] for c in range(k)])
    order = np.lexsort((first, -sizes))  # new id j = old cluster order[j]
    remap = np.empty(k, np.int64)
    remap[order] = np.arange(k)
    return remap[raw]


def tsne_2d(
    features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0, max_points: int = 3000
) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE (scikit-learn, PCA init, seeded) of ``(n, f)`` features.

    Embeds at most ``max_points`` rows (a seeded random subset beyond). Features are reduced to 50 PCA dimensions
    first when wider. Returns ``(indices (m,), coords (m, 2))``: which rows were embedded and where.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, np.float64)
    n = x.shape[0]
    if n < 3:
        raise InputError(f"t-SNE needs at least 3 subtomograms, got {n}")
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng([seed, 7]).choice(n, size=max_points, replace=False))
    x = x[idx]
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perp = float(min(perplexity, max(1.0, (x.shape[0] - 1) / 3.0)))
    coords = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed, max_iter=1000).fit_transform(x)
    return idx, coords.astype(np.float32)


def contingency(labels: np.ndarray, classes: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """``(k, n_classes)`` counts of rows per (cluster, true class); rows of unknown class left out."""
    lab, cls = np.asarray(labels, np.int64), np.asarray(classes, np.int64)
    if lab.shape != cls.shape:
        raise InputError(f"labels {lab.shape} and classes {cls.shape} differ in length")
    keep = cls >= 0
    table = np.zeros((k, n_classes), np.int64)
    np.add.at(table, (lab[keep], cls[keep]), 1)
    return table


def purity(labels: np.ndarray, classes: np.ndarray) -> float:
    """Fraction of (known-class) rows whose class is the majority class of their cluster (NaN if none known)."""
    cls = np.asarray(classes, np.int64)
    if not (cls >= 0).any():
        return math.nan
    table = contingency(labels, cls, int(np.max(labels)) + 1, int(cls.max()) + 1)
    return float(table.max(axis=1).sum() / table.sum())


@dataclass(frozen=True)
class HeldOutScore:
    """How one class was found: its majority cluster, recall (fraction of the class in that cluster) and precision
    (fraction of that cluster that is the class)."""

    class_id: int
    n: int
    cluster: int
    recall: float
    precision: float
    cluster_size: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-able copy."""
        return {"class_id": self.class_id, "n": self.n, "cluster": self.cluster, "recall": self.recall,
                "precision": self.precision, "cluster_size": self.cluster_size}


def class_score(labels: np.ndarray, classes: np.ndarray, class_id: int) -> HeldOutScore:
    """:class:`HeldOutScore` of ``class_id`` (InputError if no row has that class).

    Precision counts every row of the cluster, including rows of unknown class. Ties between clusters go to the
    one with the higher precision, then the lower id.
    """
    lab, cls = np.asarray(labels, np.int64), np.asarray(classes, np.int64)
    mine = cls == class_id
    n = int(mine.sum())
    if n == 0:
        raise InputError(f"class {class_id} has no subtomograms to score")
    k = int(lab.max()) + 1
    hits = np.bincount(lab[mine], minlength=k)
    sizes = np.bincount(lab, minlength=k)
    prec = hits / np.maximum(sizes, 1)
    best = int(np.lexsort((np.arange(k), -prec, -hits))[0])
    return HeldOutScore(int(class_id), n, best, float(hits[best] / n), float(prec[best]), int(sizes[best]))


def clustering_scores(labels: np.ndarray, classes: np.ndarray, held_out: Mapping[int, str] | None = None) -> dict:
    """Purity, adjusted Rand index, NMI (known-class rows) and per held-out class recall / precision (by name)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    lab, cls = np.asarray(labels, np.int64), np.asarray(classes, np.int64)
    keep = cls >= 0
    out: dict = {"n_known": int(keep.sum()), "purity": purity(lab, cls)}
    if keep.sum() >= 2:
        out["adjusted_rand_index"] = float(adjusted_rand_score(cls[keep], lab[keep]))
        out["normalized_mutual_info"] = float(normalized_mutual_info_score(cls[keep], lab[keep]))
    out["held_out"] = {name: class_score(lab, cls, cid).to_dict() for cid, name in (held_out or {}).items()
                       if (cls == cid).any()}
    return out
