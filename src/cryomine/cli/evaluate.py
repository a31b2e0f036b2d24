"""``cryomine evaluate`` and ``cryomine predict``: use a trained run (a folder or ``pretrained:NAME``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.evaluate.evaluate import SPLITS, evaluate_run, format_report
from cryomine.evaluate.predict import predict
from cryomine.io.atomic import check_writable_folder


@app.command("evaluate")
def evaluate_cmd(
    run: str = typer.Argument(..., help="Run folder (from 'cryomine train') or pretrained:NAME."),
    dataset: Path = typer.Argument(..., help="Labelled subtomogram dataset (.h5)."),
    split: str | None = typer.Option(None, "--split", help=f"Rows to evaluate: {'|'.join(SPLITS)} (default test; test/val/train: of the run's own dataset, or of the --split-from run's)."),
    split_from: str | None = typer.Option(None, "--split-from", help="Use this run's split (folder or pretrained:NAME) of its dataset instead of RUN's own: to compare models on one held-out set; refused if RUN trained on any of its rows."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (null for fields the model lacks)."),
) -> None:
    """Print pixel accuracy, mIoU, object accuracy, per-class accuracy and the confusion matrix."""
    result = evaluate_run(run, dataset, **({"split": split} if split is not None else {}), split_from=split_from)
    typer.echo(json.dumps(result, indent=2) if as_json else format_report(result))


@app.command("predict")
def predict_cmd(
    run: str = typer.Argument(..., help="Run folder (from 'cryomine train') or pretrained:NAME."),
    inputs: list[Path] = typer.Argument(..., help="MRC/.em subtomograms, folders of them, or datasets (.h5)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: predictions.star/.csv, masks/, recovered/."),
    voxel_size: float | None = typer.Option(None, "--voxel-size", help="Voxel size (Å) of MRC/.em inputs; overrides their headers (needed when unset)."),
) -> None:
    """Predict class, segmentation and recovered structure of every input subtomogram."""
    check_writable_folder(out)  # before any work
    result = predict(run, inputs, out, voxel_size_a=voxel_size)
    typer.echo(f"predicted {result.n} subtomograms: {result.star}, {result.csv}")
