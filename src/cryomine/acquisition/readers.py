"""Read :class:`~cryomine.acquisition.metadata.Acquisition` metadata from the files other tools (and cryomine) write.

Formats (:func:`read_acquisition` picks by name and content):

- cryomine tomogram JSON (``simulate tomogram`` writes ``<stem>.json``): its ``acquisition`` entry, or for older
  files the ``config.imaging`` tilt scheme and microscope (a simulated tomogram is protein bright);
- RELION 5 ``tomograms.star``: the ``data_global`` row of the tomogram (voltage ``rlnVoltage``, Cs
  ``rlnSphericalAberration``, ``rlnAmplitudeContrast``, voxel size ``rlnTomoTiltSeriesPixelSize`` x
  ``rlnTomoTomogramBinning`` when the binning is given) and its per-tilt block ``data_<rlnTomoName>``: tilt angles
  from ``rlnTomoNominalStageTiltAngle`` or, in WarpTools exports, from the projection matrices (the third row
  ``rlnTomoProjZ`` of ``R = Rz Ry(theta) Rx`` is ``(-sin theta, ., cos theta)`` at zero x-tilt, so
  ``theta = atan2(-Z_x, Z_z)``), defocus ``(rlnDefocusU + rlnDefocusV) / 2`` (Å -> µm), dose
  ``rlnMicrographPreExposure`` (e/Å²). RELION tomograms are reconstructed protein dark;
- IMOD ``.tlt`` / ``.rawtlt``: one tilt angle per line;
- IMOD ctfplotter ``.defocus`` (versions 2 and 3): ``start end angle_start angle_end defocus_nm ...`` per view
  range (1-based views), the version-3 flag line skipped; the defocus is given to the views' tilts;
- WarpTools tilt-series ``.xml``: ``<Angles>``, ``<Dose>``, ``<CTF>`` params ``Voltage``, ``Cs``, ``Amplitude``,
  ``Defocus`` (µm) and per-tilt ``<GridCTF>`` nodes;
- WarpTools ``.tomostar``: STAR with ``wrpAngleTilt`` and ``wrpDose`` per tilt movie.

Tilt-angle sign: cryomine's tilt ``theta`` has the beam along ``(z, x) = (cos theta, sin theta)`` in the tomogram
(:mod:`cryomine.simulate.tilt`: ``x' = x cos theta - z sin theta``). RELION 5 builds its projection matrices as
``Rz(ZRot) Ry(YTilt) Rx(XTilt)`` with the standard ``Ry``, so its detector sees ``x' = x cos Y + z sin Y``: the same
geometry has ``theta = -YTilt``. IMOD ``.tlt`` angles are RELION's ``YTilt`` (RELION imports them as such) and
WarpTools writes its angles into RELION's matrices unchanged, so every reader here negates the file's angles;
with projection matrices the angle is read off the beam direction itself, ``theta = atan2(Z_x, hypot(Z_y, Z_z))``.
For symmetric tilt ranges the sign does not matter; for asymmetric ones a mirrored wedge would follow from a
wrong sign, so :func:`read_acquisition` documents it here and ``--tilt-min/--tilt-max`` override it.

Everything a file does not say stays unknown. Bad files raise :class:`InputError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryomine.acquisition.metadata import Acquisition
from cryomine.errors import InputError
from cryomine.io.tomo_particles import same_tomo_name

__all__ = ["SIDECAR_SUFFIXES", "find_sidecars", "read_acquisition"]

#: Metadata files looked for beside a tomogram ``<stem>.mrc`` (as ``<stem><suffix>``), in this order.
SIDECAR_SUFFIXES = (".json", ".tlt", ".rawtlt", ".defocus", ".xml", ".tomostar")


def find_sidecars(tomogram: str | os.PathLike[str]) -> list[Path]:
    """Existing metadata files beside ``tomogram`` with its stem (:data:`SIDECAR_SUFFIXES`)."""
    p = Path(tomogram)
    return [p.with_suffix(s) for s in SIDECAR_SUFFIXES if p.with_suffix(s).is_file() and p.with_suffix(s) != p]


def read_acquisition(path: str | os.PathLike[str], tomo_name: str | None = None) -> Acquisition:
    """The metadata in ``path`` (any format of the module docstring); ``tomo_name`` selects the tomogram of a
    RELION 5 tomograms.star that lists several (matched with or without a ``.tomostar``/``.mrc`` suffix)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("acquisition metadata file not found", p)
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            return _cryomine_json(p)
        if suffix in (".tlt", ".rawtlt"):
            return Acquisition(tilt_angles_deg=tuple(-_columns(p, 1)[:, 0]), sources=(str(p),))
        if suffix == ".defocus":
            return _ctfplotter(p)
        if suffix == ".xml":
            return _warp_xml(p)
        if suffix == ".tomostar":
            return _tomostar(p)
        if suffix == ".star":
            return _relion_tomograms(p, tomo_name)
    except InputError as exc:
        if str(p) in str(exc):
            raise
        raise InputError(str(exc), p) from None
    except (ValueError, KeyError, TypeError, OSError, ET.ParseError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable acquisition metadata ({type(exc).__name__}: {exc})", p) from None
    raise InputError("unknown metadata format (expected .json, .star, .tlt, .rawtlt, .defocus, .xml or .tomostar)", p)


def _columns(path: Path, min_columns: int) -> np.ndarray:
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise InputError(f"line {i + 1} is not numbers: {line.strip()[:60]!r}", path) from None
        if len(values) < min_columns:
            raise InputError(f"line {i + 1} has {len(values)} columns, expected at least {min_columns}", path)
        rows.append(values[:max(min_columns, len(values))])
    if not rows:
        raise InputError("no values in the file", path)
    width = min(len(r) for r in rows)
    return np.array([r[:width] for r in rows], np.float64)


def _cryomine_json(path: Path) -> Acquisition:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path)
    if isinstance(data.get("acquisition"), dict):
        acq = Acquisition.from_dict({k: v for k, v in data["acquisition"].items() if k != "sources"})
        return Acquisition(**{**_fields(acq), "sources": (str(path),)})
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    imaging = config.get("imaging") if isinstance(config.get("imaging"), dict) else None
    if imaging is None:
        raise InputError("no 'acquisition' entry and no simulated imaging config: not a cryomine tomogram JSON", path)
    tilt, mic = imaging.get("tilt") or {}, imaging.get("microscope") or {}
    angles = None
    if {"min_deg", "max_deg", "step_deg"} <= set(tilt):
        n = int(math.floor((tilt["max_deg"] - tilt["min_deg"]) / tilt["step_deg"] + 1e-9)) + 1
        angles = tuple(float(tilt["min_deg"] + tilt["step_deg"] * i) for i in range(n))
    return Acquisition(
        voxel_size_a=config.get("voxel_size_a"), tilt_angles_deg=angles,
        defocus_um=(mic["defocus_um"],) if "defocus_um" in mic else None, voltage_kv=mic.get("voltage_kv"),
        cs_mm=mic.get("cs_mm"), amplitude_contrast=mic.get("amplitude_contrast"), polarity="bright", sources=(str(path),),
    )  # fmt: skip


