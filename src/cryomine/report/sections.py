"""The content sections of the report, each built from what :func:`cryomine.report.inputs.find_inputs` found
(the tomogram section is in :mod:`cryomine.report.tomogram_section`).

Every builder takes a :class:`Context`, returns the section's HTML body (with "Not available: ..." where its
inputs are missing) and adds the headline numbers it shows to ``ctx.headlines`` for the figures table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryomine.errors import InputError
from cryomine.io.mrc import read_mrc
from cryomine.io.subtomo_h5 import read_rows
from cryomine.report.figures import confusion_figure, fsc_figure, learning_curves_figure, montage_png, robustness_figure
from cryomine.report.html import (
    figure_data_uri,
    format_value,
    image,
    not_available,
    paragraph,
    param_text,
    png_data_uri,
    png_file_data_uri,
    table,
)
from cryomine.report.inputs import ReportInputs, read_json, read_table
from cryomine.viz import isosurface_figure

__all__ = [
    "Context",
    "Headline",
    "average_section",
    "classification_section",
    "discovery_section",
    "examples_section",
    "run_parameters",
    "training_section",
]

RUN_KEYS = {k.rsplit(".", 1)[-1]: k for k in (
    "model.input_size", "model.fc_units", "model.base_channels", "train.lr", "train.batch_size", "train.max_epochs",
    "train.patience", "train.seed", "train.w_cls", "train.w_seg", "train.w_rec", "train.exclude_classes",
    "train.max_train", "dataset.voxel_size_a")}
RUN_KEYS = {"model": "model.name", **RUN_KEYS, "dataset_rows": "dataset.n_written"}
MAX_EXAMPLE_CLASSES = 12
MAX_CLUSTER_IMAGES = 12
MAX_AVERAGE_MAPS = 8
ENCLOSED_FRACTION = 0.1  # isosurface level of maps whose structure is unknown here: 10% of the box inside


@dataclass(frozen=True)
class Headline:
    """One row of the figures table: a number, its unit, where it came from and the parameters behind it."""

    quantity: str
    value: object
    unit: str
    source: str
    parameters: str


@dataclass
class Context:
    """What the section builders share: the inputs found, and the headlines and notes they collect."""

    inputs: ReportInputs
    headlines: list[Headline] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rel(self, path: Path | None) -> str:
        """``path`` relative to the report's folder when inside it."""
        if path is None:
            return "n/a"
        try:
            return str(path.relative_to(self.inputs.root))
        except ValueError:
            return str(path)

    def add(self, quantity: str, value: object, unit: str, source: Path | None, parameters: str) -> None:
        """Record a headline number (skipped when ``value`` is None)."""
        if value is not None:
            self.headlines.append(Headline(quantity, value, unit, self.rel(source), parameters))


def run_parameters(ctx: Context) -> str:
    """Short parameter text of the training run (model, optimiser, epochs trained, dataset)."""
    rc = ctx.inputs.run_config
    if rc is None:
        return ""
    text = param_text(rc.data, RUN_KEYS)
    if ctx.inputs.metrics_csv is not None:
        try:
            text += f", epochs_trained={len(read_table(ctx.inputs.metrics_csv))}"
        except InputError:  # said by the training section
            pass
    return text


