"""copick projects (the CZII challenge's and the CZ cryoET Data Portal's layout): tomograms and picks in and out,
through the ``copick`` package (a local filesystem project config, or any config copick opens).

Conventions at this boundary:

- copick stores a pick's ``location`` in Å (``(x, y, z)``, voxel ``i`` at ``i * voxel_size``) and a 4x4
  ``transformation`` from object space to tomogram space, whose translation (Å) is added to the location. cryomine's
  STAR tables hold 0-based voxel coordinates ``rlnCoordinateX/Y/Z`` of a tomogram at ``voxel_size_a`` and RELION ZYZ
  Euler angles whose matrix ``A`` rotates the reference into the particle (acts on ``(x, y, z)``): the same map, so
  ``transformation[:3, :3] = A``.
- The class of a pick is its copick object name (``rlnClassName``); the score is ``rlnAutopickFigureOfMerit``.
- Picks cryomine writes have ``user_id`` "cryomine" and the session id given (default "0").

Requires the optional ``copick`` package (``pip install 'cryomine[copick]'``) to open a project; importing this
module does not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryomine.errors import InputError
from cryomine.geometry.euler import euler_zyz_to_matrix, matrix_to_euler_zyz
from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.io.mrc import Volume
from cryomine.io.star import ParticleTable, coordinates_xyz_voxels, eulers_zyz, make_particles

__all__ = ["open_project", "project_runs", "read_project_picks", "read_project_tomogram", "run_tomogram_path",
           "write_project_average", "write_project_picks", "write_project_segmentation"]

USER_ID = "cryomine"
SCORE = "rlnAutopickFigureOfMerit"


def open_project(config: str | os.PathLike[str]):
    """The copick root of the project config file ``config``; :class:`InputError` naming it when it cannot be
    opened (missing, not JSON, not a copick config)."""
    p = Path(config)
    if not p.is_file():
        raise InputError("copick project config not found" if not p.exists() else "not a file", p)
    try:
        import copick  # the optional dependency, needed only when a project is opened
    except ImportError:
        raise InputError("needs the optional 'copick' package: pip install 'cryomine[copick]'", p) from None
    try:
        return copick.from_file(str(p))
    except Exception as exc:  # pydantic, JSON and file-system errors of many kinds
        raise InputError(f"not a readable copick project config ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})", p) from None


def project_runs(root) -> list[str]:
    """The names of the project's runs (one tomogram each, per voxel spacing and tomogram type)."""
    return [r.name for r in root.runs]


def _run(root, name: str):
    run = root.get_run(name)
    if run is None:
        raise InputError(f"no run {name!r} in the copick project (runs: {', '.join(project_runs(root)[:8]) or 'none'})", "--run")
    return run


def read_project_tomogram(root, run: str, voxel_size_a: float, tomo_type: str, level: str = "0") -> Volume:
    """The ``(z, y, x)`` tomogram ``tomo_type`` of ``run`` at ``voxel_size_a`` (pyramid ``level``), as a float32
    :class:`Volume` with the level's voxel size (``voxel_size_a * 2**level`` for copick's pyramids)."""
    vs = check_voxel_size(voxel_size_a, "--voxel-size")
    spacing = _run(root, run).get_voxel_spacing(vs)
    if spacing is None:
        raise InputError(f"run {run!r} has no tomograms at {vs:g} Å", "--voxel-size")
    tomo = spacing.get_tomogram(tomo_type)
    if tomo is None:
        kinds = sorted({t.tomo_type for t in spacing.tomograms})
        raise InputError(f"run {run!r} has no {tomo_type!r} tomogram at {vs:g} Å (has: {', '.join(kinds) or 'none'})", "--tomo-type")
    try:
        data = tomo.numpy(zarr_group=str(level))
    except (KeyError, ValueError) as exc:
        raise InputError(f"tomogram {tomo_type!r} of run {run!r}: {' '.join(str(exc).split())[:160]}", "--level") from None
    return Volume(data=check_volume(data, f"{run}/{tomo_type}"), voxel_size_a=vs * 2 ** int(level))


def _local(url: str) -> Path:
    return Path(url.removeprefix("local://").removeprefix("file://"))


def run_tomogram_path(root, run: str, tomo_type: str, voxel_size_a: float | None = None) -> Path | None:
    """The OME-Zarr folder of ``run``'s ``tomo_type`` tomogram on a local filesystem project, at ``voxel_size_a``
    (None: the run's only voxel spacing holding one); None when the run has none. Several candidate spacings without
    ``voxel_size_a`` is an :class:`InputError` (say which with --voxel-size)."""
    spacings = _run(root, run).voxel_spacings
    if voxel_size_a is not None:
        vs = check_voxel_size(voxel_size_a, "--voxel-size")
        spacings = [s for s in spacings if abs(s.voxel_size - vs) < 1e-3]
    tomos = [t for s in spacings for t in s.tomograms if t.tomo_type == tomo_type]
    if len(tomos) > 1:
        sizes = ", ".join(f"{t.voxel_spacing.voxel_size:g}" for t in tomos)
        raise InputError(f"run {run!r} has {tomo_type!r} tomograms at several voxel sizes ({sizes} Å): choose with --voxel-size", "--voxel-size")
    if not tomos:
        return None
    for url in (tomos[0].overlay_path, tomos[0].static_path):
        if url and _local(url).exists():
            return _local(url)
    raise InputError(f"run {run!r}: tomogram {tomo_type!r} is not on a local filesystem ({tomos[0].overlay_path})", "--tomo-type")


