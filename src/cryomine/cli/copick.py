"""``cryomine copick``: picks between a copick project and RELION STAR files (tomograms need no command: a copick
tomogram is an OME-Zarr image, ``<root>/ExperimentRuns/<run>/VoxelSpacing<v>/<type>.zarr``, which every command
that takes a tomogram reads)."""

from __future__ import annotations

from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.io.atomic import check_writable
from cryomine.io.copick_project import open_project, read_project_picks, write_project_picks  # opening a project imports copick
from cryomine.io.star import read_particles, write_particles

copick_app = typer.Typer(help="Picks in and out of a copick project (needs the optional 'copick' package).", no_args_is_help=True)
app.add_typer(copick_app, name="copick")

CONFIG_HELP = "copick project config (JSON; e.g. a local filesystem project)."
RUN_HELP = "Run (tomogram) of the project."
VOXEL_HELP = "Voxel size (Å) of the STAR's voxel coordinates (a voxel spacing of the project)."


@copick_app.command("export")
def export_cmd(
    picks: Path = typer.Argument(..., help="Picks (RELION STAR, voxel coordinates; rlnClassName = the copick object)."),
    config: Path = typer.Option(..., "--config", help=CONFIG_HELP),
    run: str = typer.Option(..., "--run", help=RUN_HELP),
    voxel_size: float = typer.Option(..., "--voxel-size", help=VOXEL_HELP),
    object_name: str | None = typer.Option(None, "--object", help="copick object for every pick (default: each pick's rlnClassName)."),
    session: str = typer.Option("0", "--session", help="copick session id of the written picks (user id: cryomine)."),
) -> None:
    """Write STAR picks (positions, orientations, scores, classes) into a copick project run."""

    root = open_project(config)
    counts = write_project_picks(root, run, read_particles(picks), voxel_size, object_name, session_id=session)
    typer.echo(f"wrote {sum(counts.values())} picks into run {run} ({', '.join(f'{k} {v}' for k, v in counts.items())}; "
               f"user cryomine, session {session})")  # fmt: skip


@copick_app.command("import")
def import_cmd(
    config: Path = typer.Option(..., "--config", help=CONFIG_HELP),
    run: str = typer.Option(..., "--run", help=RUN_HELP),
    voxel_size: float = typer.Option(..., "--voxel-size", help=VOXEL_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output RELION particles STAR (voxel coordinates at --voxel-size)."),
    object_name: str | None = typer.Option(None, "--object", help="Only this copick object (default: all)."),
    user: str | None = typer.Option(None, "--user", help="Only picks of this copick user id."),
    session: str | None = typer.Option(None, "--session", help="Only picks of this copick session id."),
) -> None:
    """Read a run's copick picks into a RELION STAR (class = object, score, orientation)."""

    check_writable(out)  # before any work
    table = read_project_picks(open_project(config), run, voxel_size, object_name, user, session)
    write_particles(out, table, pixel_size_a=voxel_size)
    typer.echo(f"wrote {out}: {len(table.particles)} picks of run {run}")
