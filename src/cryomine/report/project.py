"""The project report of ``cryomine run``: one self-contained page over every tomogram of a project.

Sections: counts per class per tomogram (one short table, the most frequent classes as columns); for each tomogram
its picks coloured by predicted class on central slices, its atlas and its discovery t-SNE; every average as an
isosurface (at the level enclosing the class's bundled structure, else 10% of the box), its central slices and its FSC
curve; the settings in one short table; tomograms that failed, with their error line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import read_mrc
from cryomine.io.volume import open_volume
from cryomine.report.figures import montage_png, tomogram_picks_figure
from cryomine.report.html import Section, figure_data_uri, image, not_available, page, paragraph, png_data_uri, png_file_data_uri, table
from cryomine.report.inputs import read_table
from cryomine.report.sections import ENCLOSED_FRACTION, cluster_isosurfaces
from cryomine.report.tomogram_section import read_points
from cryomine.structures import bundled_radius_a
from cryomine.viz import fsc_figure, isosurface_figure

__all__ = ["PROJECT_REPORT", "build_project_report"]

PROJECT_REPORT = "report.html"
MAX_CLASS_COLUMNS = 8


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable ({type(exc).__name__})", path) from None


def _counts_section(summary: dict[str, Any]) -> str:
    totals = summary.get("class_totals", {})
    shown = sorted(totals, key=lambda c: (-totals[c], c))[:MAX_CLASS_COLUMNS]
    rows = []
    for name, entry in summary["tomograms"].items():
        if "error" in entry:
            rows.append([name, "failed", *[""] * (len(shown) + 1)])
            continue
        counts = entry["class_counts"]
        other = sum(n for c, n in counts.items() if c not in shown)
        rows.append([name, entry["picks"], *[counts.get(c, 0) for c in shown], other])
    rows.append(["all", sum(e.get("picks", 0) for e in summary["tomograms"].values()), *[totals[c] for c in shown],
                 sum(n for c, n in totals.items() if c not in shown)])  # fmt: skip
    return table(["tomogram", "picks", *shown, "other"], rows, caption="Picks per predicted class (DSM-Net) in each tomogram")


def _enclosed(name: str, box: int, voxel_size_a: float) -> float:
    radius = bundled_radius_a(name)
    if radius is None:
        return ENCLOSED_FRACTION
    return float(np.clip(4.0 / 3.0 * np.pi * (radius / voxel_size_a) ** 3 / box**3, 0.01, 0.5))


def _tomogram_part(folder: Path, summary: dict[str, Any]) -> str:
    parts = []
    tomo_path = Path(summary["tomogram"]["path"])
    vs = float(summary["voxel_size_a"])
    picks = folder / "predict" / "predictions.star"
    if picks.is_file() and tomo_path.exists():
        points = read_points(picks)
        radius = {n: (bundled_radius_a(n) or 5.0 * vs) / vs for n in set(points.classes or ())} or 5.0
        with open_volume(tomo_path) as vol:
            fig = tomogram_picks_figure(vol.data, points, radius_vox=radius, title=f"{summary['tomogram']['name']}: {len(points)} picks")
        parts.append(image(figure_data_uri(fig, dpi=80), "picks on slices", "Central slices; circles: picks, coloured by predicted class."))
    elif not tomo_path.exists():
        parts.append(not_available(f"tomogram {tomo_path} not found (moved?)"))
    for png, alt, caption in ((folder / "atlas.png", "atlas", "Atlas: each pick's predicted structure at its position (top and side)."),
                              (folder / "discover" / "tsne.png", "t-SNE", "Discovery: t-SNE of DSM-Net features, coloured by cluster.")):
        if png.is_file():
            parts.append(image(png_file_data_uri(png), alt, caption))
    parts.append(cluster_isosurfaces(folder / "discover"))
    return "".join(parts)


def _averages_section(out: Path, summary: dict[str, Any]) -> str:
    maps, enclosed, curves, rows = {}, {}, {}, []
    for name, entry in summary["tomograms"].items():
        for cls, avg in (entry.get("averages") or {}).items():
            folder = out / "tomograms" / name / avg["folder"]
            if not (folder / "average.mrc").is_file():
                continue
            vol = read_mrc(folder / "average.mrc")
            label = f"{name} {cls}"
            maps[label] = vol.data
            enclosed[label] = _enclosed(cls, vol.data.shape[0], vol.voxel_size_a)
            if (folder / "fsc.csv").is_file():
                df = read_table(folder / "fsc.csv", ("frequency_a_inv", "fsc"))
                curves[label] = (df["frequency_a_inv"].to_numpy(float), df["fsc"].to_numpy(float))
            rows.append([name, cls, avg["particles"], avg.get("resolution_fsc0143_a"), avg.get("resolution_fsc05_a")])
    if not maps:
        return not_available("no averages (no class reached the minimum number of particles)")
    parts = [table(["tomogram", "class", "particles", "FSC 0.143 (Å)", "FSC 0.5 (Å)"], rows, caption="Gold-standard half-map resolution"),
             image(figure_data_uri(isosurface_figure(maps, enclosed, title="Isosurfaces"), dpi=80), "isosurfaces",
                   "Each average at the level enclosing its class's bundled structure volume (else 10% of the box)."),
             image(png_data_uri(montage_png(maps)), "average slices", "Central slices (xy, xz, yz).")]  # fmt: skip
    if curves:
        parts.append(image(figure_data_uri(fsc_figure(curves, "FSC between half maps"), dpi=80), "FSC", "FSC between half maps."))
    return "".join(parts)


def _settings_section(project: dict[str, Any]) -> str:
    config = {k: v for k, v in project.get("config", {}).items() if v is not None}
    rows = [[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in config.items()]
    return paragraph(f"Project: {project.get('source')} ({project.get('kind')}), cryomine {project.get('cryomine_version')}.") + table(
        ["setting", "value"], rows, caption="Resolved settings (project.json)")


def build_project_report(out: str | os.PathLike[str]) -> Path:
    """Write ``<out>/report.html`` for the project run folder ``out``; returns its path."""
    out = Path(out)
    project, summary = _load(out / "project.json"), _load(out / "summary.json")
    sections = [Section("counts", "Picks per class and tomogram", _counts_section(summary))]
    for name, entry in summary["tomograms"].items():
        folder = out / "tomograms" / name
        if "error" in entry or not (folder / "summary.json").is_file():
            continue
        sections.append(Section(f"tomo-{''.join(c if c.isalnum() else '-' for c in name)}", f"Tomogram {name}",
                                _tomogram_part(folder, _load(folder / "summary.json"))))  # fmt: skip
    sections.append(Section("averages", "Averages", _averages_section(out, summary)))
    failed = [[n, e["error"]] for n, e in summary["tomograms"].items() if "error" in e]
    if failed:
        sections.append(Section("failed", "Tomograms that failed", table(["tomogram", "error"], failed)))
    sections.append(Section("settings", "Settings", _settings_section(project)))
    meta = [f"{summary['finished']} of {len(summary['tomograms'])} tomograms finished", f"source {project.get('source')}"]
    path = out / PROJECT_REPORT
    with atomic_output(path) as tmp:
        tmp.write_text(page("cryomine project report", sections, meta))
    return path
