"""The FSC figure (one drawing for the report, ``cryomine fsc`` and averaging outputs)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from cryomine.errors import InputError

__all__ = ["fsc_figure"]


def fsc_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str | None = None,
    resolutions_a: Mapping[str, float] | None = None,
) -> Figure:
    """FSC curves: ``label -> (frequency_a_inv (s,), fsc (s,))``, with the 0.5 and 0.143 thresholds.

    ``resolutions_a``: optional ``label -> resolution (Å)`` marked by a dotted vertical line in the curve's colour
    (skipped where not finite and positive).
    """
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    top = 0.0
    for label, (freq, values) in curves.items():
        f, v = np.asarray(freq, np.float64), np.asarray(values, np.float64)
        if f.shape != v.shape:
            raise InputError(f"FSC curve {label!r}: {f.size} frequencies for {v.size} values")
        (line,) = ax.plot(f, v, marker=".", markersize=3, linewidth=1.4, label=str(label))
        res = (resolutions_a or {}).get(label)
        if res is not None and math.isfinite(res) and res > 0:
            ax.axvline(1.0 / res, color=line.get_color(), linestyle=":", linewidth=0.8)
        top = max(top, float(np.nanmax(f)) if f.size else 0.0)
    for thr, style in ((0.5, "--"), (0.143, ":")):
        ax.axhline(thr, color="grey", linestyle=style, linewidth=1, label=f"FSC = {thr:g}")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlim(0, top or 1)
    ax.set_ylim(-0.2, 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
