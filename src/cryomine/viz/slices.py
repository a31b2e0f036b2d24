"""Montages of the three central slices (xy, xz, yz) of volumes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cryomine.io.atomic import atomic_output


def central_slices(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The central (z, y, x)-index slices of a ``(d, h, w)`` volume: xy ``(h, w)``, xz ``(d, w)``, yz ``(d, h)``."""
    d, h, w = volume.shape
    return volume[d // 2], volume[:, h // 2, :], volume[:, :, w // 2]


def save_slice_montage(
    rows: Mapping[str, Sequence[np.ndarray]] | Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    column_titles: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Save a PNG grid: one row per named entry, one column per volume's xy/xz/yz central slice.

    ``rows`` maps a row label to a ``(d, h, w)`` volume or to a sequence of volumes (each contributes its
    central xy slice only, for side-by-side comparisons such as noise-free vs noisy). Each panel is scaled
    to its own 1st-99th percentile range. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, list[np.ndarray]]] = []
    for label, value in rows.items():
        if isinstance(value, np.ndarray) and value.ndim == 3:
            panels.append((label, list(central_slices(value))))
        else:
            panels.append((label, [central_slices(np.asarray(v))[0] for v in value]))
    n_rows = len(panels)
    n_cols = max(len(p) for _, p in panels)
    if column_titles is None and all(isinstance(v, np.ndarray) and v.ndim == 3 for v in rows.values()):
        column_titles = ["xy (central z)", "xz (central y)", "yz (central x)"]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.0 * n_cols + 0.8, 2.0 * n_rows + 0.4), squeeze=False)
    for r, (label, images) in enumerate(panels):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                img = images[c]
                lo, hi = np.percentile(img, [1, 99]) if img.size else (0, 1)
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower")
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0 and column_titles is not None and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return out
