"""Training DSM-Net and its variants: :class:`TrainConfig`, the loop (:mod:`cryomine.train.loop`) and run
folders (:func:`train_run`, :func:`load_run`, :func:`resolve_run`; see :mod:`cryomine.train.run` and :mod:`cryomine.train.runfolder`)."""

from cryomine.devices import default_device, resolve_bf16
from cryomine.train.config import TrainConfig, parse_loss_weights
from cryomine.train.loop import load_checkpoint, save_checkpoint
from cryomine.train.run import TrainResult, train_run
from cryomine.train.runfolder import (
    LoadedRun,
    check_dataset_compatible,
    load_run,
    resolve_run,
    shipped_pretrained,
)

__all__ = [
    "LoadedRun",
    "TrainConfig",
    "TrainResult",
    "check_dataset_compatible",
    "default_device",
    "load_checkpoint",
    "load_run",
    "parse_loss_weights",
    "resolve_bf16",
    "resolve_run",
    "save_checkpoint",
    "shipped_pretrained",
    "train_run",
]