def training_section(ctx: Context) -> str:
    """Learning curves of the training run and its best epoch."""
    inp = ctx.inputs
    if inp.run_dir is None:
        return not_available("no training run folder (config.json of a cryomine run, metrics.csv)")
    if inp.metrics_csv is None:
        return paragraph(f"Run folder {ctx.rel(inp.run_dir)}.") + not_available("the run has no metrics.csv")
    metrics = read_table(inp.metrics_csv, ("epoch", "train_loss", "val_loss", "val_accuracy", "val_miou", "time_s"))
    params = run_parameters(ctx)
    parts = [image(figure_data_uri(learning_curves_figure(metrics, f"{inp.run_dir.name}: learning curves")),
                   "learning curves", f"Per-epoch losses and validation scores from {ctx.rel(inp.metrics_csv)}; "
                   "dotted line: best epoch (lowest validation loss).")]
    best = metrics
    if "best" in metrics and (pd.to_numeric(metrics["best"], errors="coerce") > 0).any():
        best = metrics[pd.to_numeric(metrics["best"], errors="coerce") > 0]
    elif "val_loss" in metrics and metrics["val_loss"].notna().any():
        best = metrics.loc[[pd.to_numeric(metrics["val_loss"], errors="coerce").idxmin()]]
    row = best.iloc[-1]
    cols = [c for c in ("epoch", "train_loss", "val_loss", "val_accuracy", "val_miou", "time_s") if c in metrics]
    parts.append(table(cols, [[_num(row[c]) for c in cols]], caption=f"Best epoch ({len(metrics)} epochs trained)"))
    ctx.add("validation accuracy (best epoch)", _num(row.get("val_accuracy")), "", inp.metrics_csv, params)
    ctx.add("validation mIoU (best epoch)", _num(row.get("val_miou")), "", inp.metrics_csv, params)
    parts.append(robustness_part(ctx, inp.run_dir / "robustness.json"))
    return "".join(parts)


def robustness_part(ctx: Context, path: Path) -> str:
    """The run's accuracy / mIoU against SNR and under other imaging conditions (``robustness.json`` of
    :mod:`cryomine.evaluate.robustness`), where the run folder has one."""
    if not path.is_file():
        return paragraph("No robustness.json in the run folder (accuracy against SNR and imaging conditions: "
                         "benchmarks/bench_dsmnet_snr.py).", "note")
    notes: list[str] = []
    data = read_json(path, notes)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        return not_available(f"{ctx.rel(path)} is unreadable or has no rows")
    parts = []
    if any(isinstance(r, dict) and r.get("kind") == "snr" for r in rows):
        fig = robustness_figure({ctx.inputs.run_dir.name if ctx.inputs.run_dir else "run": rows})
        parts.append(image(figure_data_uri(fig), "accuracy against SNR",
                           f"Object accuracy and mIoU on freshly simulated data at each SNR ({ctx.rel(path)})."))
    cols = ["name", "snr", "object_accuracy", "miou", "n", "seed"]
    parts.append(table(cols, [[r.get(c) if c in ("name", "snr", "n", "seed") else _num(r.get(c)) for c in cols]
                              for r in rows if isinstance(r, dict)], caption="Fresh-seed data per imaging condition"))
    return "".join(parts)


def _num(value: Any) -> float | None:
    """A finite number from a table cell, else None."""
    v = pd.to_numeric(value, errors="coerce")
    return None if v is None or pd.isna(v) else float(v)


def classification_section(ctx: Context) -> str:
    """Scores of ``cryomine evaluate --json``, per-class accuracy and the confusion matrix."""
    ev = ctx.inputs.evaluation
    if ev is None:
        return not_available("no evaluation JSON (the output of 'cryomine evaluate --json', e.g. evaluation.json)")
    e = ev.data
    params = f"split={e.get('split')}, n={e.get('n_subtomograms')}, dataset={Path(str(e.get('dataset', ''))).name}"
    run = run_parameters(ctx)
    params += f"; {run}" if run else f", model={e.get('model')}"
    scores = [("object accuracy", "object_accuracy"), ("pixel accuracy", "pixel_accuracy"), ("mIoU", "miou"),
              ("IoU background", "iou_background"), ("IoU target", "iou_target"), ("recovery MSE", "recovery_mse"),
              ("recovery correlation", "recovery_correlation")]
    parts = [paragraph(f"{e.get('model', 'model')} on {e.get('n_subtomograms', '?')} subtomograms (split "
                       f"{e.get('split', '?')}) of {e.get('dataset', '?')}, from {ctx.rel(ev.path)}."),
             table(["score", "value"], [[label, e.get(key)] for label, key in scores])]
    for label, key in scores:
        if key not in ("iou_background", "iou_target", "recovery_mse"):
            ctx.add(label, e.get(key), "", ev.path, params)
    names = [str(n) for n in e.get("class_names") or []]
    cm = e.get("confusion_matrix")
    if cm is None or not names:
        parts.append(not_available("no confusion matrix (the model has no classification head)"))
        return "".join(parts)
    parts.append(image(figure_data_uri(confusion_figure(np.asarray(cm), names, "confusion matrix")), "confusion matrix",
                       "Rows: true class, columns: predicted class; colour: fraction of the true class, text: count."))
    acc, support = e.get("per_class_accuracy") or {}, e.get("class_support") or {}
    parts.append(table(["class", "subtomograms", "accuracy"], [[n, support.get(n), acc.get(n)] for n in names],
                       caption="Per-class accuracy"))
    return "".join(parts)


