"""``cryomine demo``: the README's main job."""

from __future__ import annotations

from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.demo import DemoConfig, run_demo


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder for every step's files."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty output folder."),
    seed: int = typer.Option(DemoConfig.seed, "--seed", help="Random seed."),
) -> None:
    """Run cryomine's main job on bundled data and write every output into OUT."""
    summary = run_demo(out, DemoConfig(seed=seed), force=force)
    typer.echo(f"demo finished: {len(summary['outputs'])} files in {out}/ (open {out}/structures.png)")
