"""The report's tomogram section: central slices with picks and true particles, the simulator's and picking scores."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from cryomine.errors import InputError
from cryomine.io.mrc import read_mrc
from cryomine.io.star import coordinates_xyz_voxels, read_particles
from cryomine.report.figures import Points, tomogram_picks_figure
from cryomine.report.html import figure_data_uri, format_value, image, not_available, param_text, table
from cryomine.report.inputs import candidate_dirs, read_json
from cryomine.report.sections import Context
from cryomine.structures import bundled_radius_a

__all__ = ["read_points", "tomogram_section"]

TOMOGRAM_KEYS = {"shape_zyx": "shape_zyx", "particles": "particles", "structures": "structures",
                 "voxel_size_a": "voxel_size_a", "seed": "seed", "snr": "imaging.snr"}
PICKS_JSON_SKIPPED = ("cryomine_version", "tomogram", "seconds", "config", "n_picks", "voxel_size_a")


def read_points(path: Path) -> Points:
    """Positions (x, y, z voxels) and class names of a STAR particle list: ``rlnClassName``, else ``cmClassName``,
    else ``rlnClassNumber`` as ``class N``; no classes when none of these is present."""
    particles = read_particles(path)
    df = particles.particles
    xyz = coordinates_xyz_voxels(particles)
    for col in ("rlnClassName", "cmClassName"):
        if col in df:
            return Points(xyz, tuple(df[col].astype(str)))
    if "rlnClassNumber" in df:
        return Points(xyz, tuple(f"class {int(n)}" for n in pd.to_numeric(df["rlnClassNumber"], errors="coerce").fillna(0)))
    return Points(xyz)


def _particle_radius(ctx: Context, names: set[str], voxel_size_a: float, shape: tuple[int, ...]) -> float | dict[str, float]:
    """Radius (voxels) per class: the pick evaluation's, else half the bundled structure's diameter, else the picker's
    (``radius_vox`` of the picks' JSON), else 1/24 of the tomogram's smaller lateral size (at least 3)."""
    pe = ctx.inputs.pick_evaluation
    if pe is not None and isinstance(pe.data.get("radius_vox"), Mapping) and pe.data["radius_vox"]:
        return {str(k): float(v) for k, v in pe.data["radius_vox"].items()}
    if names:
        radius = {n: bundled_radius_a(n) for n in names}
        if all(r is not None for r in radius.values()):
            return {n: r / voxel_size_a for n, r in radius.items()}
    picks = ctx.inputs.picks_star
    if picks is not None and picks.with_suffix(".json").is_file():
        value = (read_json(picks.with_suffix(".json"), []) or {}).get("radius_vox")
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return max(3.0, min(shape[1:]) / 24.0)


def _classified_picks(ctx: Context) -> Path | None:
    """A ``predictions.star`` of ``cryomine predict`` on the extracted picks (positions in the tomogram and a
    predicted class per pick; e.g. the demo's ``predict_picks/``), or None."""
    for folder in candidate_dirs(ctx.inputs.root):
        star = folder / "predictions.star"
        if not star.is_file():
            continue
        try:
            table = read_particles(star)
        except InputError:
            continue  # predictions of subtomograms with no positions (or damaged: the inputs section names it)
        if "rlnClassName" in table.particles and {"rlnCoordinateX", "rlnTomoName"} <= set(table.particles.columns):
            return star
    return None


def tomogram_section(ctx: Context) -> str:
    """Central slices of the tomogram with picks and truth; simulator and picking scores."""
    inp, parts = ctx.inputs, []
    meta = inp.tomogram_meta
    if meta is not None:
        params = param_text(meta.data.get("config"), TOMOGRAM_KEYS)
        ctx.add("tomogram SNR (measured)", meta.data.get("snr_measured"), "", meta.path, params)
        ctx.add("particles placed in the tomogram", meta.data.get("particles_placed"), "", meta.path, params)
        ctx.add("tomogram volume fraction", meta.data.get("volume_fraction"), "", meta.path, params)
    if inp.tomogram is None:
        parts.append(not_available("no tomogram (tomogram.mrc, or a simulated tomogram's .mrc beside its .json)"))
    else:
        vol = read_mrc(inp.tomogram)
        points: dict[str, Points | None] = {"picks": None, "truth": None}
        classified = _classified_picks(ctx)
        picks_path = classified or inp.picks_star
        for key, path in (("picks", picks_path), ("truth", inp.truth_star)):
            if path is not None:
                try:
                    points[key] = read_points(path)
                except InputError as exc:
                    ctx.notes.append(f"{key} not shown: {exc}")
        names = {n for p in points.values() if p is not None and p.classes for n in p.classes}
        radius = _particle_radius(ctx, names, vol.voxel_size_a, vol.data.shape)
        d, h, w = vol.data.shape
        fig = tomogram_picks_figure(vol.data, points["picks"], points["truth"], radius_vox=radius,
                                    title=f"{inp.tomogram.name}: {w} x {h} x {d} voxels (x, y, z), {vol.voxel_size_a:g} Å/voxel")
        what = [f"circles: {len(points['picks'])} picks from {ctx.rel(picks_path)}"
                + (", coloured by DSM-Net's predicted class" if classified is not None else "") if points["picks"] is not None
                else "no picks (picks.star) found", f"+: {len(points['truth'])} true particles from {ctx.rel(inp.truth_star)}"
                if points["truth"] is not None else "no true particle list (truth.star) found"]
        parts.append(image(figure_data_uri(fig), "tomogram central slices with picks",
                           "; ".join(what) + ". Only particles that cut the slice are drawn, at the radius of their cross-section."))
        learned = next((d / "picks_learned.star" for d in candidate_dirs(inp.root) if (d / "picks_learned.star").is_file()), None)
        if learned is not None:
            lp = read_points(learned)
            fig = tomogram_picks_figure(vol.data, lp, points["truth"], radius_vox=radius, title=f"learned picker: {len(lp)} picks")
            parts.append(image(figure_data_uri(fig), "tomogram central slices with learned picks",
                               f"circles: {len(lp)} picks of the learned multi-class picker ({ctx.rel(learned)}), coloured by "
                               "the class it gave them; +: the true particles."))
    pe = inp.pick_evaluation
    if pe is None:
        parts.append(not_available("no picking evaluation (a JSON from evaluating picks against the truth)"))
        return "".join(parts)
    e = pe.data
    params = f"hit_fraction={format_value(e.get('hit_fraction'))}, n_picks={e.get('n_picks')}, n_true={e.get('n_true')}, " \
             f"voxel_size_a={format_value(e.get('voxel_size_a'))}"
    if inp.picks_star is not None and inp.picks_star.with_suffix(".json").is_file():
        pj = read_json(inp.picks_star.with_suffix(".json"), ctx.notes) or {}
        extra = param_text({k: v for k, v in pj.items() if k not in PICKS_JSON_SKIPPED}, limit=8)
        params += f", {extra}" if extra else ""
    rows = []
    for label, key in (("localisation", "localisation"), ("localisation and class", "localisation_and_class")):
        score = e.get(key)
        if isinstance(score, Mapping):
            for q in ("f1", "precision", "recall"):
                ctx.add(f"picking {'F1' if q == 'f1' else q} ({label})", score.get(q), "", pe.path, params)
            rows.append([label, score.get("tp"), score.get("fp"), score.get("fn"), score.get("precision"),
                         score.get("recall"), score.get("f1")])
    learned_eval = pe.path.with_name("learned_picks_evaluation.json")
    if learned_eval.is_file():
        le = read_json(learned_eval, ctx.notes) or {}
        for label, key in (("learned: localisation", "localisation"), ("learned: localisation and class", "localisation_and_class")):
            score = le.get(key)
            if isinstance(score, Mapping):
                rows.append([label, score.get("tp"), score.get("fp"), score.get("fn"), score.get("precision"), score.get("recall"),
                             score.get("f1")])  # fmt: skip
    parts.append(table(["matching", "TP", "FP", "FN", "precision", "recall", "F1"], rows,
                       caption="Picking scores (DoG + DSM-Net's classes; the learned picker's own classes where run)"))
    per = e.get("per_class") or {}
    if per:
        prow = []
        for name, entry in per.items():
            loc = entry.get("localisation") or {}
            lc = entry.get("localisation_and_class") or {}
            prow.append([name, entry.get("n_true"), entry.get("n_picked"), loc.get("recall"), lc.get("precision"),
                         lc.get("recall"), lc.get("f1")])
        parts.append(table(["class", "true", "picked", "recall (localisation)", "precision (with class)",
                            "recall (with class)", "F1 (with class)"], prow, caption="Per class"))
    return "".join(parts)
