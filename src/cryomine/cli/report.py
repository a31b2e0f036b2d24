"""``cryomine report``: one self-contained HTML report of a demo folder or of any run / output folder."""

from __future__ import annotations

from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.io.atomic import check_writable
from cryomine.report.build import REPORT_NAME, build_report


@app.command("report")
def report_cmd(
    run_or_dir: Path = typer.Argument(..., help="Demo folder, training run, or predict / discover / average output folder."),
    out: Path | None = typer.Option(None, "--out", "-o", help=f"Report file (default: RUN_OR_DIR/{REPORT_NAME})."),
) -> None:
    """Build report.html: figures table, tomogram with picks, learning curves, confusion matrix, examples,
    t-SNE, average and FSC, each section where its inputs exist; images embedded, readable offline."""
    check_writable(out if out is not None else Path(run_or_dir) / REPORT_NAME)  # before any work
    path = build_report(run_or_dir, out)
    typer.echo(f"report: {path}")
