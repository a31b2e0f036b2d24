"""Entry point: runs the typer app and turns :class:`~cryomine.errors.InputError` into one line + exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from cryomine.cli import average, convert, demo, discover, evaluate, pick, report, simulate, structures, train  # noqa: F401  (registers subcommands)
from cryomine.cli.app import app
from cryomine.errors import InputError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input prints ``error: <file>: <problem>`` on stderr and exits with code 2.

    With ``argv`` given (tests), the exit code is returned instead of exiting the interpreter.
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="cryomine")
        code = 0
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        code = 2
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is kept; rerun with --resume where supported", err=True)
        code = 130
    except SystemExit as exc:  # typer's standalone mode ends with SystemExit (usage errors: code 2)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if argv is None:
        sys.exit(code)
    return code
