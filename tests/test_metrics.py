"""Evaluation metrics against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from cryomine.errors import InputError
from cryomine.train.metrics import (
    accuracy_from_confusion,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    object_accuracy,
    per_class_accuracy,
    pixel_accuracy,
    recovery_correlation,
    recovery_mse,
    segmentation_confusion,
)


def test_segmentation_metrics_on_a_2x2x2_mask_pair() -> None:
    true = np.zeros((2, 2, 2), np.uint8)
    true[0, 0, :] = 1  # two target voxels
    pred = np.zeros((2, 2, 2), np.uint8)
    pred[0, :, 0] = 1  # two predicted, one of them right
    cm = segmentation_confusion(pred, true)
    # [true, pred]: bg->bg 5, bg->target 1, target->bg 1, target->target 1
    assert cm.tolist() == [[5, 1], [1, 1]]
    assert pixel_accuracy(cm) == pytest.approx(6 / 8)
    iou = iou_per_class(cm)
    assert iou[1] == pytest.approx(1 / 3)  # TP 1 / (TP 1 + FP 1 + FN 1)
    assert iou[0] == pytest.approx(5 / 7)  # TP 5 / (5 + 1 + 1)
    assert mean_iou(cm) == pytest.approx((1 / 3 + 5 / 7) / 2)


def test_perfect_and_disjoint_segmentation() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((3, 4, 5)) > 0.5
    assert mean_iou(segmentation_confusion(mask, mask)) == pytest.approx(1.0)
    assert iou_per_class(segmentation_confusion(~mask, mask)).tolist() == [0.0, 0.0]
    # a class absent from both truth and prediction is NaN and left out of the mean
    empty = np.zeros((2, 2, 2), bool)
    assert np.isnan(iou_per_class(segmentation_confusion(empty, empty))[1])
    assert mean_iou(segmentation_confusion(empty, empty)) == pytest.approx(1.0)


def test_three_class_confusion_matrix() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert accuracy_from_confusion(cm) == pytest.approx(6 / 9)
    assert object_accuracy(y_true, y_pred) == pytest.approx(6 / 9)
    np.testing.assert_allclose(per_class_accuracy(cm), [2 / 3, 1 / 2, 3 / 4])


def test_class_without_samples_has_nan_accuracy() -> None:
    cm = confusion_matrix([0, 0, 2], [0, 2, 2], 3)
    acc = per_class_accuracy(cm)
    assert acc[0] == pytest.approx(0.5) and np.isnan(acc[1]) and acc[2] == pytest.approx(1.0)


def test_bad_labels_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(InputError, match="predictions"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(InputError, match="shape"):
        segmentation_confusion(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def test_recovery_mse_and_correlation() -> None:
    rng = np.random.default_rng(1)
    target = rng.standard_normal((3, 4, 5, 6))
    pred = np.stack([2 * target[0] + 1, -target[1], target[2] + 0.5])
    np.testing.assert_allclose(recovery_correlation(pred, target), [1.0, -1.0, 1.0], atol=1e-12)
    mse = recovery_mse(pred, target)
    assert mse[2] == pytest.approx(0.25)
    assert mse[1] == pytest.approx(np.mean((2 * target[1]) ** 2))
    assert np.isnan(recovery_correlation(np.ones((1, 2, 2, 2)), target[:1, :2, :2, :2])[0])