def _fields(acq: Acquisition) -> dict:
    return {k: getattr(acq, k) for k in acq.__dataclass_fields__ if k != "sources"}


def _ctfplotter(path: Path) -> Acquisition:
    rows = _columns(path, 5)
    if rows.shape[0] > 1 and rows[0, 4] == 0 and rows[0, -1] in (2, 3) and rows[0, 1] == 0:
        rows = rows[1:]  # version-3 flag line: "flags 0 0. 0. 0. 3"
    n_views = int(rows[:, 1].max())
    angles = np.full(n_views, np.nan)
    defocus = np.full(n_views, np.nan)
    for start, end, a0, a1, dz in rows[:, :5]:
        views = np.arange(int(start), int(end) + 1) - 1
        angles[views] = np.linspace(a0, a1, len(views)) if len(views) > 1 else a0
        defocus[views] = dz / 1000.0  # nm -> µm
    known = np.isfinite(defocus)
    return Acquisition(tilt_angles_deg=tuple(-angles[known]), defocus_um=tuple(defocus[known]), sources=(str(path),))


def _warp_xml(path: Path) -> Acquisition:
    root = ET.parse(path).getroot()

    def numbers(tag: str) -> tuple[float, ...] | None:
        node = root.find(tag)
        return tuple(float(v) for v in node.text.split()) if node is not None and node.text and node.text.strip() else None

    params = {p.get("Name"): p.get("Value") for p in root.iter("Param")}
    angles, dose = numbers("Angles"), numbers("Dose")
    angles = tuple(-a for a in angles) if angles is not None else None
    defocus = None
    grid = root.find("GridCTF")
    if grid is not None and angles is not None:
        nodes = sorted(((int(n.get("Z", 0)), float(n.get("Value"))) for n in grid.iter("Node")), key=lambda t: t[0])
        if len(nodes) == len(angles):
            defocus = tuple(v for _, v in nodes)
    if defocus is None and params.get("Defocus") is not None:
        defocus = (float(params["Defocus"]),)
    pixel = root.get("PixelSize") or params.get("PixelSize")
    return Acquisition(
        tilt_angles_deg=angles, dose_e_a2=dose, defocus_um=defocus,
        voltage_kv=_opt(params.get("Voltage")), cs_mm=_opt(params.get("Cs")), amplitude_contrast=_opt(params.get("Amplitude")),
        voxel_size_a=_opt(pixel), sources=(str(path),),
    )  # fmt: skip


