"""The training loop, built from small functions: losses, one epoch, validation, checkpoints, RNG state, fit.

* Losses only for the heads the model has (see :mod:`cryomine.train.config`); computed in float32 even under
  bf16 autocast.
* Data order: epoch ``e`` visits the training rows in ``numpy.random.default_rng([seed, e]).permutation``, and
  batch ``i`` of it is augmented with ``default_rng([seed, e, i, AUGMENT_STREAM])``; both depend only on the seed,
  the epoch and the batch number, so a resumed run sees exactly the batches an uninterrupted run would. The
  learning rate of every step is :meth:`TrainConfig.lr_at` of the global step number. Dropout draws from torch's RNG,
  whose state (with numpy's and Python's) is saved in
  every checkpoint and restored on resume.
* Early stopping on the validation loss (the weighted total of the heads' losses, the quantity being optimised;
  it exists for every model variant): training stops once ``patience`` epochs in a row bring no strictly lower
  validation loss. ``best.pt`` holds the weights of the epoch with the lowest validation loss.
* Checkpoints hold only tensors and primitive containers, written atomically and read with
  ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from cryomine.data.loader import SubtomoDataset
from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output
from cryomine.models import ModelConfig, ModelOutput
from cryomine.train.batchnorm import recalibrate_batchnorm
from cryomine.train.config import TrainConfig
from cryomine.train.metrics import accuracy_from_confusion, confusion_matrix, mean_iou
from cryomine.train.runtime import Runtime

CHECKPOINT_FORMAT = "cryomine-checkpoint"
CHECKPOINT_VERSION = 1
AUGMENT_STREAM = 0xA6


def model_heads(config: ModelConfig) -> tuple[str, ...]:
    """The loss heads (``"cls"``, ``"seg"``, ``"rec"``) of a model, in that order."""
    return tuple(h for h, on in (("cls", config.has_cls), ("seg", config.has_seg), ("rec", config.has_rec)) if on)


def loss_terms(out: ModelOutput, batch: Mapping[str, Tensor], heads: Sequence[str],
               label_smoothing: float = 0.0) -> dict[str, Tensor]:
    """Unweighted mean loss per head: ``cls`` cross-entropy of ``logits`` vs ``label`` (label-smoothed), ``seg``
    voxel cross-entropy of ``seg_logits`` vs ``mask``, ``rec`` MSE of ``recon`` vs ``density`` (float32)."""
    terms: dict[str, Tensor] = {}
    if "cls" in heads:
        terms["cls"] = F.cross_entropy(out.logits.float(), batch["label"], label_smoothing=label_smoothing)
    if "seg" in heads:
        terms["seg"] = F.cross_entropy(out.seg_logits.float(), batch["mask"])
    if "rec" in heads:
        terms["rec"] = F.mse_loss(out.recon.float(), batch["density"])
    return terms


def weighted_total(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum_h weights[h] * terms[h]``."""
    return sum(weights[h] * t for h, t in terms.items())  # type: ignore[return-value]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order (positions ``0 .. n-1``) in which epoch ``epoch`` (1-based) visits ``n`` training items."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def augment_rng(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The generator that augments batch ``batch`` (0-based) of epoch ``epoch``."""
    return np.random.default_rng([seed, epoch, batch, AUGMENT_STREAM])


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, or AdamW with weight decay on the weights of convolutions / linear layers only (tensors of rank
    >= 2), not on biases or batch-norm parameters."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass(frozen=True)
class StepPlan:
    """What varies per step: the epoch (1-based), the recipe (seed, learning rate per step, label smoothing) and
    the number of optimiser steps per epoch."""

    epoch: int
    config: TrainConfig
    steps_per_epoch: int

    def lr(self, batch: int) -> float:
        """Learning rate of batch ``batch`` (0-based) of this epoch."""
        return self.config.lr_at((self.epoch - 1) * self.steps_per_epoch + batch, self.steps_per_epoch)


