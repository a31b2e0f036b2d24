"""``cryomine train``: train DSM-Net or a variant on a subtomogram dataset into a run folder.

Thin layer: every option defaults to ``None`` and only options given on the command line override
:class:`cryomine.train.TrainConfig` / :class:`cryomine.models.ModelConfig` defaults (or, with ``--resume``, the
run's stored configuration).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cryomine.cli.app import app
from cryomine.data.augment import AugmentConfig
from cryomine.errors import InputError
from cryomine.io.atomic import check_writable_folder
from cryomine.models import MODEL_NAMES
from cryomine.simulate.variation import parse_range
from cryomine.train import TrainConfig, parse_loss_weights, train_run
from cryomine.train.config import LR_SCHEDULES, OPTIMIZERS
from cryomine.train.picker import PickerTrainConfig, train_picker

_T = TrainConfig()
_A = AugmentConfig()
RECIPES = ("cryomine", "paper")
_RECIPE_KEYS = ("optimizer", "weight_decay", "lr_schedule", "warmup_epochs", "min_lr_fraction", "label_smoothing",
                "augment")


def _onoff(value: bool) -> str:
    return "on" if value else "off"


def _recipe(recipe: str | None) -> dict[str, Any]:
    if recipe is None or recipe == "cryomine":
        return {}
    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r} (known: {', '.join(RECIPES)})", "--recipe")
    paper = TrainConfig.paper().to_dict()
    return {k: paper[k] for k in _RECIPE_KEYS}


@app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="Subtomogram dataset (.h5) written by 'cryomine simulate subtomograms'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (config.json, split.json, best.pt, last.pt, metrics.csv)."),
    model: str | None = typer.Option(None, "--model", "-m", help=f"Network: {'|'.join(MODEL_NAMES)} (default dsmnet)."),
    exclude_class: list[str] | None = typer.Option(None, "--exclude-class", help="Class id or name to leave out (repeatable)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum number of epochs (default 100)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size (default 64)."),
    patience: int | None = typer.Option(None, "--patience", help="Early stopping patience in epochs (default 15)."),
    lr: float | None = typer.Option(None, "--lr", help=f"Peak learning rate (default {_T.lr:g})."),
    recipe: str | None = typer.Option(None, "--recipe", help="cryomine (AdamW, warm-up + cosine, label smoothing, "
                                      "augmentation; the default) or paper (Adam at a constant rate, no augmentation)."),
    optimizer: str | None = typer.Option(None, "--optimizer", help=f"{'|'.join(OPTIMIZERS)} (default {_T.optimizer})."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help=f"AdamW weight decay (default {_T.weight_decay:g})."),
    lr_schedule: str | None = typer.Option(None, "--lr-schedule", help=f"{'|'.join(LR_SCHEDULES)} (default {_T.lr_schedule})."),
    warmup_epochs: int | None = typer.Option(None, "--warmup-epochs", help=f"Linear warm-up epochs (default {_T.warmup_epochs})."),
    label_smoothing: float | None = typer.Option(None, "--label-smoothing", help=f"Classification label smoothing (default {_T.label_smoothing:g})."),
    augment: bool | None = typer.Option(None, "--augment/--no-augment", help="All training augmentation on or off (default on)."),
    flips: bool | None = typer.Option(None, "--flips/--no-flips", help=f"Wedge-preserving flips (default {_onoff(_A.flips)})."),
    fresh_noise: bool | None = typer.Option(None, "--fresh-noise/--no-fresh-noise", help=f"A new noise realisation every time a box is seen (default {_onoff(_A.fresh_noise)})."),
    noise_mix: int | None = typer.Option(None, "--noise-mix", help=f"Stored noise realisations combined per fresh draw (default {_A.noise_mix})."),
    shift: int | None = typer.Option(None, "--shift", help=f"Random shifts of up to N voxels per axis (default {_A.max_shift_vox})."),
    snr_range: str | None = typer.Option(None, "--snr-range", help="LOW,HIGH: train at SNRs drawn log-uniformly in this range (default: the dataset's SNR)."),
    snr_range_fraction: float | None = typer.Option(None, "--snr-range-fraction", help=f"Fraction of boxes drawn from --snr-range, the rest at the dataset's SNR (default {_A.snr_range_fraction:g})."),
    cache_limit_gb: float | None = typer.Option(None, "--cache-limit-gb", help=f"Keep the training data in memory up to this size (default {_T.cache_limit_gb:g})."),
    loss_weights: str | None = typer.Option(None, "--loss-weights", help="cls:seg:rec loss weights (default 1:10:1)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed: split, initial weights, dropout, data order (default 0)."),
    max_train: int | None = typer.Option(None, "--max-train", help="Use at most N training subtomograms (quick runs)."),
    bf16: bool | None = typer.Option(None, "--bf16/--no-bf16", help="bfloat16 autocast (default: on where the CPU/GPU has native bf16)."),
    num_threads: int | None = typer.Option(None, "--num-threads", help="torch CPU threads (default: torch's choice)."),
    base_channels: int | None = typer.Option(None, "--base-channels", help="Model width: channels of the first stage (default 32)."),
    fc_units: int | None = typer.Option(None, "--fc-units", help="Width of the hidden fully connected layer (default 1024)."),
    init_from: str | None = typer.Option(None, "--init-from", help="Start from the best.pt weights of this run folder or pretrained:NAME (fine-tuning; same model and classes; on the same dataset its split is kept)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
) -> None:
    """Train a network on DATASET; writes the run folder --out (resumable with --resume)."""
    check_writable_folder(out)  # before any work
    train: dict[str, Any] = _recipe(recipe)
    train.update({k: v for k, v in {
        "max_epochs": epochs, "batch_size": batch_size, "patience": patience, "lr": lr, "seed": seed,
        "max_train": max_train, "bf16": bf16, "num_threads": num_threads, "optimizer": optimizer,
        "weight_decay": weight_decay, "lr_schedule": lr_schedule, "warmup_epochs": warmup_epochs,
        "label_smoothing": label_smoothing, "cache_limit_gb": cache_limit_gb, "init_from": init_from,
    }.items() if v is not None})
    aug: dict[str, Any] = dict(train.get("augment") or {})
    if augment is not None:
        aug.update(AugmentConfig().to_dict() if augment else AugmentConfig.off().to_dict())
    aug.update({k: v for k, v in {"flips": flips, "fresh_noise": fresh_noise, "noise_mix": noise_mix,
                                  "max_shift_vox": shift, "snr_range_fraction": snr_range_fraction}.items()
                if v is not None})
    if snr_range is not None:
        aug["snr_range"] = parse_range(snr_range, "--snr-range")
    if aug:
        train["augment"] = aug
    if exclude_class:
        train["exclude_classes"] = tuple(exclude_class)
    if loss_weights is not None:
        train["w_cls"], train["w_seg"], train["w_rec"] = parse_loss_weights(loss_weights)
    model_options = {k: v for k, v in {"base_channels": base_channels, "fc_units": fc_units}.items() if v is not None}
    result = train_run(dataset, out, model=model, model_options=model_options, train=train, resume=resume,
                       log=typer.echo)
    how = "early stopping" if result.stopped == "early_stopping" else "the epoch limit"
    typer.echo(f"stopped after epoch {result.epochs} ({how}); best epoch {result.best_epoch} "
               f"(val loss {result.best_val_loss:.4g}); run folder {out}")


_P = PickerTrainConfig()


@app.command("train-picker")
def train_picker_cmd(
    tomograms: list[Path] = typer.Argument(..., help="Training tomograms from 'cryomine simulate tomogram' (NAME.mrc with NAME_classes.mrc "
                                           "and NAME.json beside it); the last one is held out for validation when there are two or more."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (config.json, metrics.csv, best.pt, last.pt, summary.json)."),
    epochs: int | None = typer.Option(None, "--epochs", help=f"Epochs (default {_P.epochs})."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", help=f"Optimiser steps per epoch (default {_P.steps_per_epoch})."),
    batch_size: int | None = typer.Option(None, "--batch-size", help=f"Tiles per step (default {_P.batch})."),
    tile_vox: int | None = typer.Option(None, "--tile-vox", help=f"Training tile edge (voxels; default {_P.tile_vox})."),
    lr: float | None = typer.Option(None, "--lr", help=f"Peak learning rate (default {_P.lr:g})."),
    base_channels: int | None = typer.Option(None, "--base-channels", help=f"Channels at full resolution (default {_P.base_channels})."),
    depth: int | None = typer.Option(None, "--depth", help=f"Down-sampling levels (default {_P.depth})."),
    seed: int | None = typer.Option(None, "--seed", help=f"Seed (default {_P.seed})."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    bf16: bool | None = typer.Option(None, "--bf16/--no-bf16", help="bfloat16 autocast (default: on where the CPU/GPU has native bf16)."),
    init_from: str | None = typer.Option(None, "--init-from", help="Start from the best weights of this picker run folder or "
                                         "pretrained:NAME (e.g. pretrained:picker; same labels and network shape)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch (same tomograms and settings)."),
) -> None:
    """Train the learned picker (a 3-D U-Net labelling every voxel with a class) on simulated tomograms."""
    check_writable_folder(out)  # before any work
    given = {k: v for k, v in dict(epochs=epochs, steps_per_epoch=steps_per_epoch, batch=batch_size, tile_vox=tile_vox, lr=lr,
                                   base_channels=base_channels, depth=depth, seed=seed, device=device, bf16=bf16,
                                   init_from=init_from).items() if v is not None}  # fmt: skip
    summary = train_picker(tomograms, out, PickerTrainConfig(**given), resume=resume)
    typer.echo(f"trained the picker for {summary['epochs_run']} epochs (best validation mIoU {summary['best_val_miou']:.3f}, "
               f"epoch {summary['best_epoch']}): {out}")  # fmt: skip
