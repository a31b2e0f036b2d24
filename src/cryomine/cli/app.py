"""The root typer application (subcommand modules register themselves on it) and :func:`run_cli`."""

from __future__ import annotations

import contextlib
import math
import re
import sys
import typing
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


_UNIT_SUFFIXES = ("_deg", "_kv", "_mm", "_um", "_a", "_vox", "_gb")
_FIELD = re.compile(r"(?<![/\w.-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w./-])")
_LEADING_WORD = re.compile(r"^([a-z]+)(?= must|: )")


#: float options for which an infinite value means something (``--snr inf``: noise-free)
INFINITE_ALLOWED = frozenset({"--snr"})


def _subcommand(argv: Sequence[str]) -> tuple[object | None, list[str]]:
    """The subcommand ``argv`` invokes and the tokens after its name (None when ``argv`` names none)."""
    cmd, tokens = typer.main.get_command(app), list(argv)
    while getattr(cmd, "commands", None):
        name = next((t for t in tokens if not t.startswith("-")), None)
        if name not in cmd.commands:
            return None, []
        cmd, tokens = cmd.commands[name], tokens[tokens.index(name) + 1:]
    return cmd, tokens


def _is_float(param: object) -> bool:
    """Whether a typer parameter takes float values (recent typer describes its annotation; older versions keep
    click's type)."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is not None:
        return float in (annotation, *typing.get_args(annotation))
    return getattr(getattr(param, "type", None), "name", "") == "float"


def _check_finite_floats(argv: Sequence[str]) -> None:
    """Every number given to a float option must be finite (NaN and inf are never a voxel size, an angle or a
    voltage), whether or not the chosen path uses the option: checked here, where numbers enter, for every
    command at once (ranges are the configuration objects' to check)."""
    cmd, tokens = _subcommand(argv)
    floats = {o for p in getattr(cmd, "params", []) if _is_float(p) for o in (getattr(p, "opts", None) or []) if o.startswith("-")}
    for i, token in enumerate(tokens):
        opt, eq, value = token.partition("=")
        if opt not in floats or opt in INFINITE_ALLOWED:
            continue
        value = value if eq else (tokens[i + 1] if i + 1 < len(tokens) else "")
        try:
            number = float(value)
        except ValueError:
            continue  # typer says it is not a number
        if not math.isfinite(number):
            raise InputError(f"must be a finite number, got {value}", opt)


def _command_options(argv: Sequence[str]) -> dict[str, str]:
    """``{field-like name: --option}`` of the subcommand ``argv`` invokes (``voxel_size`` -> ``--voxel-size``)."""
    cmd, _ = _subcommand(argv)
    names: dict[str, str] = {}
    for p in getattr(cmd, "params", []):
        long = next((o for o in (getattr(p, "opts", None) or []) if o.startswith("--")), None)
        if long:
            names[p.name] = names[long[2:].replace("-", "_")] = long
    return names


def _name_options(message: str, argv: Sequence[str]) -> str:
    """Replace the internal field names in an error line (``voltage_kv``, ``max_shift_vox``) by the options a
    user typed (``--voltage``, ``--shift``): the configuration objects name their fields, the CLI its options."""
    options = _command_options(argv)

    def option(name: str) -> str | None:
        stems = [name] + [name[: -len(s)] for s in _UNIT_SUFFIXES if name.endswith(s)]
        stems += [s[4:] for s in list(stems) if s.startswith("max_")]
        return next((options[s] for s in stems if s in options), None)

    message = _FIELD.sub(lambda m: option(m.group(1)) or m.group(1), message)
    return _LEADING_WORD.sub(lambda m: option(m.group(1)) or m.group(1), message)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the app; bad input prints ``error: <file>: <problem>`` on stderr and exits with code 2.

    With ``argv`` given (tests, the demo), the exit code is returned instead of exiting the interpreter. The
    subcommands are those registered so far (:mod:`cryomine.cli.main` registers them all).
    """
    try:
        _check_finite_floats(list(argv) if argv is not None else sys.argv[1:])
        with _warnings_as_lines():
            rv = app(args=list(argv) if argv is not None else None, prog_name="cryomine", standalone_mode=False)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except InputError as exc:
        typer.echo(f"error: {_name_options(str(exc), list(argv) if argv is not None else sys.argv[1:])}", err=True)
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
