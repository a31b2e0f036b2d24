"""Many tomograms at once: project sources (folder, copick, RELION 5), the per-tomogram pipeline and its Dask batch.

- :mod:`cryomine.project.sources`: :func:`read_project` -> :class:`ProjectTomogram` list.
- :mod:`cryomine.project.config`: :class:`ProjectConfig` (what is done), :class:`BatchOptions` (how it is spread).
- :mod:`cryomine.project.pipeline`: :func:`run_tomogram`, one tomogram pick -> ... -> average.
- :mod:`cryomine.project.batch`: :func:`run_project`, ``cryomine run PROJECT``.
- :mod:`cryomine.project.outputs`, :mod:`cryomine.project.finish`: the project-level outputs (RELION 5 project,
  copick write-back, report).
"""

from cryomine.project.batch import ProjectResult, run_project, tomogram_folder
from cryomine.project.config import BatchOptions, ProjectConfig
from cryomine.project.finish import WriteBack, finish_project
from cryomine.project.pipeline import is_finished, run_tomogram
from cryomine.project.sources import ProjectTomogram, project_kind, read_project

__all__ = [
    "BatchOptions",
    "ProjectConfig",
    "ProjectResult",
    "ProjectTomogram",
    "WriteBack",
    "finish_project",
    "is_finished",
    "project_kind",
    "read_project",
    "run_project",
    "run_tomogram",
    "tomogram_folder",
]
