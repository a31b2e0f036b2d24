"""Evaluation metrics in pure numpy: classification (object) accuracy, confusion matrix, per-class accuracy;
segmentation pixel accuracy, IoU per class and mIoU; structure-recovery MSE and correlation.

Segmentation is two-class (1 = target macromolecule, 0 = background). Segmentation metrics are computed from a
2x2 voxel confusion matrix summed over all evaluated subtomograms (dataset-level counts, as in semantic
segmentation benchmarks), so ``IoU_k = TP_k / (TP_k + FP_k + FN_k)`` pools all voxels and
``mIoU = (IoU_background + IoU_target) / 2``.
"""

from __future__ import annotations

import numpy as np

from cryomine.errors import InputError


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts; entry ``[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    ``y_true`` and ``y_pred`` are ``(n,)`` integer labels in ``[0, n_classes)`` (any shape, flattened).
    """
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise InputError(f"confusion matrix: {t.size} true labels but {p.size} predictions")
    if n_classes < 1:
        raise InputError(f"confusion matrix: n_classes must be >= 1, got {n_classes}")
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise InputError(f"confusion matrix: labels must lie in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy_from_confusion(cm: np.ndarray) -> float:
    """Fraction of samples on the diagonal of ``cm`` (NaN if it is empty)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """``(C,)`` per-class accuracy (recall) ``cm[i, i] / sum_j cm[i, j]``; NaN for classes with no samples."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.where(support > 0, support, 1), np.nan)


def object_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Classification accuracy: fraction of ``(n,)`` predictions equal to the true labels (NaN if n = 0)."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise InputError(f"accuracy: {t.size} true labels but {p.size} predictions")
    return float(np.mean(t == p)) if t.size else float("nan")


def segmentation_confusion(pred_mask: np.ndarray, true_mask: np.ndarray) -> np.ndarray:
    """``(2, 2)`` int64 voxel counts ``[true, predicted]`` for binary masks of equal shape (nonzero = target)."""
    p = np.asarray(pred_mask)
    t = np.asarray(true_mask)
    if p.shape != t.shape:
        raise InputError(f"segmentation: predicted mask shape {p.shape} != true mask shape {t.shape}")
    return confusion_matrix((t != 0).astype(np.int64), (p != 0).astype(np.int64), 2)


def pixel_accuracy(seg_cm: np.ndarray) -> float:
    """Fraction of correctly labelled voxels from a ``(2, 2)`` segmentation confusion matrix."""
    return accuracy_from_confusion(seg_cm)


def iou_per_class(seg_cm: np.ndarray) -> np.ndarray:
    """``(K,)`` IoU per class from a ``(K, K)`` confusion matrix: ``TP / (TP + FP + FN)`` (NaN if a class never
    occurs in truth or prediction). For segmentation, index 0 = background, 1 = target."""
    cm = np.asarray(seg_cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(seg_cm: np.ndarray) -> float:
    """Mean of :func:`iou_per_class` over classes that occur (for segmentation: (IoU_bg + IoU_target) / 2)."""
    iou = iou_per_class(seg_cm)
    return float(np.nanmean(iou)) if np.any(np.isfinite(iou)) else float("nan")


def recovery_mse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(n,)`` mean squared error per subtomogram between ``(n, d, h, w)`` recovered and target densities."""
    p, t = _pair(pred, target)
    return ((p - t) ** 2).mean(axis=1)


def recovery_correlation(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(n,)`` Pearson correlation per subtomogram between ``(n, d, h, w)`` recovered and target densities
    (NaN where either is constant)."""
    p, t = _pair(pred, target)
    p = p - p.mean(axis=1, keepdims=True)
    t = t - t.mean(axis=1, keepdims=True)
    denom = np.sqrt((p * p).sum(axis=1) * (t * t).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (p * t).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.ndim < 2:
        raise InputError(f"recovery: need (n, ...) arrays of equal shape, got {p.shape} and {t.shape}")
    return p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
