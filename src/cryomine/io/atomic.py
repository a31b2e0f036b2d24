"""Write-then-rename, so a failed or interrupted write never leaves a partial output file."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cryomine.errors import InputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_ancestor(final: Path) -> None:
    """The nearest existing folder above ``final`` must be a folder this process may create entries in."""
    parent = next((a for a in final.parents if a.exists()), None)
    if parent is None:
        return
    if not parent.is_dir():
        raise InputError(f"cannot write here: {parent} is a file, not a folder", final)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here: {parent} is not writable", final)


def check_writable(*paths: str | os.PathLike[str]) -> None:
    """Refuse, before any work, output files that :func:`atomic_output` would refuse at the end: a path that is
    a folder, one below a file, or one in a folder that cannot be written. Creates nothing."""
    for path in paths:
        final = Path(path)
        if final.is_dir():
            raise InputError("is a folder, not a file: choose a file name", final)
        if final.exists() and not final.is_file():
            raise InputError("is not a regular file: choose a file name", final)
        _check_ancestor(final)


def check_writable_folder(*paths: str | os.PathLike[str]) -> None:
    """Refuse, before any work, output folders that could not be filled: a path that is a file, one below a
    file, an existing folder that cannot be written, or one that cannot be created. Creates nothing."""
    for path in paths:
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise InputError("is a file, not a folder: choose another --out", folder)
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                raise InputError("folder is not writable", folder)
        else:
            _check_ancestor(folder)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file keeps the final suffix (some writers, e.g. starfile, look at it). On any exception
    the temporary file is removed and ``path`` is left untouched; temporary files of ``path`` left by a killed
    run (nothing could remove them) are removed first.
    """
    final = Path(path)
    check_writable(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{glob.escape(final.stem)}.*.tmp{glob.escape(final.suffix)}"):
            stale.unlink(missing_ok=True)  # left by a run that was killed while writing this output
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".tmp" + final.suffix, dir=final.parent)
    except OSError as exc:  # a read-only folder, a file where a folder should be (made meanwhile), ...
        check_writable(final)
        raise InputError(f"cannot write here ({exc.strerror or exc})", final) from None
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike[str], data: object, default: Callable[[object], object] | None = None) -> Path:
    """Write ``data`` as indented JSON ending in a newline, atomically (:func:`atomic_output`); ``default`` as in
    :func:`json.dumps` (e.g. ``float`` for numpy scalars). Returns the path."""
    final = Path(path)
    with atomic_output(final) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=default) + "\n")
    return final
