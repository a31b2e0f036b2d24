"""Evaluation and prediction: numpy metrics (:mod:`cryomine.evaluate.metrics`), :func:`evaluate_run` and
:func:`predict`.

``evaluate.py`` / ``predict.py`` import :mod:`cryomine.train.run` inside their functions, because
:mod:`cryomine.train` itself uses the metrics here (an import cycle otherwise).
"""

from cryomine.evaluate.metrics import (
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
from cryomine.evaluate.evaluate import evaluate_run, format_report  # noqa: E402  (after metrics: import cycle)
from cryomine.evaluate.predict import PredictResult, predict  # noqa: E402

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
