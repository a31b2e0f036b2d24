"""The project-level outputs of ``cryomine run``, written once every tomogram is through: the RELION 5 project of the
particles, the copick write-back (:class:`WriteBack`) and the project report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryomine.project.outputs import write_back_copick, write_relion_project
from cryomine.project.sources import ProjectTomogram
from cryomine.report.project import build_project_report

__all__ = ["WriteBack", "finish_project"]


@dataclass(frozen=True)
class WriteBack:
    """Write results back into the copick project ``config`` (predicted class -> copick object by ``objects``, default
    the same name), as user ``cryomine`` and session ``session``."""

    config: Path
    objects: Mapping[str, str] = field(default_factory=dict)
    session: str = "0"


def finish_project(out: Path, tomograms: list[ProjectTomogram], write_back: WriteBack | None = None) -> list[str]:
    """Write ``<out>/relion/``, the copick write-back and ``<out>/report.html``; returns one line per output."""
    lines = []
    paths = write_relion_project(out, tomograms)
    lines.append(f"RELION 5 project: {paths['optimisation_set']} (particles {paths['particles'].name}, tomograms {paths['tomograms'].name})")
    if write_back is not None:
        done = write_back_copick(Path(write_back.config), out, tomograms, write_back.objects, write_back.session)
        picks = ", ".join(f"{k} {v}" for k, v in sorted(done["picks"].items())) or "none"
        left = ", ".join(f"{k} {v}" for k, v in sorted(done["left_out"].items()))
        note = f"; not pickable objects, left out: {left} (map them with --copick-object)" if left else ""
        lines.append(f"copick {write_back.config}: picks {picks}; {len(done['segmentations'])} segmentation(s), "
                     f"{len(done['averages'])} average(s){note}")  # fmt: skip
    lines.append(f"report: {build_project_report(out)}")
    return lines
