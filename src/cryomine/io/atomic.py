"""Write-then-rename, so a failed or interrupted write never leaves a partial output file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryomine.errors import InputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(*paths: str | os.PathLike[str]) -> None:
    """Refuse, before any work, outputs that :func:`atomic_output` would refuse at the end: a path that is a
    folder, or one below a file. Creates nothing."""
    for path in paths:
        final = Path(path)
        if final.is_dir():
            raise InputError("is a folder, not a file: choose a file name", final)
        parent = next((a for a in final.parents if a.exists()), None)
        if parent is not None and not parent.is_dir():
            raise InputError(f"cannot write here: {parent} is a file, not a folder", final)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file keeps the final suffix (some writers, e.g. starfile, look at it). On any exception
    the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    check_writable(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
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
