"""``cryomine discover``: cluster a dataset by a trained run's features to find structures it was not trained on."""

from __future__ import annotations

from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.discover import DiscoverConfig, discover
from cryomine.io.atomic import check_writable_folder


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


@app.command("discover")
def discover_cmd(
    run: str = typer.Argument(..., help="Run folder (from 'cryomine train') or pretrained:NAME."),
    dataset: Path = typer.Argument(..., help="Subtomogram dataset (.h5); every written row is clustered."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: assignments.csv/.star, tsne.png, cluster_<c>.mrc/.png, summary.json."),
    k: int | None = typer.Option(None, "--k", help="Number of clusters (default: the run's trained class count + 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of k-means and t-SNE."),
    no_baseline: bool = typer.Option(False, "--no-baseline", help="Skip the rotation-invariant baseline clustering."),
    batch_size: int = typer.Option(32, "--batch-size", help="Subtomograms per inference batch."),
) -> None:
    """Cluster DSM-Net features with k-means; write assignments, a t-SNE map, per-cluster averages and scores."""
    check_writable_folder(out)  # before any work
    config = DiscoverConfig(k=k, seed=seed, baseline=not no_baseline, batch_size=batch_size)
    result = discover(run, dataset, out, config, log=typer.echo)
    s = result.summary
    typer.echo(f"{result.n} subtomograms in {result.k} clusters: {out}")
    for method in ("dsmnet", "baseline"):
        part = s.get(method)
        if not part or "purity" not in part:
            continue
        typer.echo(f"{method}: purity {_fmt(part['purity'])}")
        for name, h in part.get("held_out", {}).items():
            f = h.get("fsc") or h.get("fsc_subtomogram_mean") or {}
            typer.echo(f"  held out {name}: cluster {h['cluster']}, recall {_fmt(h['recall'])}, precision "
                       f"{_fmt(h['precision'])}, FSC 0.5 at {_fmt(f.get('resolution_fsc05_a'), '.1f')} Å, "
                       f"FSC sum {_fmt(f.get('fsc_sum'), '.2f')}")