def _load_volume(value: object, row: object, bases: list[Path]) -> np.ndarray | None:
    """A subtomogram named in predictions.csv: an MRC file, or a row of an HDF5 dataset (None if not found)."""
    if not isinstance(value, str) or not value:
        return None
    p = Path(value)
    cands = [p] if p.is_absolute() else [*(b / p for b in bases), p]
    path = next((c for c in cands if c.is_file()), None)
    if path is None:
        return None
    r = int(row) if row is not None and not pd.isna(row) else -1
    if r >= 0:
        return read_rows(path, ("subtomograms",), np.array([r]))["subtomograms"][0].astype(np.float32)
    return read_mrc(path).data


def examples_section(ctx: Context) -> str:
    """One example per predicted class: the subtomogram, its predicted mask and recovered density."""
    pdir = ctx.inputs.predict_dir
    if pdir is None:
        return not_available("no prediction folder (predictions.csv with masks/ and recovered/ from 'cryomine predict')")
    pred = read_table(pdir / "predictions.csv")
    if pred.empty:
        return not_available(f"{ctx.rel(pdir / 'predictions.csv')} has no rows")
    ctx.add("subtomograms predicted", len(pred), "", pdir / "predictions.csv", run_parameters(ctx))
    parts = []
    if "class_name" in pred:
        has_p = "probability" in pred
        groups = pred.groupby("class_name", sort=True)
        counts = groups.agg(n=("class_name", "size"), p=("probability", "mean")) if has_p else groups.agg(n=("class_name", "size"))
        parts.append(table(["predicted class", "subtomograms", *(["mean probability"] if has_p else [])],
                           [[n, int(r.n), *([float(r.p)] if has_p else [])] for n, r in counts.iterrows()],
                           caption="Predictions per class"))
        order = pred.sort_values("probability", ascending=False, kind="stable") if "probability" in pred else pred
        examples = order.groupby("class_name", sort=True).head(1).sort_values("class_name").head(MAX_EXAMPLE_CLASSES)
    else:
        examples = pred.head(4)
    rows: dict[str, list[np.ndarray]] = {}
    titles = ["subtomogram (xy)", "predicted mask", "recovered density"]
    bases = [pdir, ctx.inputs.root]
    for _, r in examples.iterrows():
        vols = [_load_volume(r.get("source"), r.get("row"), bases),
                _load_volume(r.get("mask_file"), None, [pdir]), _load_volume(r.get("recovered_file"), None, [pdir])]
        shape = next((v.shape for v in vols if v is not None), None)
        if shape is None:
            continue
        label = str(r.get("class_name", r.get("name")))
        if "probability" in r and not pd.isna(r["probability"]):
            label += f" (p = {float(r['probability']):.2f})"
        rows[label] = [v if v is not None else np.zeros(shape, np.float32) for v in vols]
    if not rows:
        parts.append(not_available("the predicted subtomograms, masks and recovered maps could not be found"))
        return "".join(parts)
    parts.append(image(png_data_uri(montage_png(rows, titles, "most confident prediction of each class")),
                       "per-class examples", f"Central xy slices, from {ctx.rel(pdir)} (a missing file shows as blank)."))
    return "".join(parts)


def _fsc_text(entry: Mapping | None) -> tuple[object, object]:
    entry = entry or {}
    return entry.get("resolution_fsc05_a"), entry.get("resolution_fsc0143_a")


