"""Faults for tests: a function that is interrupted part-way, as a run killed by Ctrl-C would be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def interrupted_on_call(fn: Callable[..., Any], n: int, exc: type[BaseException] = KeyboardInterrupt) -> Callable[..., Any]:
    """``fn``, except that its ``n``-th call raises ``exc`` (calls before it go through)."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise exc
        return fn(*args, **kwargs)

    return wrapper
