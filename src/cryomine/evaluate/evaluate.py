"""Evaluate a trained run on a labelled dataset: classification, segmentation and recovery metrics.

Rows of classes excluded from training (and rows of unknown class) are left out. Inference runs in eval mode
with the run's bf16 setting (automatic = on for CPUs/GPUs with native bf16) and channels_last_3d layout.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryomine.data.loader import ClassMap, SubtomoDataset, open_dataset
from cryomine.devices import default_device, resolve_bf16
from cryomine.errors import InputError
from cryomine.io.subtomo_h5 import read_rows
from cryomine.models import infer
from cryomine.train.metrics import (
    accuracy_from_confusion,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    per_class_accuracy,
    pixel_accuracy,
    recovery_correlation,
    recovery_mse,
)
from cryomine.train.runfolder import (
    check_dataset_compatible,
    dataset_fingerprint,
    load_run,
    read_run_config,
    read_split,
    resolve_run,
)

SPLITS = ("test", "val", "train", "all")


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _fingerprint_matches(header_fp: dict, stored: dict) -> bool:
    return all(header_fp[k] == stored.get(k) for k in ("n_written", "config_sha1", "class_names", "size"))


def evaluation_rows(run_config: dict, run_dir: os.PathLike[str], dataset: os.PathLike[str], split: str,
                    class_map: ClassMap, split_from: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Dataset rows to evaluate: all known rows, or a subset of a ``split.json`` on the dataset it was made for.

    The split is the evaluated run's own, or that of the run ``split_from`` (a folder or ``pretrained:NAME``):
    to compare models on one held-out set. InputError if the dataset is not that run's, or if the evaluated
    run trained or selected its weights on any of the rows (its own train/val rows of the same dataset).
    """
    if split not in SPLITS:
        raise InputError(f"split: must be one of {', '.join(SPLITS)}, got {split!r}")
    if split_from is not None and split == "all":
        raise InputError("--split-from: needs --split test, val or train (all rows need no split)")
    class_id = read_rows(dataset, ("class_id",))["class_id"]
    keep = class_map.remap(class_id) >= 0
    if split == "all":
        return _nonempty(np.flatnonzero(keep), split, dataset)
    header_fp = dataset_fingerprint(dataset, open_dataset(dataset))
    if split_from is None:
        if not _fingerprint_matches(header_fp, run_config["dataset"]):
            raise InputError(f"split {split!r} is only defined on the run's own dataset; use --split all "
                             "(or --split-from RUN for the split of the run that made this dataset's split)", dataset)
        rows = np.asarray(read_split(Path(run_dir))[split], dtype=np.int64)
    else:
        try:
            source = resolve_run(split_from)
            source_config = read_run_config(source)
            if not _fingerprint_matches(header_fp, source_config["dataset"]):
                raise InputError(f"split {split!r} of {split_from} is only defined on that run's dataset", dataset)
            rows = np.asarray(read_split(source)[split], dtype=np.int64)
        except InputError as exc:
            raise InputError(f"--split-from: {exc}") from None
        if _fingerprint_matches(header_fp, run_config["dataset"]):
            own = read_split(Path(run_dir))
            seen = np.intersect1d(rows, np.asarray(own["train"] + own["val"], dtype=np.int64))
            if seen.size:
                raise InputError(f"--split-from: the evaluated run trained or early-stopped on {seen.size} of the "
                                 f"{rows.size} rows of {split_from}'s {split!r} split of this dataset", dataset)
    return _nonempty(rows[keep[rows]] if rows.size else rows, split, dataset)


def _nonempty(rows: np.ndarray, split: str, dataset: os.PathLike[str]) -> np.ndarray:
    if rows.size == 0:
        raise InputError(f"nothing to evaluate: split {split!r} has no subtomograms of the run's classes", dataset)
    return rows


