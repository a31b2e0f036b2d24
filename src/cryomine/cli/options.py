"""Options shared by several commands, declared once from the objects they set (names and help texts come
from :data:`cryomine.acquisition.FLAGS`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cryomine.acquisition import FLAGS, Acquisition


def acq_option(field: str) -> Any:
    """The typer option of an :class:`~cryomine.acquisition.Acquisition` field (default None = not given)."""
    flag, text = FLAGS[field]
    return typer.Option(None, flag, help=text)


def acquisition_files_option() -> Any:
    flag, text = FLAGS["acquisition"]
    return typer.Option(None, flag, help=text + " Repeatable.")


def tomo_name_option() -> Any:
    return typer.Option(None, "--tomo-name", help="Name of the tomogram in STAR/metadata files (default: the tomogram file's stem).")


def overrides(invert: bool | None = None, **values: Any) -> Acquisition:
    """What the flags say, as an :class:`Acquisition` (``None`` values = not given); ``--invert/--no-invert``
    sets the polarity (dark / bright)."""
    if invert is not None:
        values["polarity"] = "dark" if invert else "bright"
    return Acquisition().updated("flags", **values)


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (not None): what overrides a config object's defaults."""
    return {k: v for k, v in values.items() if v is not None}


def paths(values: list[Path] | None) -> tuple[Path, ...]:
    return tuple(values or ())
