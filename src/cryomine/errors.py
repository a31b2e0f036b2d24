"""The one exception type for bad user input.

Every problem a user can cause (a missing or corrupt file, NaN voxels, a wrong shape, a nonsense parameter, an
unknown structure id) is raised as :class:`InputError` with a one-line message that names the file or parameter
and the problem. The CLI prints that line and exits with code 2, without a traceback.
"""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad user input: the message is one line naming the file/parameter and the problem."""

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        text = f"{path}: {message}" if path is not None else message
        super().__init__(" ".join(str(text).split()))  # always one line


class CryomineWarning(UserWarning):
    """Something a user should know but that does not stop the step (an assumed value, a suspicious input); the
    CLI prints each as one ``warning: ...`` line."""


def require(condition: bool, message: str, path: str | PathLike[str] | None = None) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message, path)


def check_int(value: object, option: str, low: int = 0, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (bools and non-integers refused); :class:`InputError` naming
    ``option`` otherwise. The one integer validator of the configuration objects."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"must be an integer {span}, got {value!r}", option)
    return value
