"""The tomograms of a project, from any of the layouts users keep them in.

- a **folder** of tomograms (MRC ``.mrc .rec .map``, TOM ``.em``, OME-Zarr ``.zarr``), each with its metadata
  sidecars as the single commands find them (``<stem>.json``, ``.tlt``, ``.xml``, ...); the label maps a simulated
  tomogram's JSON names (``label_maps``: ``<stem>_classes.mrc``, ``<stem>_membranes.mrc``) are not tomograms;
- a **copick project** config (``.json`` with ``config_type``): one tomogram per run, the ``tomo_type`` OME-Zarr
  image at the project's voxel spacing (``--voxel-size`` chooses among several);
- a **RELION 5** ``tomograms.star``: one tomogram per row, the file ``rlnTomoReconstructedTomogram`` (RELION's
  *Reconstruct tomograms* job) or else ``<name>.mrc`` / ``rec_<name>.mrc`` beside the STAR file; the STAR file is the
  tomogram's acquisition metadata (optics, tilt angles, defoci, dose, polarity).

Every tomogram becomes a :class:`ProjectTomogram`: a name (the run / tomogram name, safe as a folder name), its
volume path, the metadata files that describe it, and where it came from.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryomine.errors import InputError
from cryomine.io.copick_project import open_project, run_tomogram_path
from cryomine.io.star import read_tomograms
from cryomine.io.tomo_particles import tomo_key
from cryomine.io.volume import volume_kind

__all__ = ["ProjectTomogram", "project_kind", "read_project"]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass(frozen=True)
class ProjectTomogram:
    """One tomogram of a project.

    Attributes:
        name: its name in the project (copick run, RELION ``rlnTomoName`` without suffix, or file stem); the
            name of its output folder and the ``rlnTomoName`` of its picks.
        path: the volume (MRC, ``.em`` or an OME-Zarr image).
        files: metadata files read for it (``--acquisition``), e.g. the project's ``tomograms.star``.
        copick_run: the copick run it is (copick projects only).
    """

    name: str
    path: Path
    files: tuple[Path, ...] = ()
    copick_run: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "files": [str(f) for f in self.files], "copick_run": self.copick_run}


def _checked_name(name: str, source: Path) -> str:
    if not _SAFE.match(name):
        raise InputError(f"tomogram name {name!r} cannot name an output folder (letters, digits, . _ + - only)", source)
    return name


def project_kind(source: str | os.PathLike[str]) -> str:
    """``folder``, ``copick`` or ``relion`` for a project source (module docstring); :class:`InputError` otherwise."""
    p = Path(source)
    if not p.exists():
        raise InputError("project not found (a folder of tomograms, a copick config .json or a RELION 5 tomograms.star)", p)
    if p.is_dir() and volume_kind(p) is None:
        return "folder"
    if p.suffix.lower() == ".json":
        return "copick"
    if p.suffix.lower() == ".star":
        return "relion"
    raise InputError("not a project: expected a folder of tomograms, a copick config .json or a RELION 5 tomograms.star", p)


def read_project(source: str | os.PathLike[str], *, tomo_type: str = "wbp", voxel_size_a: float | None = None,
                 pattern: str = "*", only: tuple[str, ...] = ()) -> list[ProjectTomogram]:
    """The tomograms of ``source`` in a stable order (sorted by name). ``tomo_type`` / ``voxel_size_a``: which copick
    tomogram; ``pattern``: a glob over a folder's entries; ``only``: keep these names (each must exist)."""
    p = Path(source)
    kind = project_kind(p)
    tomos = (_folder(p, pattern) if kind == "folder" else _copick(p, tomo_type, voxel_size_a) if kind == "copick"
             else _relion(p))  # fmt: skip
    names = [t.name for t in tomos]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise InputError(f"tomogram names occur twice: {', '.join(clash[:5])}", p)
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise InputError(f"no tomogram named {', '.join(missing[:5])} (has {', '.join(names[:6])})", "--tomogram")
        tomos = [t for t in tomos if t.name in only]
    if not tomos:
        raise InputError(f"no tomograms found ({kind} project{f', pattern {pattern!r}' if kind == 'folder' else ''})", p)
    return sorted(tomos, key=lambda t: t.name)


def _label_maps(folder: Path) -> set[str]:
    """Volumes a tomogram's cryomine JSON names as its ground-truth label maps (``label_maps``): not tomograms."""
    names: set[str] = set()
    for sidecar in folder.glob("*.json"):
        try:
            data = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not ours to judge here: the tomogram's own reading names a damaged sidecar
        if isinstance(data, dict) and isinstance(data.get("label_maps"), list):
            names.update(str(n) for n in data["label_maps"])
    return names


def _folder(p: Path, pattern: str) -> list[ProjectTomogram]:
    out = []
    skip = _label_maps(p)
    for entry in sorted(p.glob(pattern)):
        kind = volume_kind(entry)
        if kind is None or entry.suffix.lower() == ".mrcs" or entry.name in skip:
            continue
        name = entry.name.removesuffix(".zarr") if kind == "omezarr" else entry.stem
        out.append(ProjectTomogram(_checked_name(name, entry), entry))
    return out


def _copick(p: Path, tomo_type: str, voxel_size_a: float | None) -> list[ProjectTomogram]:
    try:
        config = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable copick config ({type(exc).__name__})", p) from None
    if not isinstance(config, dict) or "pickable_objects" not in config:
        raise InputError("not a copick project config (no pickable_objects)", p)
    root = open_project(p)
    out = []
    for run in root.runs:
        path = run_tomogram_path(root, run.name, tomo_type, voxel_size_a)
        if path is not None:
            out.append(ProjectTomogram(_checked_name(run.name, p), path, copick_run=run.name))
    if not out and root.runs:
        raise InputError(f"no run has a {tomo_type!r} tomogram{f' at {voxel_size_a:g} Å' if voxel_size_a else ''} "
                         f"(runs: {', '.join(r.name for r in root.runs[:6])}); choose with --tomo-type / --voxel-size", p)  # fmt: skip
    return out


def _relion(p: Path) -> list[ProjectTomogram]:
    table: pd.DataFrame = read_tomograms(p)
    out = []
    for _, row in table.iterrows():
        name = tomo_key(row["rlnTomoName"])
        given = row.get("rlnTomoReconstructedTomogram")
        candidates = [Path(str(given))] if isinstance(given, str) and given else []
        candidates = [c if c.is_absolute() else p.parent / c for c in candidates] or [
            p.parent / f"{name}.mrc", p.parent / f"rec_{name}.mrc", p.parent / "tomograms" / f"rec_{name}.mrc"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise InputError(f"tomogram {name}: no reconstructed tomogram (looked for {', '.join(str(c) for c in candidates)}); "
                             "run RELION's Reconstruct tomograms job or put <name>.mrc beside the STAR file", p)  # fmt: skip
        out.append(ProjectTomogram(_checked_name(name, p), found, files=(p,)))
    return out