def evaluate_run(run_dir: str | os.PathLike[str], dataset: str | os.PathLike[str], split: str = "test",
                 *, batch_size: int = 64, device: torch.device | None = None,
                 checkpoint: str = "best.pt", split_from: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Metrics of the run's ``checkpoint`` weights (default the best) on ``split`` (``test``, ``val``, ``train`` or ``all``) of ``dataset``.

    ``split`` is the run's own split of its dataset, or with ``split_from`` that of another run (folder or
    ``pretrained:NAME``) on the dataset that run was trained on (:func:`evaluation_rows`).

    Returns a JSON-able dict: ``run``, ``dataset``, ``split``, ``model``, ``n_subtomograms``, ``class_names``,
    ``split_from`` (``None`` or the run whose split was used), ``object_accuracy``, ``per_class_accuracy``
    (name -> accuracy), ``class_support`` (name -> count),
    ``confusion_matrix`` (rows = true, columns = predicted), ``pixel_accuracy``, ``iou_background``,
    ``iou_target``, ``miou``, ``recovery_mse``, ``recovery_correlation`` (means over subtomograms; normalised
    densities). Fields for heads the model lacks are ``None`` (so are undefined values, e.g. a class without
    samples).
    """
    device = device or default_device()
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    header = open_dataset(dataset)
    check_dataset_compatible(run.config, header, dataset)
    cm_info = run.config["classes"]
    class_map = ClassMap(tuple(cm_info["dataset_class_names"]), tuple(cm_info["excluded"]))
    rows = evaluation_rows(run.config, run.run_dir, dataset, split, class_map, split_from)
    mc = run.model_config
    data = SubtomoDataset(dataset, rows, class_map, with_mask=mc.has_seg, with_density=mc.has_rec)
    bf16 = resolve_bf16(run.config["train"].get("bf16"), device)

    n_cls = class_map.n_classes
    cm_cls = np.zeros((n_cls, n_cls), np.int64)
    cm_seg = np.zeros((2, 2), np.int64)
    mse: list[np.ndarray] = []
    corr: list[np.ndarray] = []
    for start in range(0, len(data), batch_size):
        batch = data.batch(np.arange(start, min(start + batch_size, len(data))))
        out = infer(run.model, batch["x"].to(device), bf16=bf16)
        if mc.has_cls:
            cm_cls += confusion_matrix(batch["label"].numpy(), out.logits.argmax(1).cpu().numpy(), n_cls)
        if mc.has_seg:
            cm_seg += confusion_matrix(batch["mask"].numpy(), out.seg_logits.argmax(1).cpu().numpy(), 2)
        if mc.has_rec:
            pred, target = out.recon[:, 0].cpu().numpy(), batch["density"][:, 0].numpy()
            mse.append(recovery_mse(pred, target))
            corr.append(recovery_correlation(pred, target))
    data.close()

    names = class_map.names
    result: dict[str, Any] = {
        "run": str(run.run_dir), "dataset": str(dataset), "split": split,
        "split_from": None if split_from is None else str(split_from), "model": mc.name,
        "n_subtomograms": int(len(rows)), "class_names": names,
        "object_accuracy": None, "per_class_accuracy": None, "class_support": None, "confusion_matrix": None,
        "pixel_accuracy": None, "iou_background": None, "iou_target": None, "miou": None,
        "recovery_mse": None, "recovery_correlation": None,
    }
    if mc.has_cls:
        result.update(
            object_accuracy=_clean(accuracy_from_confusion(cm_cls)),
            per_class_accuracy={n: _clean(a) for n, a in zip(names, per_class_accuracy(cm_cls))},
            class_support={n: int(s) for n, s in zip(names, cm_cls.sum(axis=1))},
            confusion_matrix=cm_cls.tolist(),
        )
    if mc.has_seg:
        iou = iou_per_class(cm_seg)
        result.update(pixel_accuracy=_clean(pixel_accuracy(cm_seg)), iou_background=_clean(iou[0]),
                      iou_target=_clean(iou[1]), miou=_clean(mean_iou(cm_seg)))
    if mc.has_rec:
        result.update(recovery_mse=_clean(float(np.nanmean(np.concatenate(mse)))),
                      recovery_correlation=_clean(float(np.nanmean(np.concatenate(corr)))))
    return result


def format_report(result: dict[str, Any]) -> str:
    """Human-readable text of an :func:`evaluate_run` result (``n/a`` for fields the model lacks)."""

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    of = f" of {result['split_from']}" if result.get("split_from") else ""
    lines = [f"run {result['run']} ({result['model']}) on {result['dataset']}, split {result['split']}{of}: "
             f"{result['n_subtomograms']} subtomograms",
             f"object accuracy:   {num(result['object_accuracy'])}",
             f"pixel accuracy:    {num(result['pixel_accuracy'])}",
             f"mIoU:              {num(result['miou'])} (background {num(result['iou_background'])}, "
             f"target {num(result['iou_target'])})",
             f"recovery MSE:      {num(result['recovery_mse'])}, correlation {num(result['recovery_correlation'])}"]
    if result["per_class_accuracy"] is None:
        lines.append("per-class accuracy: n/a (no classification head)")
        lines.append("confusion matrix:   n/a")
        return "\n".join(lines)
    names = result["class_names"]
    width = max(len(n) for n in names)
    lines.append("per-class accuracy:")
    for n in names:
        lines.append(f"  {n:<{width}}  {num(result['per_class_accuracy'][n])}  (n={result['class_support'][n]})")
    lines.append("confusion matrix (rows = true, columns = predicted, in the order above):")
    cw = max(3, *(len(str(v)) for row in result["confusion_matrix"] for v in row))
    for n, row in zip(names, result["confusion_matrix"]):
        lines.append(f"  {n:<{width}}  " + " ".join(f"{v:>{cw}d}" for v in row))
    return "\n".join(lines)
