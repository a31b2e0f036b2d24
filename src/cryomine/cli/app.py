"""The root typer application; subcommand modules register themselves on it."""

from __future__ import annotations

import typer

from cryomine import __version__

app = typer.Typer(
    name="cryomine",
    help="Cryo-electron tomography pattern mining: structures, simulation, DSM-Net, picking, discovery, averaging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cryomine {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """cryomine: from atomic structures and tomograms to found, classified and recovered macromolecules."""
