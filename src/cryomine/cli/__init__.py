"""The ``cryomine`` command line: a thin typer layer over the package's config objects and functions."""

from cryomine.cli.main import app, main

__all__ = ["app", "main"]
