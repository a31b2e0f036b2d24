"""``build_report``: one self-contained ``report.html`` from a demo folder or any single cryomine output folder.

The report is a single HTML file: images are embedded as ``data:`` URIs, the style sheet is inline, there is no
script and nothing outside the file is referenced, so it opens offline and can be mailed around. Sections:

1. **Figures**: a table of every headline number found (picking F1 / precision / recall, object and pixel
   accuracy, mIoU, recovery correlation, held-out recall / precision, clustering purity, resolutions, SNR, ...)
   with its source file and the parameters that produced it (from the config JSONs);
2. **Tomogram and picks**: central xy (z = d // 2) and xz (y = h // 2) slices with picks as circles and the true
   particles as ``+``, coloured by class; picking scores;
3. **Training**: learning curves (losses, validation accuracy and mIoU per epoch) and the best epoch;
4. **Classification and segmentation**: evaluation scores, confusion matrix, per-class accuracy;
5. **Per-class examples**: for each predicted class its most confident subtomogram, predicted mask and recovered
   density;
6. **Discovery**: the t-SNE of DSM-Net features (held-out, unseen classes as stars), clustering scores, the
   clusters that found the held-out classes, cluster means;
7. **Subtomogram average**: central slices of the map(s) and the half-map FSC curve(s) with 0.5 / 0.143 lines;
8. **Parameters**: every config found, flattened; 9. **Inputs**: the files used and any problems met.

Every section is optional: when its inputs are missing it says "Not available: ..." and names what it looked for,
so the same command reports on a whole demo or on one run. A section whose inputs are unreadable says so too
instead of failing the whole report.

Folder conventions (looked for in the folder itself, then in its immediate subfolders, see
:mod:`cryomine.report.inputs`; JSON files are recognised by their keys, whatever their names)::

    DIR/
      summary.json            demo summary: its top-level numbers and its "figures" object ({name: number} or
                              {name: {"value": v, "unit": u, "parameters": {...}}}) go into the figures table
      config.json             demo parameters (a root config.json that is not a training run's)
      tomogram.mrc            the tomogram (or any simulated <stem>.mrc beside its simulator <stem>.json)
      tomogram.json           simulator summary (snr_measured, particles_placed, config)
      truth.star              true particles (default: the tomogram's <stem>.star, as the simulator writes it)
      picks.star              picked particles, x/y/z voxels; classes from rlnClassName / cmClassName /
                              rlnClassNumber; an optional picks.json beside it gives the picking parameters
      picks_evaluation.json   picks scored against the truth (cryomine.pick.evaluate.evaluate_pick_files)
      evaluation.json         'cryomine evaluate --json' output (also found inside the run folder)
      run/                    a training run: config.json ("format": "cryomine-run"), metrics.csv
      predict/                'cryomine predict' output: predictions.csv, masks/*.mrc, recovered/*.mrc
      discover/               'cryomine discover' output: summary.json, tsne.png, cluster_*.png
      average/                'cryomine average' output: summary.json, average.mrc or class_NN.mrc, fsc.csv /
                              class_NN_fsc.csv, fsc.png

A training run, predict, discover or average folder given on its own is found the same way (it is its own root).
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Callable, Mapping
from numbers import Real
from pathlib import Path

from cryomine import __version__
from cryomine.errors import CryomineWarning, InputError
from cryomine.io.atomic import atomic_output
from cryomine.report.html import Section, escape, flatten, not_available, page, param_text, table
from cryomine.report.inputs import JsonFile, ReportInputs, find_inputs
from cryomine.report.sections import (
    Context,
    average_section,
    classification_section,
    discovery_section,
    examples_section,
    training_section,
)
from cryomine.report.tomogram_section import tomogram_section

__all__ = ["REPORT_NAME", "build_report", "render_report"]

REPORT_NAME = "report.html"
_SECTIONS: tuple[tuple[str, str, Callable[[Context], str]], ...] = (
    ("tomogram", "Tomogram and picks", tomogram_section),
    ("training", "Training", training_section),
    ("classification", "Classification and segmentation", classification_section),
    ("examples", "Per-class examples", examples_section),
    ("discovery", "Discovery of unseen complexes", discovery_section),
    ("average", "Subtomogram average", average_section),
)
_ERRORS = (InputError, OSError, ValueError, KeyError, TypeError, IndexError)


def _guarded(ctx: Context, title: str, builder: Callable[[Context], str]) -> str:
    """The builder's HTML, or a "not available" box naming the problem when its inputs cannot be read."""
    try:
        return builder(ctx)
    except _ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        ctx.notes.append(f"{title}: {message}")
        return not_available(f"its inputs could not be read ({message})")