def _natural(path: Path) -> list[object]:
    """Sort key: ``cluster_2`` before ``cluster_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def cluster_isosurfaces(ddir: Path) -> str:
    """The isosurfaces of a discovery folder's cluster means (``cluster_<c>.mrc``, at most :data:`MAX_CLUSTER_IMAGES`),
    or "" when it has none."""
    means = sorted(ddir.glob("cluster_*.mrc"), key=_natural)[:MAX_CLUSTER_IMAGES]
    if not means:
        return ""
    maps = {p.stem.replace("_", " "): read_mrc(p).data for p in means}
    return image(figure_data_uri(isosurface_figure(maps, ENCLOSED_FRACTION), dpi=70), "cluster mean isosurfaces",
                 f"Isosurface of each cluster's mean density at the level enclosing {ENCLOSED_FRACTION:.0%} of its box.")


def discovery_section(ctx: Context) -> str:
    """t-SNE of the features (held-out classes highlighted), clustering scores, held-out classes, cluster maps."""
    ddir, summ = ctx.inputs.discover_dir, ctx.inputs.discover_summary
    if ddir is None:
        return not_available("no discovery folder (summary.json and tsne.png from 'cryomine discover')")
    parts = []
    if (ddir / "tsne.png").is_file():
        parts.append(image(png_file_data_uri(ddir / "tsne.png"), "t-SNE of DSM-Net features",
                           "t-SNE of the DSM-Net features by cluster and by true class; classes held out of training "
                           "(the unseen complexes) are drawn as large stars."))
    else:
        parts.append(not_available("no tsne.png"))
    if summ is None:
        parts.append(not_available("no discovery summary.json"))
        return "".join(parts)
    s = summ.data
    params = f"k={s.get('k')}, model={s.get('model')}, n={s.get('n_subtomograms')}, " + param_text(s.get("config"), limit=6)
    methods = [(m, s[m]) for m in ("dsmnet", "baseline") if isinstance(s.get(m), Mapping)]
    rows = [["DSM-Net" if m == "dsmnet" else "baseline (label-free)", part.get("purity"), part.get("adjusted_rand_index"),
             part.get("normalized_mutual_info")] for m, part in methods]
    if any(r[1] is not None for r in rows):
        parts.append(table(["features", "purity", "ARI", "NMI"], rows, caption="Clustering against the true classes"))
    held = []
    for m, part in methods:
        label = "DSM-Net" if m == "dsmnet" else "baseline"
        ctx.add(f"clustering purity ({label})", part.get("purity"), "", summ.path, params)
        for name, h in (part.get("held_out") or {}).items():
            f05, f0143 = _fsc_text(h.get("fsc") or h.get("fsc_subtomogram_mean"))
            held.append([name, label, h.get("n"), h.get("cluster"), h.get("cluster_size"), h.get("recall"),
                         h.get("precision"), f05, f0143])
            ctx.add(f"held-out {name} recall ({label})", h.get("recall"), "", summ.path, params)
            ctx.add(f"held-out {name} precision ({label})", h.get("precision"), "", summ.path, params)
            ctx.add(f"held-out {name} cluster mean resolution, FSC 0.143 vs truth ({label})", f0143, "Å", summ.path, params)
    if held:
        parts.append(table(["held-out class", "features", "subtomograms", "cluster", "cluster size", "recall",
                            "precision", "FSC 0.5 (Å)", "FSC 0.143 (Å)"], held,
                           caption="Classes the network never saw, and the cluster that found them"))
    clusters = (s.get("dsmnet") or {}).get("clusters") or []
    if clusters:
        parts.append(table(["cluster", "size", "majority class", "fraction", "FSC 0.5 (Å)", "FSC 0.143 (Å)"],
                           [[c.get("cluster"), c.get("size"), c.get("majority_class"), c.get("majority_fraction"),
                             *_fsc_text(c.get("fsc"))] for c in clusters], caption="DSM-Net clusters"))
    parts.append(cluster_isosurfaces(ddir))
    pngs = sorted(ddir.glob("cluster_*.png"), key=_natural)
    for p in pngs[:MAX_CLUSTER_IMAGES]:
        parts.append(image(png_file_data_uri(p), p.stem.replace("_", " "), f"{p.stem}: mean density (and truth of its majority class)"))
    if len(pngs) > MAX_CLUSTER_IMAGES:
        parts.append(paragraph(f"{len(pngs) - MAX_CLUSTER_IMAGES} more cluster images in {ctx.rel(ddir)}.", "note"))
    return "".join(parts)


def _read_fsc_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    df = read_table(path, ("frequency_a_inv", "fsc"))
    if not {"frequency_a_inv", "fsc"} <= set(df.columns):
        raise InputError("FSC CSV needs columns frequency_a_inv and fsc", path)
    return (pd.to_numeric(df["frequency_a_inv"], errors="coerce").to_numpy(np.float64),
            pd.to_numeric(df["fsc"], errors="coerce").to_numpy(np.float64))


def average_section(ctx: Context) -> str:
    """Central slices of the subtomogram average(s) and their gold-standard FSC curves."""
    adir, summ = ctx.inputs.average_dir, ctx.inputs.average_summary
    if adir is None:
        return not_available("no averaging folder (summary.json, average.mrc, fsc.csv from 'cryomine average')")
    parts = []
    maps = [adir / "average.mrc"] if (adir / "average.mrc").is_file() else sorted(adir.glob("class_[0-9][0-9].mrc"))
    if maps:
        vols = {p.stem: read_mrc(p) for p in maps[:MAX_AVERAGE_MAPS]}
        vs = next(iter(vols.values())).voxel_size_a
        parts.append(image(png_data_uri(montage_png({k: v.data for k, v in vols.items()}, title=f"{vs:g} Å/voxel")),
                           "average central slices", f"Central slices of {', '.join(p.name for p in maps[:MAX_AVERAGE_MAPS])}."))
        parts.append(image(figure_data_uri(isosurface_figure({k: v.data for k, v in vols.items()}, ENCLOSED_FRACTION), dpi=80),
                           "average isosurfaces", f"Isosurface of each map at the level enclosing {ENCLOSED_FRACTION:.0%} of its box."))
    else:
        parts.append(not_available("no average.mrc / class_NN.mrc"))
    curves = {}
    for p in [adir / "fsc.csv"] + sorted(adir.glob("class_[0-9][0-9]_fsc.csv")):
        if p.is_file():
            curves[p.stem.removesuffix("_fsc") if p.name != "fsc.csv" else "average"] = _read_fsc_csv(p)
    if curves:
        parts.append(image(figure_data_uri(fsc_figure(curves, "gold-standard FSC between half maps")), "FSC curve",
                           "FSC between the two half maps; resolution where it drops below 0.143."))
    elif (adir / "fsc.png").is_file():
        parts.append(image(png_file_data_uri(adir / "fsc.png"), "FSC curve", "FSC between the two half maps."))
    else:
        parts.append(not_available("no fsc.csv"))
    if summ is not None:
        s = summ.data
        params = f"particles={s.get('particles')}, box={s.get('box')}, voxel_size_a={format_value(s.get('voxel_size_a'))}, " \
                 + param_text(s.get("config"), limit=8)
        rows = []
        for c in s.get("classes") or []:
            rows.append([c.get("class"), c.get("particles"), c.get("resolution_fsc0143_a"), c.get("resolution_fsc05_a"),
                         c.get("fsc_sum")])
            label = "average" if len(s["classes"]) == 1 else f"class {c.get('class')}"
            ctx.add(f"{label} resolution (FSC 0.143, half maps)", c.get("resolution_fsc0143_a"), "Å", summ.path, params)
        parts.append(table(["class", "particles", "FSC 0.143 (Å)", "FSC 0.5 (Å)", "FSC sum"], rows,
                           caption=f"Resolution from {ctx.rel(summ.path)}"))
    return "".join(parts)
