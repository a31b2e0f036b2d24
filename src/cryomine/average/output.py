"""Outputs of subtomogram averaging (:func:`write_results`): the map(s), half maps, FSC curves (CSV and one
PNG), ``particles.star`` with the final poses, classes and half sets, and ``summary.json``.

``particles.star`` is a RELION 5 particles file: positions in the tomogram (``rlnCoordinateX/Y/Z``, voxels),
``rlnTomoName``, the found poses (``rlnAngleRot/Tilt/Psi``, ``rlnOrigin*Angst``), ``rlnClassNumber``,
``rlnRandomSubset`` and the optics table; ``cmParticle`` (``index@source``) names each input particle. It has no
``rlnImageName``: cryomine's boxes are not image files RELION could read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cryomine.average.checkpoint import jsonable
from cryomine.average.classify import AverageResult
from cryomine.average.particles import ParticleData
from cryomine.evaluate.fsc import plot_fsc, write_fsc_csv
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import write_mrc
from cryomine.io.star import make_particles, write_particles

__all__ = ["map_names", "write_results"]


def map_names(n_classes: int) -> list[str]:
    """Output stems: ``average`` for one class, ``class_01``, ``class_02``, ... for several."""
    return ["average"] if n_classes == 1 else [f"class_{c + 1:02d}" for c in range(n_classes)]


def write_results(out_dir: str | os.PathLike[str], result: AverageResult, data: ParticleData, summary: dict) -> dict[str, Path]:
    """Write maps, half maps, FSC CSVs + PNG, ``particles.star`` and ``summary.json`` of a finished run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    names = map_names(len(result.maps))
    for c, stem in enumerate(names):
        files[stem] = write_mrc(out / f"{stem}.mrc", result.maps[c], data.voxel_size_a)
        for h in (0, 1):
            files[f"{stem}_half{h + 1}"] = write_mrc(out / f"{stem}_half{h + 1}.mrc", result.half_maps[c][h], data.voxel_size_a)
        files[f"{stem}_fsc"] = write_fsc_csv(out / ("fsc.csv" if len(names) == 1 else f"{stem}_fsc.csv"), result.fsc[c])
    curves = {stem: result.fsc[c] for c, stem in enumerate(names)}
    files["fsc_png"] = plot_fsc(out / "fsc.png", curves, title="gold-standard FSC between half maps")
    ali = result.alignment
    origins = -ali.shifts_zyx[:, ::-1] * data.voxel_size_a  # RELION: centre = coordinate - origin
    table = make_particles(
        data.coords_xyz, ali.eulers_zyz, tomo_name=data.tomo_name, class_number=result.classes.astype(np.int64) + 1,
        extra={
            "rlnOriginXAngst": origins[:, 0], "rlnOriginYAngst": origins[:, 1], "rlnOriginZAngst": origins[:, 2],
            "rlnRandomSubset": result.half.astype(np.int64) + 1, "cmParticle": np.asarray(data.names),
        },
    )  # fmt: skip
    files["star"] = write_particles(out / "particles.star", table, pixel_size_a=data.voxel_size_a)
    files["summary"] = out / "summary.json"
    with atomic_output(files["summary"]) as tmp:
        tmp.write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    return files
