"""Evaluation and prediction of trained runs (:func:`evaluate_run`, :func:`predict`), FSC, robustness.

The numpy metrics live in :mod:`cryomine.train.metrics` (training reports them every epoch) and are re-exported
here; this package sits above :mod:`cryomine.train` and reads run folders through :mod:`cryomine.train.runfolder`.
"""

from cryomine.evaluate.evaluate import evaluate_run, format_report
from cryomine.evaluate.predict import PredictResult, predict
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

__all__ = [
    "PredictResult",
    "accuracy_from_confusion",
    "confusion_matrix",
    "evaluate_run",
    "format_report",
    "iou_per_class",
    "mean_iou",
    "object_accuracy",
    "per_class_accuracy",
    "pixel_accuracy",
    "predict",
    "recovery_correlation",
    "recovery_mse",
    "segmentation_confusion",
]