def _opt(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


def _tomostar(path: Path) -> Acquisition:
    table = starfile.read(path, always_dict=True)
    df = next((b for b in table.values() if isinstance(b, pd.DataFrame) and "wrpAngleTilt" in b.columns), None)
    if df is None:
        raise InputError("no wrpAngleTilt column: not a WarpTools .tomostar", path)
    dose = tuple(df["wrpDose"].astype(float)) if "wrpDose" in df.columns else None
    return Acquisition(tilt_angles_deg=tuple(-df["wrpAngleTilt"].astype(float)), dose_e_a2=dose, sources=(str(path),))


def _relion_tomograms(path: Path, tomo_name: str | None) -> Acquisition:
    blocks = starfile.read(path, always_dict=True)
    glob = blocks.get("global")
    if not isinstance(glob, pd.DataFrame) or "rlnTomoName" not in glob.columns:
        raise InputError("no data_global table with rlnTomoName: not a RELION 5 tomograms.star", path)
    glob = glob.reset_index(drop=True)
    names = glob["rlnTomoName"].astype(str)
    if tomo_name is None:
        if len(glob) != 1:
            raise InputError(f"lists {len(glob)} tomograms ({', '.join(names[:4])}, ...): say which with --tomo-name", path)
        row = glob.iloc[0]
    else:
        hit = [i for i, n in enumerate(names) if same_tomo_name(n, tomo_name)]
        if not hit:
            raise InputError(f"no tomogram named {tomo_name!r} (has {', '.join(names[:6])})", path)
        row = glob.iloc[hit[0]]
    get = lambda c: float(row[c]) if c in row.index and pd.notna(row[c]) else None  # noqa: E731
    pixel, binning = get("rlnTomoTiltSeriesPixelSize"), get("rlnTomoTomogramBinning")
    tilts = blocks.get(str(row["rlnTomoName"]))
    angles = defocus = dose = None
    if isinstance(tilts, pd.DataFrame) and len(tilts):
        angles = _relion_tilt_angles(tilts)
        if {"rlnDefocusU", "rlnDefocusV"} <= set(tilts.columns):
            defocus = tuple((tilts["rlnDefocusU"].astype(float) + tilts["rlnDefocusV"].astype(float)) / 2e4)
        if "rlnMicrographPreExposure" in tilts.columns:
            dose = tuple(tilts["rlnMicrographPreExposure"].astype(float))
    return Acquisition(
        voxel_size_a=pixel * binning if pixel is not None and binning is not None else None,
        tilt_angles_deg=angles, defocus_um=defocus if angles is not None else None, dose_e_a2=dose if angles is not None else None,
        voltage_kv=get("rlnVoltage"), cs_mm=get("rlnSphericalAberration"), amplitude_contrast=get("rlnAmplitudeContrast"),
        polarity="dark", sources=(f"{path}:{row['rlnTomoName']}",),
    )  # fmt: skip


def _relion_tilt_angles(tilts: pd.DataFrame) -> tuple[float, ...] | None:
    """cryomine tilt angles (module docstring: the negated RELION angle, or the beam direction of the matrices)."""
    if "rlnTomoProjZ" in tilts.columns:
        rows = [np.array([float(v) for v in str(z).strip("[]").split(",")]) for z in tilts["rlnTomoProjZ"]]
        return tuple(float(np.degrees(np.arctan2(r[0], np.hypot(r[1], r[2])))) for r in rows)
    for column in ("rlnTomoYTilt", "rlnTomoNominalStageTiltAngle"):
        if column in tilts.columns:
            return tuple(-tilts[column].astype(float))
    return None
