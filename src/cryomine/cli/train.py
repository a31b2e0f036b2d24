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
from cryomine.models import MODEL_NAMES
from cryomine.train import parse_loss_weights, train_run


@app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="Subtomogram dataset (.h5) written by 'cryomine simulate subtomograms'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (config.json, split.json, best.pt, last.pt, metrics.csv)."),
    model: str | None = typer.Option(None, "--model", "-m", help=f"Network: {'|'.join(MODEL_NAMES)} (default dsmnet)."),
    exclude_class: list[str] | None = typer.Option(None, "--exclude-class", help="Class id or name to leave out (repeatable)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum number of epochs (default 100)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size (default 64)."),
    patience: int | None = typer.Option(None, "--patience", help="Early stopping patience in epochs (default 15)."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default 1e-3)."),
    loss_weights: str | None = typer.Option(None, "--loss-weights", help="cls:seg:rec loss weights (default 1:10:1)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed: split, initial weights, dropout, data order (default 0)."),
    max_train: int | None = typer.Option(None, "--max-train", help="Use at most N training subtomograms (quick runs)."),
    bf16: bool | None = typer.Option(None, "--bf16/--no-bf16", help="bfloat16 autocast (default: on where the CPU/GPU has native bf16)."),
    num_threads: int | None = typer.Option(None, "--num-threads", help="torch CPU threads (default: torch's choice)."),
    base_channels: int | None = typer.Option(None, "--base-channels", help="Model width: channels of the first stage (default 32)."),
    fc_units: int | None = typer.Option(None, "--fc-units", help="Width of the hidden fully connected layer (default 1024)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
) -> None:
    """Train a network on DATASET; writes the run folder --out (resumable with --resume)."""
    train: dict[str, Any] = {k: v for k, v in {
        "max_epochs": epochs, "batch_size": batch_size, "patience": patience, "lr": lr, "seed": seed,
        "max_train": max_train, "bf16": bf16, "num_threads": num_threads,
    }.items() if v is not None}
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
