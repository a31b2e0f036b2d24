"""Find what a report can show in a folder: a demo folder, a training run, a predict / discover / average output.

The folder conventions are described in :mod:`cryomine.report.build`. Search: the folder itself, then its
immediate subfolders (``run``, ``train``, ``predict``, ``discover``, ``average``, ``pick``, ``picks``,
``simulate``, ``tomogram`` first, then the others by name; hidden folders, ``masks`` and ``recovered`` skipped).
JSON files are recognised by their keys, not their names, so an ``evaluate --json`` output saved under any name is
found; where two files qualify the first folder wins, and within a folder the conventional name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cryomine.errors import InputError
from cryomine.io.star import read_star

__all__ = ["JsonFile", "ReportInputs", "candidate_dirs", "find_inputs", "json_kind", "read_json", "read_table"]

PREFERRED_DIRS = ("run", "train", "predict", "discover", "average", "pick", "picks", "simulate", "tomogram")
SKIPPED_DIRS = ("masks", "recovered")
MAX_JSON_BYTES = 20 * 1024**2


@dataclass(frozen=True)
class JsonFile:
    """A JSON file read back: its path and its top-level object."""

    path: Path
    data: dict[str, Any]


@dataclass(frozen=True)
class ReportInputs:
    """What :func:`find_inputs` found under ``root`` (``None``: not there). ``notes``: problems met on the way."""

    root: Path
    run_dir: Path | None = None
    run_config: JsonFile | None = None
    metrics_csv: Path | None = None
    evaluation: JsonFile | None = None
    predict_dir: Path | None = None
    discover_dir: Path | None = None
    discover_summary: JsonFile | None = None
    average_dir: Path | None = None
    average_summary: JsonFile | None = None
    tomogram: Path | None = None
    tomogram_meta: JsonFile | None = None
    truth_star: Path | None = None
    picks_star: Path | None = None
    pick_evaluation: JsonFile | None = None
    demo_summary: JsonFile | None = None
    demo_config: JsonFile | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def found_anything(self) -> bool:
        """True when at least one input of any section was found."""
        return any(getattr(self, name) is not None for name in self.__dataclass_fields__ if name not in ("root", "notes"))


def json_kind(data: object) -> str | None:
    """What a JSON object is, from its keys: ``run_config``, ``evaluation``, ``pick_evaluation``, ``discover``,
    ``average``, ``tomogram`` (the simulator's summary), or None."""
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if data.get("format") == "cryomine-run":
        return "run_config"
    if {"object_accuracy", "miou", "confusion_matrix"} <= keys:
        return "evaluation"
    if {"localisation", "n_picks", "n_true"} <= keys:
        return "pick_evaluation"
    if "dsmnet" in keys and "k" in keys:
        return "discover"
    if isinstance(data.get("classes"), list) and {"particles", "voxel_size_a"} <= keys:
        return "average"
    if {"particles_placed", "snr_measured"} <= keys:
        return "tomogram"
    return None


def candidate_dirs(root: Path) -> list[Path]:
    """``root`` then its subfolders in search order (see the module docstring)."""
    subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIPPED_DIRS]
    rank = {name: i for i, name in enumerate(PREFERRED_DIRS)}
    return [root, *sorted(subs, key=lambda p: (rank.get(p.name, len(rank)), p.name))]


def read_table(path: Path, numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV table the report draws from; :class:`InputError` naming ``path`` when it is not a readable file,
    when a ``numeric`` column holds something else than numbers, or when the last row stops short (a truncated
    file)."""
    if not path.is_file():
        raise InputError("not a readable file" if path.exists() else "file not found", path)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:  # UnicodeDecodeError too
        raise InputError(f"unreadable table ({' '.join(str(exc).split())[:100]})", path) from None
    for col in (c for c in numeric if c in df):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            raise InputError(f"column {col!r} holds a non-number in row {int(bad.idxmax()) + 1}", path)
    with open(path, "rb") as fh:  # every table cryomine writes ends its last row with a newline
        fh.seek(max(path.stat().st_size - 1, 0))
        if fh.read(1) not in (b"\n", b""):
            raise InputError("its last row stops short (no final newline): a truncated file", path)
    return df


def read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """The top-level object of a JSON file; None (and a line in ``notes``) if unreadable, not an object or huge."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: unreadable JSON ({' '.join(str(exc).split())[:100]})")
        return None
    return data if isinstance(data, dict) else None


def _first(items: list[JsonFile], kind: str, kinds: dict[Path, str | None], prefer: str,
           where: Callable[[JsonFile], bool] = lambda _f: True) -> JsonFile | None:
    """The first file of ``kind`` (search order), one named ``prefer`` first within a folder."""
    matches = [f for f in items if kinds[f.path] == kind and where(f)]
    if not matches:
        return None
    first_dir = matches[0].path.parent
    same = [f for f in matches if f.path.parent == first_dir]
    return next((f for f in same if f.path.name == prefer), same[0])


