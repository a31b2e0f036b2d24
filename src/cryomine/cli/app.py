"""The root typer application (subcommand modules register themselves on it) and :func:`run_cli`."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence

import typer
from typer.exceptions import TyperException

from cryomine import __version__
from cryomine.errors import CryomineWarning, InputError

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


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show each warning cryomine raises (assumed metadata, protein-dark inputs, ...) as one ``warning: ...`` line
    on stderr, every time; other libraries' warnings keep Python's default display."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", CryomineWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # warnings.showwarning's signature
            if issubclass(category, CryomineWarning):
                typer.echo(f"warning: {message}", err=True)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the app; bad input prints ``error: <file>: <problem>`` on stderr and exits with code 2.

    With ``argv`` given (tests, the demo), the exit code is returned instead of exiting the interpreter. The
    subcommands are those registered so far (:mod:`cryomine.cli.main` registers them all).
    """
    try:
        with _warnings_as_lines():
            rv = app(args=list(argv) if argv is not None else None, prog_name="cryomine", standalone_mode=False)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        code = 2
    except TyperException as exc:  # typer's own checks (bad option values, unknown options, ...): one line too
        ctx = getattr(exc, "ctx", None)
        path = getattr(ctx, "command_path", "") or ""
        where = f" (see '{path} -h')" if " " in path else ""
        message = " ".join(exc.format_message().split())
        if message:  # empty when typer has just shown the help (a command group given no subcommand)
            typer.echo(f"error: {message}{where}", err=True)
        code = exc.exit_code if exc.exit_code else 2
    except OSError as exc:  # the environment: read-only folder, a file where a folder should be, disk full, ...
        where = exc.filename if exc.filename is not None else "output"
        what = exc.strerror or " ".join(str(exc).split())
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and where != "output":
            what = f"{what} (a file stands where a folder is needed)"
        typer.echo(f"error: {where}: {what}", err=True)
        code = 2
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except typer.Exit as exc:  # typer turns Ctrl-C into Exit(130)
        code = exc.exit_code
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if code == 130:
        typer.echo("interrupted: finished work is kept; rerun with --resume where supported", err=True)
    if argv is None:
        sys.exit(code)
    return code
