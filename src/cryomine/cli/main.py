"""Entry point: registers every subcommand on the typer app and runs it (:func:`cryomine.cli.app.run_cli`)."""

from __future__ import annotations

from collections.abc import Sequence

import cryomine.cli.average
import cryomine.cli.convert
import cryomine.cli.copick
import cryomine.cli.demo
import cryomine.cli.discover
import cryomine.cli.evaluate
import cryomine.cli.pick
import cryomine.cli.project
import cryomine.cli.report
import cryomine.cli.simulate
import cryomine.cli.structures
import cryomine.cli.train  # noqa: F401  (importing a command module registers its subcommands)
from cryomine.cli.app import app, run_cli

__all__ = ["app", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with every subcommand; bad input prints one line and exits with code 2 (see :func:`run_cli`)."""
    return run_cli(argv)
