"""The project-level outputs of ``cryomine run``, written from the finished tomograms' folders.

- :func:`project_particles`: every tomogram's ``particles.star`` in one table (``rlnTomoName`` = the tomogram):
  predicted classes, and the orientations and shifts the averaging refined (``cmAveraged`` 1; 0 angles otherwise).
- :func:`write_relion_project`: ``<out>/relion/`` (:mod:`cryomine.io.relion_project`), for RELION 5's subtomogram jobs.
- :func:`write_back_copick`: picks (class = copick object, score, the refined orientation as the transform and the
  refined centre as the location), two multilabel segmentations (``cryomine-dsmnet``:
  DSM-Net's masks pasted at the picks; ``cryomine-atlas``: the predicted structures placed at the picks) and
  the average with the most particles of each object (copick keeps one density map per object) into the copick
  project, for copick and napari-copick. A predicted class is written as the object ``objects[class]`` (default:
  the object named like the class); classes that are not pickable objects of the project are left out and counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryomine.acquisition import Acquisition
from cryomine.io.copick_project import open_project, write_project_average, write_project_picks, write_project_segmentation
from cryomine.io.mrc import read_mrc
from cryomine.io.relion_project import RelionTomogram, write_relion5_project
from cryomine.io.star import ORIGIN_COLUMNS, ParticleTable, coordinates_xyz_voxels, read_particles
from cryomine.project.pipeline import SUMMARY
from cryomine.project.sources import ProjectTomogram

__all__ = ["project_particles", "write_back_copick", "write_relion_project"]


def _summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / SUMMARY).read_text())


def _predicted(folder: Path) -> ParticleTable | None:
    """A finished tomogram's ``particles.star`` (classes, refined poses where averaged), None when it had no picks."""
    star = folder / "particles.star"
    return read_particles(star) if star.exists() else None


def _centred(table: ParticleTable, voxel_size_a: float) -> ParticleTable:
    """``table`` with the refined shifts applied to the positions (RELION: centre = coordinate - origin) and the origin
    columns dropped: for copick, whose picks hold the centre itself."""
    frame = table.particles.copy()
    if set(ORIGIN_COLUMNS) <= set(frame.columns):
        xyz = coordinates_xyz_voxels(table) - frame[list(ORIGIN_COLUMNS)].to_numpy(np.float64) / voxel_size_a
        frame[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]] = xyz
        frame = frame.drop(columns=list(ORIGIN_COLUMNS))
    return replace(table, particles=frame)


def project_particles(out: Path, tomograms: list[ProjectTomogram]) -> ParticleTable:
    """The predicted particles of every finished tomogram (voxel coordinates of its own tomogram; ``rlnTomoName``)."""
    tables = [t for t in (_predicted(out / "tomograms" / tomo.name) for tomo in tomograms) if t is not None]
    if not tables:
        return ParticleTable(particles=pd.DataFrame(columns=["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnTomoName"]))
    keep = [c for c in tables[0].particles.columns if c != "rlnOpticsGroup"]
    frame = pd.concat([t.particles[[c for c in keep if c in t.particles]] for t in tables], ignore_index=True)
    return ParticleTable(particles=frame)


def write_relion_project(out: Path, tomograms: list[ProjectTomogram]) -> dict[str, Path]:
    """``<out>/relion/``: the finished tomograms and their predicted particles as a RELION 5 project."""
    entries = []
    for tomo in tomograms:
        s = _summary(out / "tomograms" / tomo.name)
        acq = Acquisition.from_dict(s["acquisition"])
        entries.append(RelionTomogram(tomo.name, tuple(s["shape_zyx"]), float(s["voxel_size_a"]), Path(tomo.path).resolve(),
                                      acq.voltage_kv, acq.cs_mm, acq.amplitude_contrast))  # fmt: skip
    return write_relion5_project(out / "relion", entries, project_particles(out, tomograms))


def write_back_copick(config_path: Path, out: Path, tomograms: list[ProjectTomogram], objects: Mapping[str, str] | None = None,
                      session_id: str = "0") -> dict[str, Any]:  # fmt: skip
    """Write every finished copick tomogram's picks, class labels and averages into the project (module docstring).
    Returns what was written: picks per object, runs with a segmentation, averages, classes left out."""
    root = open_project(config_path)
    known = {o.name for o in root.config.pickable_objects}
    mapping = {**{c: c for c in known}, **dict(objects or {})}
    written: dict[str, Any] = {"picks": {}, "segmentations": [], "averages": [], "left_out": {}}
    best: dict[str, tuple[int, Path, float, str]] = {}
    for tomo in (t for t in tomograms if t.copick_run):
        folder = out / "tomograms" / tomo.name
        s, table = _summary(folder), _predicted(folder)
        if table is None:
            continue
        names = table.particles["rlnClassName"].astype(str).map(lambda c: mapping.get(c, "")).to_numpy()
        for cls in table.particles["rlnClassName"].astype(str)[names == ""]:
            written["left_out"][cls] = written["left_out"].get(cls, 0) + 1
        table = _centred(table, s["voxel_size_a"])
        kept = replace(table, particles=table.particles[names != ""].assign(rlnClassName=names[names != ""]).reset_index(drop=True))
        if len(kept.particles):
            for obj, n in write_project_picks(root, tomo.copick_run, kept, s["voxel_size_a"], session_id=session_id).items():
                written["picks"][obj] = written["picks"].get(obj, 0) + n
        label_names = {k + 1: mapping.get(c, "") for k, c in enumerate(s["atlas_classes"])}
        for file, name in (("segmentation_labels.mrc", "cryomine-dsmnet"), ("atlas_labels.mrc", "cryomine-atlas")):
            labels = read_mrc(folder / file).data.astype(np.int32)
            write_project_segmentation(root, tomo.copick_run, labels, label_names, s["voxel_size_a"], name=name, session_id=session_id)
            written["segmentations"].append(f"{tomo.copick_run}:{name}")
        for cls, entry in s["averages"].items():
            obj = mapping.get(cls)
            if obj in known and entry["particles"] > best.get(obj, (0,))[0]:
                best[obj] = (entry["particles"], folder / entry["folder"] / "average.mrc", s["voxel_size_a"], f"{tomo.name}:{cls}")
    for obj, (n, path, voxel_size_a, what) in sorted(best.items()):  # copick keeps one map per object: the best-supported
        write_project_average(root, obj, read_mrc(path).data, voxel_size_a)
        written["averages"].append(f"{what} ({n} particles) -> {obj}")
    return written
