"""Figures of ``cryomine discover``: the t-SNE map (by cluster, by true class) and per-cluster slice montages."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cryomine.io.atomic import atomic_output
from cryomine.viz import save_slice_montage


def _colours(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_tsne(
    path: str | os.PathLike[str],
    coords: np.ndarray,
    clusters: np.ndarray,
    classes: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    held_out: Sequence[int] = (),
    title: str | None = None,
) -> Path:
    """Save a t-SNE PNG: ``coords`` ``(m, 2)`` coloured by ``clusters`` ``(m,)`` and, when ``classes`` ``(m,)`` (true
    class ids, -1 unknown) are given, a second panel by true class with the ``held_out`` class ids drawn as large
    black-edged stars on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 if classes is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 5.4), squeeze=False)
    try:
        ax = axes[0][0]
        k = int(clusters.max()) + 1
        for c, colour in zip(range(k), _colours(k)):
            sel = clusters == c
            ax.scatter(coords[sel, 0], coords[sel, 1], s=6, color=colour, label=f"{c} ({int(sel.sum())})", linewidths=0)
        ax.set_title("k-means clusters", fontsize=9)
        ax.legend(fontsize=6, markerscale=2, ncol=2 if k > 12 else 1, loc="best", title="cluster (n)", title_fontsize=6)
        if classes is not None:
            ax = axes[0][1]
            present = [int(c) for c in np.unique(classes) if c >= 0]
            colours = dict(zip(present, _colours(len(present))))
            unknown = classes < 0
            if unknown.any():
                ax.scatter(coords[unknown, 0], coords[unknown, 1], s=4, color="lightgrey", label="unknown", linewidths=0)
            for c in present:
                if c in held_out:
                    continue
                sel = classes == c
                name = class_names[c] if c < len(class_names) else str(c)
                ax.scatter(coords[sel, 0], coords[sel, 1], s=6, color=colours[c], label=name, linewidths=0, alpha=0.7)
            for c in present:
                if c not in held_out:
                    continue
                sel = classes == c
                name = class_names[c] if c < len(class_names) else str(c)
                ax.scatter(coords[sel, 0], coords[sel, 1], s=40, marker="*", color=colours[c], edgecolors="black",
                           linewidths=0.6, label=f"{name} (held out)", zorder=3)
            ax.set_title("true class (stars: held out of training)", fontsize=9)
            ax.legend(fontsize=6, markerscale=1.5, ncol=2 if len(present) > 12 else 1, loc="best")
        for row in axes:
            for a in row:
                a.set_xticks([])
                a.set_yticks([])
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        out = Path(path)
        with atomic_output(out) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return out


def save_cluster_montage(path: str | os.PathLike[str], volumes: Mapping[str, np.ndarray], title: str) -> Path:
    """Central xy/xz/yz slices of each named ``(d, h, w)`` volume (cluster mean, truth, ...) as one PNG."""
    return save_slice_montage(dict(volumes), path, title=title)