def _check_finite(loss: Tensor, desc: str, step: int) -> None:
    """Stop a diverged training before its weights are stepped: :class:`InputError` saying where, and that
    the checkpoints of earlier epochs (written only after an epoch ends) are kept."""
    if not math.isfinite(float(loss.detach())):
        raise InputError(f"training diverged ({desc}, step {step + 1}: loss {float(loss.detach())}); the checkpoints "
                         "of finished epochs are kept; train again into a new --out with a lower --lr")


def _batches(n: int, batch_size: int, order: np.ndarray | None = None) -> list[np.ndarray]:
    idx = np.arange(n) if order is None else order
    return [idx[i:i + batch_size] for i in range(0, n, batch_size)]


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: SubtomoDataset,
    order: np.ndarray,
    *,
    batch_size: int,
    heads: Sequence[str],
    weights: Mapping[str, float],
    runtime: Runtime,
    plan: StepPlan | None = None,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``data`` in ``order``; returns sample-weighted mean losses ``{"loss", "loss_<head>"}``.

    With a ``plan``, each step gets its learning rate and its augmentation generator from it; without, the
    optimiser's learning rate is kept and nothing is augmented.
    """
    model.train()
    sums: dict[str, float] = {}
    n_seen = 0
    batches = _batches(len(data), batch_size, order)
    smoothing = plan.config.label_smoothing if plan is not None else 0.0
    with tqdm(total=len(batches), desc=desc, unit="batch", leave=False, disable=None, dynamic_ncols=True) as bar:
        for i, pos in enumerate(batches):
            rng = augment_rng(plan.config.seed, plan.epoch, i) if plan is not None else None
            batch = runtime.to_device(data.batch(pos, rng))
            if plan is not None:
                set_lr(optimizer, plan.lr(i))
            with runtime.autocast():
                out = model(batch["x"])
            terms = loss_terms(out, batch, heads, smoothing)
            loss = weighted_total(terms, weights)
            _check_finite(loss, desc, i)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            b = len(pos)
            n_seen += b
            for key, value in (("loss", loss), *((f"loss_{h}", t) for h, t in terms.items())):
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * b
            bar.set_postfix(loss=f"{sums['loss'] / n_seen:.4g}")
            bar.update(1)
    return {k: v / max(n_seen, 1) for k, v in sums.items()}


@torch.no_grad()
def validate(
    model: nn.Module,
    data: SubtomoDataset,
    *,
    batch_size: int,
    heads: Sequence[str],
    weights: Mapping[str, float],
    runtime: Runtime,
    n_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, float]:
    """Eval-mode pass over ``data``: mean losses, and ``accuracy`` (cls) / ``miou`` (seg) where the model has them."""
    model.eval()
    sums: dict[str, float] = {}
    cm_cls = np.zeros((n_classes, n_classes), np.int64) if "cls" in heads and n_classes else None
    cm_seg = np.zeros((2, 2), np.int64) if "seg" in heads else None
    n = 0
    for pos in _batches(len(data), batch_size):
        batch = runtime.to_device(data.batch(pos))
        with runtime.autocast():
            out = model(batch["x"])
        terms = loss_terms(out, batch, heads, label_smoothing)
        loss = weighted_total(terms, weights)
        b = len(pos)
        n += b
        for key, value in (("loss", loss), *((f"loss_{h}", t) for h, t in terms.items())):
            sums[key] = sums.get(key, 0.0) + float(value) * b
        if cm_cls is not None:
            cm_cls += confusion_matrix(batch["label"].cpu().numpy(), out.logits.argmax(1).cpu().numpy(), n_classes)
        if cm_seg is not None:
            pred = out.seg_logits.argmax(1).cpu().numpy()
            cm_seg += confusion_matrix(batch["mask"].cpu().numpy(), pred, 2)
    result = {k: v / max(n, 1) for k, v in sums.items()}
    if cm_cls is not None:
        result["accuracy"] = accuracy_from_confusion(cm_cls)
    if cm_seg is not None:
        result["miou"] = mean_iou(cm_seg)
    return result


# ---------------------------------------------------------------- RNG state and checkpoints


def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy (global) and Python RNG states, as tensors and primitive containers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(py_version), "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (tensors and primitive containers only) atomically as a checkpoint file."""
    data = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    p = Path(path)
    with atomic_output(p) as tmp:
        torch.save(data, tmp)
    return p


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; InputError if missing, truncated, corrupt or foreign."""
    p = Path(path)
    if not p.is_file():
        raise InputError("checkpoint not found", p)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, unpickling error, ... -> one line
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InputError(f"checkpoint is truncated or corrupt ({msg})", p) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise InputError("not a cryomine checkpoint", p)
    if data.get("format_version") != CHECKPOINT_VERSION:
        raise InputError(f"unsupported checkpoint version {data.get('format_version')!r}", p)
    state = data.get("model_state")
    if isinstance(state, dict):
        bad = [k for k, v in state.items() if isinstance(v, Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise InputError(f"weights hold NaN or infinite values ({len(bad)} tensor(s), e.g. {bad[0]}): a diverged "
                             "training; use another checkpoint", p)
    return data


def load_model_state(model: nn.Module, state: Mapping[str, Tensor], source: str | os.PathLike[str]) -> None:
    """Load weights into ``model``; InputError (naming ``source``) if they do not fit the architecture."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise InputError(f"checkpoint weights do not match the model in config.json ({msg})", source) from None


