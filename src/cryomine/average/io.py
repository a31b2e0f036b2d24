"""Inputs and outputs of subtomogram averaging.

Inputs (:func:`load_particles`): a cryomine subtomogram dataset (``.h5``: subtomograms, voxel size, tilt range and
optics from its generating config, ground truth when present), or a RELION particles STAR file plus the
tomogram (MRC) its coordinates refer to: boxes of ``box`` voxels are cut out around each particle centre
(``rlnCoordinate`` minus ``rlnOrigin*Angst`` when present), padded with the tomogram's mean where they leave it.
Every particle is normalised to zero mean and unit standard deviation.

Outputs (:func:`write_results`): the map(s), half maps, FSC curves (CSV and one PNG), ``particles.star`` with
the final poses, classes and half sets, ``summary.json``; and the checkpoint used by ``--resume``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import open_mrc_mmap, write_mrc
from cryomine.io.star import ORIGIN_COLUMNS, coordinates_xyz_voxels, make_particles, read_particles, write_particles
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.io.validate import check_voxel_size

if TYPE_CHECKING:
    from cryomine.average.classify import AverageResult

__all__ = ["ParticleData", "load_particles", "load_dataset", "load_star", "write_results", "save_checkpoint", "load_checkpoint"]


@dataclass(frozen=True)
class ParticleData:
    """Particles to average.

    ``particles``: ``(N, n, n, n)`` float32, normalised. ``voxel_size_a``: Å. ``tilt_range_deg``: the input's
    tilt range or None. ``microscope``: :class:`cryomine.simulate.ctf.MicroscopeConfig` of the input or None.
    ``coords_xyz``: ``(N, 3)`` positions in the source (voxels, x y z). ``names``: ``N`` particle names
    (``index@file``). ``tomo_name``: source name. ``true_eulers_zyz`` / ``true_classes`` / ``class_names``:
    ground truth when the input has it.
    """

    particles: np.ndarray
    voxel_size_a: float
    tilt_range_deg: tuple[float, float] | None
    microscope: object | None
    coords_xyz: np.ndarray
    names: list[str]
    tomo_name: str
    true_eulers_zyz: np.ndarray | None = None
    true_classes: np.ndarray | None = None
    class_names: list[str] | None = None

    @property
    def box(self) -> int:
        return int(self.particles.shape[-1])


def _normalise(stack: np.ndarray) -> np.ndarray:
    flat = stack.reshape(stack.shape[0], -1)
    mean = flat.mean(1, keepdims=True)
    std = flat.std(1, keepdims=True)
    return ((flat - mean) / np.where(std > 0, std, 1.0)).reshape(stack.shape).astype(np.float32)


def load_dataset(path: str | os.PathLike[str], max_particles: int | None = None) -> ParticleData:
    """Load a cryomine dataset file (all written rows, or the first ``max_particles``)."""
    p = Path(path)
    header = read_header(p)
    if header.n_written < 1:
        raise InputError("dataset has no subtomograms written", p)
    n = header.n_written if max_particles is None else min(header.n_written, int(max_particles))
    fields = ("subtomograms", "class_id") + (("eulers_zyz",) if header.has_ground_truth else ())
    rows = read_rows(p, fields, slice(0, n))
    vols = np.asarray(rows["subtomograms"], dtype=np.float32)
    if not np.isfinite(vols).all():
        raise InputError("subtomograms contain NaN/inf values", p)
    imaging = header.config.get("imaging") if isinstance(header.config, dict) else None
    tilt, microscope = None, None
    if isinstance(imaging, dict):
        t = imaging.get("tilt") or {}
        if "min_deg" in t and "max_deg" in t:
            tilt = (float(t["min_deg"]), float(t["max_deg"]))
        if isinstance(imaging.get("microscope"), dict):
            from cryomine.simulate.ctf import MicroscopeConfig

            try:
                microscope = MicroscopeConfig(**imaging["microscope"])
            except (TypeError, InputError):
                microscope = None
    classes = np.asarray(rows["class_id"], dtype=np.int64)
    c = header.size // 2
    return ParticleData(
        particles=_normalise(vols),
        voxel_size_a=check_voxel_size(header.voxel_size_a, p),
        tilt_range_deg=tilt,
        microscope=microscope,
        coords_xyz=np.full((n, 3), float(c)),
        names=[f"{i + 1:06d}@{p.name}" for i in range(n)],
        tomo_name=p.stem,
        true_eulers_zyz=np.asarray(rows["eulers_zyz"], np.float64) if "eulers_zyz" in rows else None,
        true_classes=classes if (classes >= 0).any() else None,
        class_names=list(header.class_names),
    )


def load_star(star: str | os.PathLike[str], tomogram: str | os.PathLike[str], box: int) -> ParticleData:
    """Cut ``box``³ subtomograms out of ``tomogram`` (MRC) at the particles of ``star`` (RELION STAR)."""
    if isinstance(box, bool) or not isinstance(box, int) or not 8 <= box <= 512:
        raise InputError(f"box must be an integer in [8, 512] voxels, got {box!r}", "--box")
    table = read_particles(star)
    tomo = Path(tomogram)
    df = table.particles
    if "rlnTomoName" in df.columns and df["rlnTomoName"].astype(str).nunique() > 1:
        keep = (df["rlnTomoName"].astype(str) == tomo.stem).to_numpy()
        if not keep.any():
            raise InputError(f"the STAR lists several tomograms and none is named {tomo.stem!r}", star)
        table = type(table)(particles=df[keep].reset_index(drop=True), optics=table.optics, other_blocks=table.other_blocks, particles_block=table.particles_block)
        df = table.particles
    with open_mrc_mmap(tomo) as (data, vs):
        coords = coordinates_xyz_voxels(table)
        if set(ORIGIN_COLUMNS) <= set(df.columns):
            coords = coords - df[list(ORIGIN_COLUMNS)].to_numpy(np.float64) / vs
        step = max(1, int(np.prod(data.shape) // 2_000_000))
        fill = float(np.asarray(data.reshape(-1)[::step], dtype=np.float64).mean())
        vols = np.stack([_cut(data, xyz[::-1], box, fill) for xyz in coords])
    if not np.isfinite(vols).all():
        raise InputError("tomogram contains NaN/inf values inside the particle boxes", tomo)
    names = [f"{i + 1:06d}@{Path(star).name}" for i in range(len(vols))]
    return ParticleData(
        particles=_normalise(vols), voxel_size_a=vs, tilt_range_deg=None, microscope=None, coords_xyz=coords,
        names=names, tomo_name=tomo.stem,
    )  # fmt: skip


def _cut(data: np.ndarray, centre_zyx: np.ndarray, box: int, fill: float) -> np.ndarray:
    """The ``box``³ region whose voxel ``box // 2`` is the voxel nearest ``centre_zyx``, padded with ``fill``."""
    out = np.full((box, box, box), fill, dtype=np.float32)
    start = np.rint(centre_zyx).astype(int) - box // 2
    src, dst = [], []
    for s, n in zip(start, data.shape):
        lo, hi = max(s, 0), min(s + box, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = data[tuple(src)]
    return out


def load_particles(
    source: str | os.PathLike[str], tomogram: str | os.PathLike[str] | None = None, box: int | None = None,
    max_particles: int | None = None,
) -> ParticleData:
    """A dataset (``.h5``/``.hdf5``) or a STAR file with its tomogram (``box`` needed) -> :class:`ParticleData`."""
    p = Path(source)
    if p.suffix.lower() == ".star":
        if tomogram is None:
            raise InputError("a STAR input needs the tomogram its coordinates refer to (--tomogram)", p)
        if box is None:
            raise InputError("a STAR input needs the box size in voxels (--box)", p)
        data = load_star(p, tomogram, box)
        if max_particles is not None:
            data = _head(data, int(max_particles))
        return data
    if p.suffix.lower() in (".h5", ".hdf5"):
        if tomogram is not None:
            raise InputError("--tomogram is only for STAR inputs", p)
        return load_dataset(p, max_particles)
    raise InputError("input must be a cryomine dataset (.h5) or a RELION particles STAR file (.star)", p)


def _head(data: ParticleData, n: int) -> ParticleData:
    from dataclasses import replace

    return replace(data, particles=data.particles[:n], coords_xyz=data.coords_xyz[:n], names=data.names[:n])


# ------------------------------------------------------------------------------------------------- outputs


def map_names(n_classes: int) -> list[str]:
    """Output stems: ``average`` for one class, ``class_01``, ``class_02``, ... for several."""
    return ["average"] if n_classes == 1 else [f"class_{c + 1:02d}" for c in range(n_classes)]


def write_results(out_dir: str | os.PathLike[str], result: AverageResult, data: ParticleData, summary: dict) -> dict[str, Path]:
    """Write maps, half maps, FSC CSVs + PNG, ``particles.star`` and ``summary.json`` of a finished run."""
    from cryomine.evaluate.fsc import plot_fsc, write_fsc_csv

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
            "rlnRandomSubset": result.half.astype(np.int64) + 1, "rlnImageName": np.asarray(data.names),
        },
    )  # fmt: skip
    files["star"] = write_particles(out / "particles.star", table, pixel_size_a=data.voxel_size_a)
    files["summary"] = out / "summary.json"
    with atomic_output(files["summary"]) as tmp:
        tmp.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    return files


def _jsonable(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


CHECKPOINT = "checkpoint.npz"


def save_checkpoint(out_dir: str | os.PathLike[str], state: dict[str, np.ndarray], meta: dict) -> Path:
    """Write the iteration state (arrays) and its metadata (JSON in the same file), atomically."""
    path = Path(out_dir) / CHECKPOINT
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(_jsonable(meta))), **state)
    return path


def load_checkpoint(out_dir: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict] | None:
    """The saved state and metadata, or None when there is no checkpoint."""
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"unreadable checkpoint ({exc}); delete it to start over", path) from None
    return state, meta
