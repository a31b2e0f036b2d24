"""Training configuration: :class:`TrainConfig` (frozen, validated) and the mixed-precision choice.

Loss. DSM-Net's loss is ``L = L_seg + α L_cls + β L_rec`` with the ratio cls : seg : rec = 1 : 10 : 1 (Liu et al.,
BMVC 2018). It is stored here as three explicit weights ``w_cls = 1, w_seg = 10, w_rec = 1`` and applied as
``L = w_cls L_cls + w_seg L_seg + w_rec L_rec`` (the paper's loss times 10; Adam is invariant to that scale up to
its ``eps``). Only the terms of the heads a model has are used; ``L_cls`` is the cross-entropy of the class
logits (with ``label_smoothing``), ``L_seg`` the voxel-wise cross-entropy of the 2-class segmentation logits and
``L_rec`` the MSE between the recovered and the (normalised) clean density.

Recipe. The defaults are cryomine's: AdamW (decoupled weight decay on weights, not on biases or batch-norm
parameters), a linear warm-up over ``warmup_epochs`` then a cosine decay to ``min_lr_fraction * lr`` at
``max_epochs`` (set per optimiser step, a pure function of the step number, so a resumed run follows the same
curve), label smoothing, and the physics-respecting augmentation of :mod:`cryomine.data.augment`.
:meth:`TrainConfig.paper` is the paper's plain protocol (Adam, constant learning rate, no augmentation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryomine.data.augment import AugmentConfig
from cryomine.devices import check_thread_count
from cryomine.errors import InputError, check_int

LOSS_HEADS = ("cls", "seg", "rec")
OPTIMIZERS = ("adamw", "adam")
LR_SCHEDULES = ("cosine", "constant")
#: Values of recipe fields for run configs written before the field existed (what those runs trained with).
LEGACY_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "weight_decay": 0.0, "lr_schedule": "constant",
                                   "warmup_epochs": 0, "min_lr_fraction": 1.0, "label_smoothing": 0.0,
                                   "augment": AugmentConfig.off().to_dict()}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_loss_weights(text: str) -> tuple[float, float, float]:
    """Parse ``"cls:seg:rec"`` (e.g. ``"1:10:1"``) into three floats; InputError if malformed."""
    parts = str(text).split(":")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"loss weights: expected 'cls:seg:rec' with three numbers, e.g. 1:10:1, got {text!r}")
    return values  # type: ignore[return-value]


MAX_BATCH = 4096  # boxes per step: beyond it a step's activations outgrow any machine's memory
MAX_EPOCHS = 100_000

#: TrainConfig fields and the ``cryomine train`` options that set them (errors name the option a user typed)
OPTIONS = {"max_epochs": "--epochs", "batch_size": "--batch-size", "patience": "--patience", "seed": "--seed",
           "weight_decay": "--weight-decay", "label_smoothing": "--label-smoothing", "warmup_epochs": "--warmup-epochs",
           "init_from": "--init-from"}


def _option(field: str) -> str:
    """The CLI option of a TrainConfig field, or the field's name when no option sets it (config files only)."""
    return OPTIONS.get(field, field)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (all validated; bad values raise :class:`InputError` naming the field).

    Attributes:
        w_cls, w_seg, w_rec: loss weights of the classification, segmentation and recovery terms (>= 0; at least
            one used by the model must be > 0).
        lr: peak learning rate (>= 0; 0 is allowed, e.g. to test early stopping).
        betas: Adam betas.
        optimizer: ``"adamw"`` (decoupled weight decay) or ``"adam"`` (the paper's; ``weight_decay`` must be 0).
        weight_decay: AdamW weight decay of the convolution / linear weights (>= 0).
        lr_schedule: ``"cosine"`` (warm-up, then cosine decay to ``min_lr_fraction * lr`` at ``max_epochs``) or
            ``"constant"`` (warm-up, then ``lr``).
        warmup_epochs: linear warm-up from ``lr / steps`` to ``lr`` over this many epochs (0 = none).
        min_lr_fraction: final learning rate of the cosine schedule, as a fraction of ``lr`` (0 .. 1).
        label_smoothing: label smoothing of the classification loss (0 .. 0.5).
        augment: the training augmentation (:class:`cryomine.data.augment.AugmentConfig`).
        batch_size: subtomograms per optimiser step.
        max_epochs: maximum number of epochs.
        patience: early stopping: stop after this many epochs in a row without a lower validation loss.
        seed: seeds the split, the initial weights, dropout and the data order.
        split_fractions: train / val / test fractions (per class, summing to 1).
        exclude_classes: dataset classes (ids or names) left out of training, validation and test.
        max_train: cap on the number of training subtomograms (a seeded, class-balanced subset), for quick runs.
        bf16: bfloat16 autocast. ``None`` = automatic: on CPU when it has native bf16 instructions (AVX512-BF16 or
            AMX; measured 1.7-3x faster training than float32 for DSM-Net at 40^3), except training with inputs of
            side <= 16 (see :func:`bf16_training_safe`); on CUDA when the GPU supports bf16. ``True`` forces it on,
            ``False`` off.
        channels_last: run the 3-D convolutions in ``channels_last_3d`` memory format (oneDNN's preferred layout).
        num_threads: torch intra-op threads (``None`` = torch's default).
        cache_limit_gb: datasets whose needed rows fit in this many GB are kept in memory.
        precise_bn_batches: before each validation, re-estimate batch-norm statistics over this many training
            batches with the current weights (:mod:`cryomine.train.batchnorm`); 0 turns it off.
        init_from: start from the ``best.pt`` weights of this run (a folder or ``pretrained:NAME``) instead of
            random weights: fine-tuning. Its model and classes must be the dataset's; when it was trained on the
            same dataset, its split is kept (its test boxes stay unseen). ``None``: random initial weights.
    """

    w_cls: float = 1.0
    w_seg: float = 10.0
    w_rec: float = 1.0
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    lr_schedule: str = "cosine"
    warmup_epochs: int = 2
    min_lr_fraction: float = 0.01
    label_smoothing: float = 0.1
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    batch_size: int = 64
    max_epochs: int = 100
    patience: int = 15
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    exclude_classes: tuple[str, ...] = ()
    max_train: int | None = None
    bf16: bool | None = None
    channels_last: bool = True
    num_threads: int | None = None
    cache_limit_gb: float = 4.0
    precise_bn_batches: int = 8
    init_from: str | None = None

    def __post_init__(self) -> None:
        for key in ("w_cls", "w_seg", "w_rec"):
            v = getattr(self, key)
            if not _is_num(v) or v < 0:
                raise InputError(f"--loss-weights ({key[2:]}): must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, key, float(v))
        if self.w_cls + self.w_seg + self.w_rec <= 0:
            raise InputError("--loss-weights: at least one of cls:seg:rec must be > 0, got all zero")
        if not _is_num(self.lr) or self.lr < 0:
            raise InputError(f"--lr: must be a finite number >= 0, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(_is_num(b) and 0 <= b < 1 for b in betas):
            raise InputError(f"betas: must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        self._check_recipe()
        for key, low, high in (("batch_size", 1, MAX_BATCH), ("max_epochs", 1, MAX_EPOCHS), ("patience", 1, None),
                               ("seed", 0, None), ("precise_bn_batches", 0, None)):
            check_int(getattr(self, key), _option(key), low, high)
        fr = tuple(self.split_fractions) if isinstance(self.split_fractions, (list, tuple)) else ()
        if (len(fr) != 3 or not all(_is_num(f) and f >= 0 for f in fr) or abs(sum(fr) - 1) > 1e-6
                or fr[0] <= 0 or fr[1] <= 0):
            raise InputError(f"split_fractions: need three numbers >= 0 (train, val > 0) summing to 1, got {self.split_fractions!r}")
        object.__setattr__(self, "split_fractions", tuple(float(f) for f in fr))
        if isinstance(self.exclude_classes, (str, int)) or not isinstance(self.exclude_classes, Sequence):
            raise InputError(f"--exclude-class: must be a list of class ids or names, got {self.exclude_classes!r}")
        object.__setattr__(self, "exclude_classes", tuple(str(c).strip() for c in self.exclude_classes))
        if self.max_train is not None and (not _is_int(self.max_train) or self.max_train < 1):
            raise InputError(f"--max-train: must be an integer >= 1, got {self.max_train!r}")
        if self.bf16 is not None and not isinstance(self.bf16, bool):
            raise InputError(f"bf16: must be true, false or null (automatic), got {self.bf16!r}")
        if not isinstance(self.channels_last, bool):
            raise InputError(f"channels_last: must be true or false, got {self.channels_last!r}")
        if self.num_threads is not None:
            check_thread_count(self.num_threads, "--num-threads")
        if not _is_num(self.cache_limit_gb) or self.cache_limit_gb < 0:
            raise InputError(f"--cache-limit-gb: must be a number >= 0, got {self.cache_limit_gb!r}")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise InputError(f"--init-from: must be a run folder or pretrained:NAME, got {self.init_from!r}")

    def _check_recipe(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer: must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"--lr-schedule: must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        for key, high in (("weight_decay", 10.0), ("min_lr_fraction", 1.0), ("label_smoothing", 0.5)):
            v = getattr(self, key)
            if not _is_num(v) or not 0 <= v <= high:
                raise InputError(f"{_option(key)}: must be a number in [0, {high:g}], got {v!r}")
            object.__setattr__(self, key, float(v))
        if self.optimizer == "adam" and self.weight_decay > 0:
            raise InputError("--weight-decay: needs --optimizer adamw (Adam's L2 penalty is not offered)")
        if not _is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs <= 1000:
            raise InputError(f"--warmup-epochs: must be an integer in 0..1000, got {self.warmup_epochs!r}")
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))
        if not isinstance(self.augment, AugmentConfig):
            raise InputError(f"augment: must be an augmentation config, got {type(self.augment).__name__}")

    @classmethod
    def paper(cls, **changes: Any) -> TrainConfig:
        """The paper's plain protocol: Adam, constant learning rate 1e-3, no label smoothing, no augmentation."""
        return cls(**{"optimizer": "adam", "weight_decay": 0.0, "lr_schedule": "constant", "warmup_epochs": 0,
                      "min_lr_fraction": 1.0, "label_smoothing": 0.0, "augment": AugmentConfig.off(), **changes})

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based, counted over the whole run)."""
        warm = self.warmup_epochs * steps_per_epoch
        if step < warm:
            return self.lr * (step + 1) / warm
        if self.lr_schedule == "constant":
            return self.lr
        total = max(self.max_epochs * steps_per_epoch - warm, 1)
        t = min(max(step - warm, 0) / total, 1.0)
        low = self.lr * self.min_lr_fraction
        return low + (self.lr - low) * 0.5 * (1.0 + math.cos(math.pi * t))

    @property
    def loss_weights(self) -> dict[str, float]:
        """``{"cls": w_cls, "seg": w_seg, "rec": w_rec}``."""
        return {"cls": self.w_cls, "seg": self.w_seg, "rec": self.w_rec}

    def weights_for(self, heads: Sequence[str]) -> dict[str, float]:
        """The weights of ``heads`` (the heads a model has); InputError if none of them is > 0."""
        w = {h: self.loss_weights[h] for h in heads}
        if not any(v > 0 for v in w.values()):
            raise InputError(f"loss weights: all weights of this model's heads ({', '.join(heads)}) are zero")
        return w

    def replace(self, **changes: Any) -> TrainConfig:
        """Validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        for k in ("betas", "split_fractions", "exclude_classes"):
            d[k] = list(d[k])
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build (and validate) a config from :meth:`to_dict` output or a partial mapping of overrides."""
        if not isinstance(data, Mapping):
            raise InputError(f"train config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"train config: unknown key(s) {', '.join(map(repr, unknown))}")
        d = dict(data)
        for k in ("betas", "split_fractions", "exclude_classes"):
            if isinstance(d.get(k), list):
                d[k] = tuple(d[k])
        return cls(**d)