# ---------------------------------------------------------------- fit


@dataclass
class StopState:
    """Early-stopping bookkeeping: best validation loss so far and its epoch (0 = none yet)."""

    best_score: float = math.inf
    best_epoch: int = 0

    def update(self, epoch: int, score: float) -> bool:
        """Record ``score`` of ``epoch``; True if it is a new best (strictly lower; NaN never is)."""
        if score < self.best_score:
            self.best_score, self.best_epoch = float(score), epoch
            return True
        return False

    def should_stop(self, epoch: int, patience: int) -> bool:
        """Whether ``patience`` epochs in a row since the best brought no improvement."""
        return epoch - self.best_epoch >= patience


EpochCallback = Callable[[int, dict[str, float], bool, StopState], None]


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: SubtomoDataset,
    val_data: SubtomoDataset,
    *,
    config: TrainConfig,
    start_epoch: int,
    heads: Sequence[str],
    weights: Mapping[str, float],
    runtime: Runtime,
    stop: StopState,
    n_classes: int | None,
    on_epoch_end: EpochCallback,
) -> str:
    """Train epochs ``start_epoch + 1 .. config.max_epochs``; returns why it stopped (``"early_stopping"`` or
    ``"max_epochs"``). ``on_epoch_end(epoch, stats, is_best, stop)`` runs after every epoch (checkpoints, logs)."""
    if start_epoch > 0 and stop.should_stop(start_epoch, config.patience):
        return "early_stopping"
    steps = math.ceil(len(train_data) / config.batch_size)
    for epoch in range(start_epoch + 1, config.max_epochs + 1):
        t0 = time.perf_counter()
        plan = StepPlan(epoch, config, steps)
        train_stats = train_one_epoch(model, optimizer, train_data, epoch_order(len(train_data), config.seed, epoch),
                                      batch_size=config.batch_size, heads=heads, weights=weights, runtime=runtime,
                                      plan=plan, desc=f"epoch {epoch}/{config.max_epochs}")
        if config.precise_bn_batches:
            recalibrate_batchnorm(model, train_data, batch_size=config.batch_size,
                                  n_batches=config.precise_bn_batches, runtime=runtime, seed=config.seed + epoch)
        val_stats = validate(model, val_data, batch_size=config.batch_size, heads=heads, weights=weights,
                             runtime=runtime, n_classes=n_classes, label_smoothing=config.label_smoothing)
        stats = {**{f"train_{k}": v for k, v in train_stats.items()}, **{f"val_{k}": v for k, v in val_stats.items()},
                 "lr": plan.lr(steps - 1), "time_s": time.perf_counter() - t0}
        is_best = stop.update(epoch, val_stats["loss"])
        on_epoch_end(epoch, stats, is_best, stop)
        if stop.should_stop(epoch, config.patience):
            return "early_stopping"
    return "max_epochs"
