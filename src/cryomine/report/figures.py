"""The report's matplotlib figures: a tomogram with picks, a confusion matrix, FSC and learning curves, montages.

Each function returns a :class:`matplotlib.figure.Figure` made without pyplot (no global state, no display
backend); :func:`cryomine.report.html.figure_data_uri` turns it into an embedded PNG. Slice montages reuse
:func:`cryomine.viz.save_slice_montage` and come back as PNG bytes.

Tomogram panels: the central xy slice (z = d // 2) and the central xz slice (y = h // 2) of a ``(d, h, w)``
tomogram, drawn with ``origin="lower"`` so x runs right and y (or z) up. A particle of radius ``r`` voxels at
distance ``t`` from a slice cuts it in a disc of radius ``sqrt(r² - t²)``: picks are drawn as circles of that radius
(for ``t < r``), truth as ``+`` markers (for ``t < r``), both coloured by class.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

from cryomine.errors import InputError
from cryomine.viz import central_slices, fsc_figure, save_slice_montage

__all__ = [
    "Points",
    "class_colours",
    "confusion_figure",
    "fsc_figure",
    "learning_curves_figure",
    "montage_png",
    "robustness_figure",
    "tomogram_picks_figure",
]

#: The paper's DSM-Net on dataset A (SNR 0.06) and B (SNR 0.01): (SNR, object accuracy, mIoU), Liu et al. 2018.
PAPER_DSMNET = ((0.06, 0.9375, 0.890), (0.01, 0.5312, 0.814))


@dataclass(frozen=True, eq=False)
class Points:
    """Particle positions in a tomogram: ``coords_xyz`` ``(n, 3)`` voxels (x, y, z, as STAR files store them)
    and, optionally, one class name per particle."""

    coords_xyz: np.ndarray
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        xyz = np.asarray(self.coords_xyz, dtype=np.float64).reshape(-1, 3) if np.size(self.coords_xyz) else np.zeros((0, 3))
        if not np.isfinite(xyz).all():
            raise InputError("particle coordinates must be finite")
        object.__setattr__(self, "coords_xyz", xyz)
        if self.classes is not None:
            if len(self.classes) != len(xyz):
                raise InputError(f"{len(self.classes)} class names for {len(xyz)} particles")
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def __len__(self) -> int:
        return len(self.coords_xyz)


def class_colours(names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A distinct colour per name (tab10 up to 10 names, tab20 up to 20, then repeating)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _scaled(ax, img: np.ndarray) -> None:
    lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower", interpolation="nearest")


def _radii(points: Points, radius_vox: float | Mapping[str, float]) -> np.ndarray:
    """``(n,)`` particle radius (voxels) of each point: one for all, or by class name (the median for others)."""
    if not isinstance(radius_vox, Mapping):
        return np.full(len(points), float(radius_vox))
    default = float(np.median(list(radius_vox.values()))) if radius_vox else 5.0
    names = points.classes or ("",) * len(points)
    return np.array([float(radius_vox.get(n, default)) for n in names])


def _overlay(ax, points: Points | None, axes: tuple[int, int], depth_axis: int, level: int,
             radius_vox: float | Mapping[str, float], colours: dict[str, tuple], truth: bool) -> int:
    """Draw the points whose particles cut the slice at index ``level`` of ``depth_axis`` (0 = x, 1 = y, 2 = z);
    ``axes`` are the (horizontal, vertical) coordinate columns. Returns how many were drawn."""
    if points is None or len(points) == 0:
        return 0
    xyz = points.coords_xyz
    radii = _radii(points, radius_vox)
    dist = np.abs(xyz[:, depth_axis] - level)
    near = np.flatnonzero(dist < radii)
    names = points.classes or ("particle",) * len(points)
    if truth:
        for name in sorted({names[i] for i in near}):
            sel = [i for i in near if names[i] == name]
            ax.scatter(xyz[sel, axes[0]], xyz[sel, axes[1]], marker="+", s=40, linewidths=1.2, color=colours[name])
        return len(near)
    circles = [Circle((xyz[i, axes[0]], xyz[i, axes[1]]), max(1.5, math.sqrt(radii[i] ** 2 - dist[i] ** 2))) for i in near]
    edge = [colours[names[i]] for i in near]
    ax.add_collection(PatchCollection(circles, facecolor="none", edgecolor=edge, linewidth=1.2))
    return len(near)


def tomogram_picks_figure(volume: np.ndarray, picks: Points | None, truth: Points | None = None, *,
                          radius_vox: float | Mapping[str, float] = 5.0, title: str | None = None) -> Figure:
    """Central xy and xz slices of a ``(d, h, w)`` tomogram with ``picks`` (circles) and ``truth`` (``+``) on them.

    ``radius_vox``: particle radius (voxels), one for all or by class name, for the circle size and for which
    particles cut a slice.
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise InputError(f"tomogram must be a 3-D (d, h, w) array, got shape {vol.shape}")
    radii = list(radius_vox.values()) if isinstance(radius_vox, Mapping) else [radius_vox]
    if not all(np.isfinite(r) and r > 0 for r in radii):
        raise InputError(f"particle radius must be > 0 voxels, got {radius_vox}")
    d, h, w = vol.shape
    xy, xz, _ = central_slices(vol)
    names = sorted({*((picks.classes or ()) if picks is not None else ()),
                    *((truth.classes or ()) if truth is not None else ())}) or ["particle"]  # fmt: skip
    if (picks is not None and picks.classes is None) or (truth is not None and truth.classes is None):
        names = sorted(set(names) | {"particle"})
    colours = class_colours(names)
    fig = Figure(figsize=(9.0, min(16.0, 9.0 * (h + d) / w / 1.25 + 0.8)), layout="constrained")
    axes = fig.subplots(2, 1, gridspec_kw={"height_ratios": [h, d]})
    # (axis, image, plane axes, cut axis, cut index, plane name, cut axis name, vertical axis name)
    panels = ((axes[0], xy, (0, 1), 2, d // 2, "xy", "z", "y"), (axes[1], xz, (0, 2), 1, h // 2, "xz", "y", "z"))
    for ax, image, plane, cut, at, name, cut_name, vertical in panels:
        _scaled(ax, image)
        n_picks = _overlay(ax, picks, plane, cut, at, radius_vox, colours, truth=False)
        n_truth = _overlay(ax, truth, plane, cut, at, radius_vox, colours, truth=True)
        cut_by = f"{n_picks} picks" + (f", {n_truth} true particles" if truth is not None else "")
        ax.set_title(f"{name} slice at {cut_name} = {at}: {cut_by} cut it", fontsize=9)
        ax.set_xlabel("x (voxels)", fontsize=8)
        ax.set_ylabel(f"{vertical} (voxels)", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], marker="s", linestyle="", color=colours[n], label=n) for n in names]
    if picks is not None:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none", linestyle="", color="k", label="pick"))
    if truth is not None:
        handles.append(Line2D([], [], marker="+", linestyle="", color="k", label="truth"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str | None = None) -> Figure:
    """Heatmap of a ``(k, k)`` confusion matrix (rows = true, columns = predicted): colour = fraction of the row,
    text = count."""
    cm = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise InputError(f"confusion matrix shape {cm.shape} does not match {k} class names")
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(3.5, 0.55 * k + 2.0)
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.55 else "black")
    ax.set_xticks(range(k), [str(n) for n in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [str(n) for n in class_names], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, label="fraction of the true class", shrink=0.8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def learning_curves_figure(metrics: pd.DataFrame, title: str | None = None) -> Figure:
    """Losses (left) and validation accuracy / mIoU (right) per epoch from a run's ``metrics.csv`` table
    (columns ``epoch``, ``train_loss``, ``val_loss``, per-head ``*_loss_*``, ``val_accuracy``, ``val_miou``,
    ``best``); the best epoch is marked."""
    if "epoch" not in metrics or metrics.empty:
        raise InputError("metrics table needs an 'epoch' column and at least one row")
    ep = pd.to_numeric(metrics["epoch"], errors="coerce").to_numpy(np.float64)
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for col in [c for c in metrics.columns if "loss" in c]:
        y = pd.to_numeric(metrics[col], errors="coerce").to_numpy(np.float64)
        if np.isfinite(y).any():
            head = col.count("_") > 1
            left.plot(ep, y, linestyle="--" if head else "-", linewidth=0.9 if head else 1.6, label=col)
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.set_title("losses (dashed: per head)", fontsize=9)
    left.legend(fontsize=6, ncol=2)
    drawn = False
    for col in ("val_accuracy", "val_miou"):
        if col in metrics:
            y = pd.to_numeric(metrics[col], errors="coerce").to_numpy(np.float64)
            if np.isfinite(y).any():
                right.plot(ep, y, marker=".", label=col)
                drawn = True
    right.set_xlabel("epoch")
    right.set_ylim(0, 1.02)
    right.set_title("validation accuracy and mIoU" if drawn else "no validation accuracy / mIoU recorded", fontsize=9)
    if drawn:
        right.legend(fontsize=8)
    if "best" in metrics:
        best = pd.to_numeric(metrics["best"], errors="coerce").fillna(0).to_numpy() > 0
        if best.any():
            for ax in (left, right):
                ax.axvline(ep[best][-1], color="grey", linestyle=":", linewidth=1)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def montage_png(rows: Mapping[str, Sequence[np.ndarray]] | Mapping[str, np.ndarray],
                column_titles: Sequence[str] | None = None, title: str | None = None, dpi: int = 100) -> bytes:
    """PNG bytes of :func:`~cryomine.viz.save_slice_montage` (``(d, h, w)`` volumes; see there)."""
    if not rows:
        raise InputError("montage needs at least one row")
    with tempfile.TemporaryDirectory(prefix="cryomine-report-") as tmp:
        path = save_slice_montage(rows, Path(tmp) / "montage.png", column_titles=column_titles, title=title, dpi=dpi)
        return path.read_bytes()


def robustness_figure(curves: Mapping[str, Sequence[Mapping]], title: str | None = None) -> Figure:
    """Object accuracy (left) and mIoU (right) against SNR, one line per model in ``curves`` (label -> rows of
    :func:`cryomine.evaluate.robustness.measure_robustness`; only ``kind == "snr"`` rows are drawn). The
    noise-free point sits at the right edge, labelled ``inf``; the paper's DSM-Net values are stars."""
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    finite = [float(r["snr"]) for rows in curves.values() for r in rows if r.get("kind") == "snr" and r["snr"] != "inf"]
    if not finite:
        raise InputError("robustness: no SNR-curve rows to draw")
    inf_x = max(finite) * 4
    for (key, label), ax in zip((("object_accuracy", "object accuracy"), ("miou", "mIoU")), axes):
        for name, rows in curves.items():
            pts = sorted((inf_x if r["snr"] == "inf" else float(r["snr"]), r.get(key)) for r in rows
                         if r.get("kind") == "snr" and r.get(key) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        paper = [(snr, acc if key == "object_accuracy" else miou) for snr, acc, miou in PAPER_DSMNET]
        ax.plot(*zip(*paper), linestyle="none", marker="*", markersize=11, color="k", label="paper DSM-Net")
        ax.set_xscale("log")
        ticks = sorted(set(finite)) + [inf_x]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks[:-1]] + ["inf"])
        ax.minorticks_off()
        ax.set_xlabel("SNR")
        ax.set_ylim(0, 1.02)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