def read_project_picks(root, run: str, voxel_size_a: float, object_name: str | None = None,
                       user_id: str | None = None, session_id: str | None = None) -> ParticleTable:
    """The picks of ``run`` (of one object, user and session, or all of them) as a STAR table of voxel coordinates at
    ``voxel_size_a`` with orientations, ``rlnClassName`` (the object) and scores; ``rlnTomoName`` is the run."""
    vs = check_voxel_size(voxel_size_a, "--voxel-size")
    picks = _run(root, run).get_picks(object_name=object_name, user_id=user_id, session_id=session_id)
    coords, mats, names, scores = [], [], [], []
    for pk in picks:
        points, transforms = pk.numpy()
        if not len(points):
            continue
        coords.append((points + transforms[:, :3, 3]) / vs)  # the particle centre, in voxels
        mats.append(transforms[:, :3, :3])
        names += [pk.pickable_object_name] * len(points)
        scores.append(pk.scores())
    if not coords:
        return make_particles(np.zeros((0, 3)), eulers_zyz=np.zeros((0, 3)), tomo_name=run, pixel_size_a=vs,
                              extra={"rlnClassName": np.array([], dtype=object), SCORE: np.zeros(0)})  # fmt: skip
    return make_particles(np.concatenate(coords), eulers_zyz=matrix_to_euler_zyz(np.concatenate(mats)), tomo_name=run,
                          pixel_size_a=vs, extra={"rlnClassName": np.array(names, dtype=object), SCORE: np.concatenate(scores)})


def write_project_picks(root, run: str, table: ParticleTable, voxel_size_a: float, object_name: str | None = None,
                        session_id: str = "0", user_id: str = USER_ID) -> dict[str, int]:
    """Write ``table`` (voxel coordinates at ``voxel_size_a``) into ``run`` as copick picks, one picks file per class
    (``rlnClassName``, or ``object_name`` for all); every class must be a pickable object of the project. Existing picks
    of the same object, user and session are replaced. Returns the number of picks written per object."""
    vs = check_voxel_size(voxel_size_a, "--voxel-size")
    frame = table.particles
    names = np.full(len(frame), object_name, dtype=object) if object_name else (
        frame["rlnClassName"].astype(str).to_numpy() if "rlnClassName" in frame else None)
    if names is None:
        raise InputError("picks have no rlnClassName: give the copick object to write them as (--object)", "--object")
    known = {o.name for o in root.config.pickable_objects}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InputError(f"class(es) {', '.join(unknown)} are not pickable objects of the project ({', '.join(sorted(known))})", "--object")
    target = _run(root, run)
    centres_a = coordinates_xyz_voxels(table) * vs
    mats = euler_zyz_to_matrix(eulers_zyz(table)) if "rlnAngleRot" in frame else np.tile(np.eye(3), (len(frame), 1, 1))
    scores = pd.to_numeric(frame[SCORE], errors="coerce").to_numpy(float) if SCORE in frame else np.ones(len(frame))
    counts = {}
    for name in sorted(set(names)):
        sel = names == name
        transforms = np.tile(np.eye(4), (int(sel.sum()), 1, 1))
        transforms[:, :3, :3] = mats[sel]
        picks = target.new_picks(object_name=name, session_id=session_id, user_id=user_id, exist_ok=True)
        picks.from_numpy(centres_a[sel], transforms, scores=np.nan_to_num(scores[sel], nan=1.0))
        counts[name] = int(sel.sum())
    return counts


def write_project_segmentation(root, run: str, labels: np.ndarray, names: dict[int, str], voxel_size_a: float,
                               name: str = "cryomine-classes", session_id: str = "0", user_id: str = USER_ID) -> dict[str, int]:
    """Write a ``(z, y, x)`` label map (``names``: cryomine label -> class name; 0 and labels of classes that are not
    pickable objects of the project, such as membranes, become background) into ``run`` as a copick multilabel
    segmentation whose voxels hold the objects' copick labels. Returns the voxels written per object."""
    vs = check_voxel_size(voxel_size_a, "--voxel-size")
    arr = np.asarray(labels)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"a label map must be a 3-D integer array, got {arr.dtype} of shape {arr.shape}", "labels")
    objects = {o.name: int(o.label) for o in root.config.pickable_objects}
    out = np.zeros(arr.shape, np.uint8 if max(objects.values(), default=0) < 256 else np.uint16)
    counts = {}
    for label, cls in names.items():
        if int(label) == 0 or cls not in objects:
            continue
        where = arr == int(label)
        out[where] = objects[cls]
        counts[cls] = int(where.sum())
    seg = _run(root, run).new_segmentation(voxel_size=vs, name=name, session_id=session_id, is_multilabel=True,
                                           user_id=user_id, exist_ok=True)
    seg.from_numpy(out)
    return counts


def write_project_average(root, object_name: str, average: np.ndarray, voxel_size_a: float) -> Path:
    """Write a ``(z, y, x)`` average as the density map of the pickable object ``object_name`` (copick keeps one map
    per object, ``Objects/<name>.zarr``, shown by copick and napari-copick with the object); returns its folder."""
    vs = check_voxel_size(voxel_size_a, "--voxel-size")
    obj = root.get_object(object_name)
    if obj is None:
        known = ", ".join(sorted(o.name for o in root.config.pickable_objects))
        raise InputError(f"{object_name!r} is not a pickable object of the project ({known})", "--object")
    obj.from_numpy(check_volume(np.asarray(average, np.float32), f"average of {object_name}"), vs)
    return _local(obj.overlay_path) if hasattr(obj, "overlay_path") else Path(object_name)