def _demo_headlines(ctx: Context) -> None:
    """Numbers of a demo's summary.json: its "figures" object and its top-level numbers."""
    summ, conf = ctx.inputs.demo_summary, ctx.inputs.demo_config
    if summ is None:
        return
    params = param_text(conf.data if conf else summ.data.get("config"), limit=10)
    figures = summ.data.get("figures")
    if isinstance(figures, Mapping):
        for name, value in figures.items():
            if isinstance(value, Mapping):
                extra = param_text(value.get("parameters")) if isinstance(value.get("parameters"), Mapping) else ""
                ctx.add(str(name), value.get("value"), str(value.get("unit", "")), summ.path, extra or params)
            else:
                ctx.add(str(name), value, "", summ.path, params)
    for key, value in summ.data.items():
        if isinstance(value, Real) and not isinstance(value, bool):
            ctx.add(key.replace("_", " "), value, "", summ.path, params)


def _figures_body(ctx: Context) -> str:
    """The headline numbers in a short table; the parameters behind them, by reference, in a collapsed table."""
    if not ctx.headlines:
        return not_available("no headline numbers were found in this folder")
    params = list(dict.fromkeys(h.parameters for h in ctx.headlines if h.parameters))
    ref = {p: f"[{i + 1}]" for i, p in enumerate(params)}
    rows = [[h.quantity, h.value, h.unit, h.source, ref.get(h.parameters, "")] for h in ctx.headlines]
    body = table(["quantity", "value", "unit", "source", "settings"], rows)
    if params:
        body += (f"<details><summary>Settings behind these numbers ({len(params)})</summary>"
                 f"{table(['ref', 'settings'], [[ref[p], p] for p in params], css={1: 'params'})}</details>")
    return body


def _parameters_body(inp: ReportInputs) -> str:
    found: list[tuple[str, JsonFile, Mapping]] = []
    for label, jf, key in (("demo", inp.demo_config, None), ("training run", inp.run_config, None),
                           ("tomogram simulation", inp.tomogram_meta, "config"), ("discovery", inp.discover_summary, "config"),
                           ("averaging", inp.average_summary, "config")):
        if jf is not None:
            cfg = jf.data if key is None else jf.data.get(key)
            if isinstance(cfg, Mapping) and cfg:
                found.append((label, jf, cfg))
    if not found:
        return not_available("no config JSON found")
    parts = []
    for label, jf, cfg in found:
        rows = list(flatten(cfg).items())
        rel = jf.path.relative_to(inp.root) if jf.path.is_relative_to(inp.root) else jf.path
        parts.append(f"<details><summary>{escape(label)}: {escape(rel)} ({len(rows)} values)</summary>"
                     f"{table(['parameter', 'value'], rows)}</details>")
    return "".join(parts)


def _inputs_body(ctx: Context) -> str:
    inp = ctx.inputs
    items = [("training run", inp.run_dir), ("evaluation", inp.evaluation.path if inp.evaluation else None),
             ("predictions", inp.predict_dir), ("discovery", inp.discover_dir), ("averaging", inp.average_dir),
             ("tomogram", inp.tomogram), ("true particles", inp.truth_star), ("picks", inp.picks_star),
             ("picking evaluation", inp.pick_evaluation.path if inp.pick_evaluation else None),
             ("demo summary", inp.demo_summary.path if inp.demo_summary else None)]
    body = table(["input", "path"], [[k, ctx.rel(v) if v is not None else "not found"] for k, v in items])
    notes = [*inp.notes, *ctx.notes]
    if notes:
        body += "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
    for note in notes:  # said on the command line too, one line each: the page was built without these
        warnings.warn(f"report: {note}", CryomineWarning, stacklevel=2)
    return body


def render_report(inputs: ReportInputs) -> str:
    """The report's HTML text for what :func:`~cryomine.report.inputs.find_inputs` found."""
    ctx = Context(inputs)
    _demo_headlines(ctx)
    content = [Section(anchor, title, _guarded(ctx, title, fn)) for anchor, title, fn in _SECTIONS]
    sections = [Section("figures", "Figures", _figures_body(ctx)), *content,
                Section("parameters", "Parameters", _parameters_body(inputs)),
                Section("inputs", "Inputs", _inputs_body(ctx))]
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    name = inputs.root.resolve().name or str(inputs.root)
    return page(f"cryomine report: {name}", sections, [f"Built from {inputs.root} on {stamp} by cryomine {__version__}."])


def build_report(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Build the report of the folder ``path`` (see the module docstring) into ``out`` (default
    ``path/report.html``), atomically; returns the report's path. InputError if ``path`` is not a folder or
    holds nothing a report can show."""
    inputs = find_inputs(path)
    if not inputs.found_anything():
        raise InputError("nothing to report: no cryomine run, evaluation, prediction, discovery, averaging, "
                         "tomogram or picks found here or in its subfolders", path)
    target = Path(out) if out is not None else inputs.root / REPORT_NAME
    if target.is_dir():
        raise InputError("report output is a folder; give a file name", target)
    text = render_report(inputs)
    with atomic_output(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
