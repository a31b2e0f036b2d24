"""The tilt range: one validator for every ``(min, max)`` pair of tilt angles (degrees, tilt axis y, beam z)."""

from __future__ import annotations

import math
import os

from cryomine.errors import InputError

__all__ = ["check_tilt_range"]


def check_tilt_range(tilt_min_deg: object, tilt_max_deg: object, source: str | os.PathLike[str] | None = None
                     ) -> tuple[float, float]:
    """``(min, max)`` as floats when both are finite numbers with ``-90 <= min < max <= 90``; else
    :class:`InputError` naming ``source`` (the option or file the range came from)."""
    values = []
    for name, value in (("min", tilt_min_deg), ("max", tilt_max_deg)):
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"tilt {name} must be a number of degrees, got {value!r}", source) from None
        if isinstance(value, bool) or not math.isfinite(v):
            raise InputError(f"tilt {name} must be a finite number of degrees, got {value!r}", source)
        values.append(v)
    lo, hi = values
    if not -90.0 <= lo < hi <= 90.0:
        raise InputError(f"tilt range must satisfy -90 <= min < max <= 90 degrees, got [{lo:g}, {hi:g}]", source)
    return lo, hi
