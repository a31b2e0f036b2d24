"""Write a matplotlib figure to a PNG file atomically."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from cryomine.io.atomic import atomic_output

__all__ = ["save_png"]


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Save ``fig`` as a PNG at ``path`` (written to a temporary file, then renamed); returns the path."""
    out = Path(path)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out