def _first_file(dirs: list[Path], name: str) -> Path | None:
    return next((d / name for d in dirs if (d / name).is_file()), None)


def _resolve(value: object, bases: list[Path]) -> Path | None:
    """An existing file named by ``value`` (absolute, or relative to one of ``bases`` or the working folder)."""
    if not isinstance(value, str) or not value:
        return None
    p = Path(value)
    for cand in ([p] if p.is_absolute() else [*(b / p for b in bases), p]):
        if cand.is_file():
            return cand
    return None


def find_inputs(path: str | os.PathLike[str]) -> ReportInputs:
    """Look through ``path`` (a folder) and return what it holds (InputError if it is not a folder)."""
    root = Path(path)
    if not root.exists():
        raise InputError("folder not found", root)
    if not root.is_dir():
        raise InputError("not a folder (give a demo, run, predict, discover or average output folder)", root)
    notes: list[str] = []
    dirs = candidate_dirs(root)
    files: list[JsonFile] = []
    for d in dirs:
        for p in sorted(d.glob("*.json")):
            data = read_json(p, notes)
            if data is not None:
                files.append(JsonFile(p, data))
    kinds = {f.path: json_kind(f.data) for f in files}

    run_config = _first(files, "run_config", kinds, "config.json")
    run_dir = run_config.path.parent if run_config else next((d for d in dirs if (d / "metrics.csv").is_file()), None)
    metrics = run_dir / "metrics.csv" if run_dir is not None and (run_dir / "metrics.csv").exists() else None
    evaluation = _first(files, "evaluation", kinds, "evaluation.json")
    predict_dir = next((d for d in dirs if (d / "predictions.csv").is_file()), None)
    discover = _first(files, "discover", kinds, "summary.json")
    discover_dir = discover.path.parent if discover else next((d for d in dirs if (d / "tsne.png").is_file()), None)
    average = _first(files, "average", kinds, "summary.json")
    average_dir = average.path.parent if average else next(
        (d for d in dirs if (d / "fsc.csv").is_file() or (d / "average.mrc").is_file()), None)
    pick_eval = _first(files, "pick_evaluation", kinds, "picks_evaluation.json")
    companions = [d / n for d, n in ((predict_dir, "predictions.star"), (discover_dir, "assignments.csv")) if d is not None]
    for table in (t for t in companions if t.exists()):  # outputs the report links but does not draw: say if damaged
        try:
            read_star(table) if table.suffix == ".star" else read_table(table)  # predictions without positions are fine
        except InputError as exc:
            notes.append(str(exc))

    tomogram = _first_file(dirs, "tomogram.mrc")
    tomo_meta = None
    if tomogram is not None and tomogram.with_suffix(".json") in kinds and kinds[tomogram.with_suffix(".json")] == "tomogram":
        tomo_meta = next(f for f in files if f.path == tomogram.with_suffix(".json"))
    if tomo_meta is None:
        tomo_meta = _first(files, "tomogram", kinds, "tomogram.json")
    if tomogram is None and tomo_meta is not None and tomo_meta.path.with_suffix(".mrc").is_file():
        tomogram = tomo_meta.path.with_suffix(".mrc")

    bases = [root] + ([pick_eval.path.parent] if pick_eval else [])
    picks = _first_file(dirs, "picks.star") or (_resolve(pick_eval.data.get("picks"), bases) if pick_eval else None)
    truth = _first_file(dirs, "truth.star")
    if truth is None and tomogram is not None and tomogram.with_suffix(".star").is_file():
        truth = tomogram.with_suffix(".star")
    if truth is None and pick_eval is not None:
        truth = _resolve(pick_eval.data.get("truth"), bases)

    demo_summary = demo_config = None
    for name in ("summary.json", "config.json"):
        f = next((f for f in files if f.path == root / name and kinds[f.path] is None), None)
        if name == "summary.json":
            demo_summary = f
        else:
            demo_config = f
    return ReportInputs(
        root=root, run_dir=run_dir, run_config=run_config, metrics_csv=metrics, evaluation=evaluation,
        predict_dir=predict_dir, discover_dir=discover_dir, discover_summary=discover, average_dir=average_dir,
        average_summary=average, tomogram=tomogram, tomogram_meta=tomo_meta, truth_star=truth, picks_star=picks,
        pick_evaluation=pick_eval, demo_summary=demo_summary, demo_config=demo_config, notes=tuple(notes),
    )  # fmt: skip
