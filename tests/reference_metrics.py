"""Reference computations for tests, written independently of ``cryomine.evaluate`` and ``cryomine.pick.evaluate``:
tests recompute the scores a command printed or wrote from its own output files with these and compare.

* :func:`max_matching` / :func:`pick_scores`: picks vs true particles under the SHREC hit rule (a pick hits a true
  particle within ``limit`` of it; one-to-one), by a plain augmenting-path maximum bipartite matching (Kuhn).
* :func:`segmentation_scores`: pooled two-class voxel counts -> pixel accuracy, IoU per class, mIoU.
"""

from __future__ import annotations

import numpy as np
import starfile


def star_xyz(path) -> np.ndarray:
    """``(n, 3)`` ``rlnCoordinateX/Y/Z`` of a particle STAR file (no origins / centred coordinates)."""
    df = starfile.read(path)
    df = df["particles"] if isinstance(df, dict) else df
    return df[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(np.float64)


def max_matching(picks: np.ndarray, truth: np.ndarray, limit: np.ndarray | float) -> int:
    """Size of a maximum one-to-one matching of ``(p, 3)`` picks to ``(t, 3)`` true points, a pair admissible when
    their distance is at most ``limit`` (``(t,)`` per true point, or one value)."""
    picks, truth = np.asarray(picks, np.float64).reshape(-1, 3), np.asarray(truth, np.float64).reshape(-1, 3)
    lim = np.broadcast_to(np.asarray(limit, np.float64), (len(truth),))
    dist = np.linalg.norm(truth[:, None, :] - picks[None, :, :], axis=-1)
    adj = [np.flatnonzero(dist[t] <= lim[t] + 1e-9) for t in range(len(truth))]
    owner = np.full(len(picks), -1)

    def augment(t: int, seen: np.ndarray) -> bool:
        for p in adj[t]:
            if not seen[p]:
                seen[p] = True
                if owner[p] < 0 or augment(owner[p], seen):
                    owner[p] = t
                    return True
        return False

    return sum(augment(t, np.zeros(len(picks), bool)) for t in range(len(truth)))


def pick_scores(tp: int, n_picks: int, n_true: int) -> dict[str, float]:
    """Precision, recall and F1 of ``tp`` hits among ``n_picks`` picks of ``n_true`` particles (0 when empty)."""
    precision = tp / n_picks if n_picks else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * tp / (n_picks + n_true) if n_picks + n_true else 0.0
    return {"tp": tp, "precision": precision, "recall": recall, "f1": f1}


def segmentation_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Pooled over all voxels of ``pred`` / ``true`` (nonzero = target): pixel accuracy, IoU of background and
    target, and their mean."""
    p, t = np.asarray(pred) != 0, np.asarray(true) != 0
    tp, fp, fn, tn = (p & t).sum(), (p & ~t).sum(), (~p & t).sum(), (~p & ~t).sum()
    iou_t = tp / (tp + fp + fn)
    iou_b = tn / (tn + fp + fn)
    return {"pixel_accuracy": float((tp + tn) / p.size), "iou_background": float(iou_b), "iou_target": float(iou_t),
            "miou": float((iou_b + iou_t) / 2)}
