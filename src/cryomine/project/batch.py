"""``cryomine run PROJECT``: every tomogram of a project through the pipeline, one tomogram per Dask task.

Layout of the output folder::

    project.json           the resolved settings, the source and its tomograms (compared on resume)
    tomograms/<name>/      one tomogram's run (:mod:`cryomine.project.pipeline`), finished when it holds summary.json
    relion/                a RELION 5 project of the predicted particles (tomograms.star, particles.star, optimisation set)
    summary.json           per tomogram: picks, counts per class, averages; the project's totals
    report.html            the project report (counts per tomogram, each tomogram's picks and atlas, averages)

Scheduling: a local Dask cluster of ``workers`` processes (one task = one tomogram, ``threads`` torch threads each)
or, with ``scheduler``, the cluster behind that address (its workers need cryomine installed and the same paths).
``workers=0`` runs the tomograms in this process, one after another. Finished tomograms are skipped, an interrupted
one is started again from scratch; a tomogram whose input is bad is reported (its one-line error) and the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cryomine import __version__
from cryomine.errors import InputError
from cryomine.io.atomic import write_json
from cryomine.project.config import BatchOptions, ProjectConfig
from cryomine.project.finish import WriteBack, finish_project
from cryomine.project.pipeline import SUMMARY, is_finished, run_tomogram
from cryomine.project.sources import ProjectTomogram, project_kind, read_project
from cryomine.resources import check_memory
from cryomine.train.runfolder import load_run

__all__ = ["ProjectResult", "run_project", "tomogram_folder"]

PROJECT_FILE = "project.json"
#: A worker's memory before its tomogram (torch, DSM-Net, numba; measured: 1.1 GB peak RSS of `cryomine run`'s own process,
#: which loads the model too). A tomogram's own arrays are bounded per worker by Dask's memory limit (system / workers):
#: a worker above it is restarted and its tomogram reported failed.
WORKER_BYTES = 1.2e9


@dataclass(frozen=True)
class ProjectResult:
    """What :func:`run_project` did: tomograms ``done`` now, ``skipped`` (finished before), ``failed`` (name -> error)."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def tomogram_folder(out: Path, name: str) -> Path:
    """The output folder of tomogram ``name`` in the project run ``out``."""
    return Path(out) / "tomograms" / name


def _check_resume(out: Path, config: ProjectConfig, source: Path) -> None:
    """A folder already holding a project run must hold this one (same source and settings)."""
    saved = out / PROJECT_FILE
    if not saved.exists():
        if out.is_dir() and any(out.iterdir()):
            raise InputError("output folder is not empty and holds no project run (project.json); use another --out", out)
        return
    try:
        data = json.loads(saved.read_text())
        before = ProjectConfig.from_dict(data["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable project settings ({type(exc).__name__}); use another --out", saved) from None
    if Path(data.get("source", "")).resolve() != source:
        raise InputError(f"holds a run of another project ({data.get('source')}); use another --out", out)
    diff = before.differences(config)
    if diff:
        raise InputError(f"holds a project run with other settings ({'; '.join(diff[:4])}); use another --out to change them", out)


def task(tomo: ProjectTomogram, folder: str, config: ProjectConfig, threads: int | None) -> dict[str, Any]:
    """One tomogram (what a Dask worker runs): ``{"summary": ...}`` or ``{"error": "<one line>"}`` for bad input."""
    try:
        return {"summary": run_tomogram(tomo, folder, config, threads=threads)}
    except InputError as exc:
        return {"error": str(exc)}


def _threads(options: BatchOptions) -> int:
    if options.threads is not None:
        return options.threads
    return max(1, (os.cpu_count() or 1) // max(1, options.workers))


def _in_process(todo: list[ProjectTomogram], out: Path, config: ProjectConfig, threads: int) -> Iterable[tuple[str, dict]]:
    for tomo in todo:
        yield tomo.name, task(tomo, str(tomogram_folder(out, tomo.name)), config, threads)


def _on_dask(todo: list[ProjectTomogram], out: Path, config: ProjectConfig, options: BatchOptions, threads: int
             ) -> Iterable[tuple[str, dict]]:  # fmt: skip
    from distributed import Client, LocalCluster, as_completed  # noqa: PLC0415 (the scheduler's start-up cost: only when used)

    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach the Dask scheduler ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
                             "--scheduler") from None  # fmt: skip
        cluster = None
    else:
        n = min(options.workers, len(todo))
        check_memory(n * WORKER_BYTES, f"{n} local Dask workers (each loads torch and the models)", "--workers")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)  # fmt: skip
        client = Client(cluster)
    try:
        names = {}
        for tomo in todo:
            future = client.submit(task, tomo, str(tomogram_folder(out, tomo.name)), config, threads, key=f"cryomine-{tomo.name}",
                                   pure=False)  # fmt: skip
            names[future] = tomo.name
        for future in as_completed(list(names)):
            name = names[future]
            try:
                yield name, future.result()
            except Exception as exc:  # a worker's crash (not bad input): reported for this tomogram, the others go on
                yield name, {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_project(source: str | os.PathLike[str], out: str | os.PathLike[str], config: ProjectConfig,
                options: BatchOptions = BatchOptions(), *, pattern: str = "*", only: tuple[str, ...] = (),
                write_back: WriteBack | None = None) -> ProjectResult:  # fmt: skip
    """Run every unfinished tomogram of ``source`` into ``out`` (module docstring), then write the project-level
    outputs over every finished tomogram (:func:`cryomine.project.finish.finish_project`: RELION project, project
    report and, with ``write_back``, the copick write-back); their one-line notes are in ``result.notes``."""
    source, out = Path(source).resolve(), Path(out)  # absolute: the outputs name the tomograms from anywhere
    kind = project_kind(source)
    tomos = read_project(source, tomo_type=config.tomo_type, voxel_size_a=config.voxel_size_a, pattern=pattern, only=only)
    load_run(config.model)  # the model (config and weights) is readable before any tomogram starts
    _check_resume(out, config, source)
    out.mkdir(parents=True, exist_ok=True)
    record = {"cryomine_version": __version__, "source": str(source), "kind": kind, "config": config.to_dict(),
              "tomograms": [t.to_dict() for t in tomos]}
    write_json(out / PROJECT_FILE, record, default=str)
    result = ProjectResult(out)
    todo = []
    for tomo in tomos:
        folder = tomogram_folder(out, tomo.name)
        if is_finished(folder):
            result.skipped.append(tomo.name)
            result.summaries[tomo.name] = json.loads((folder / SUMMARY).read_text())
        else:
            todo.append(tomo)
    threads = _threads(options)
    runner = _in_process(todo, out, config, threads) if options.workers == 0 else _on_dask(todo, out, config, options, threads)
    with tqdm(total=len(tomos), initial=len(result.skipped), desc="tomograms", unit="tomo", disable=not options.progress) as bar:
        for name, outcome in (runner if todo else ()):
            if "summary" in outcome:
                result.done.append(name)
                result.summaries[name] = outcome["summary"]
                for note in outcome["summary"].get("warnings", []):  # assumed metadata etc.: said here, by the client
                    bar.write(f"warning: tomogram {name}: {note}", file=sys.stderr)
            else:
                result.failed[name] = outcome["error"]
                bar.write(f"error: tomogram {name}: {outcome['error']}", file=sys.stderr)
            bar.update(1)
    finished = [t for t in tomos if t.name in result.summaries]
    write_json(out / SUMMARY, _project_summary(tomos, result), default=str)
    if finished:
        result.notes.extend(finish_project(out, finished, write_back))
    return result


def _project_summary(tomos: list[ProjectTomogram], result: ProjectResult) -> dict[str, Any]:
    totals: dict[str, int] = {}
    per_tomogram = {}
    for tomo in tomos:
        s = result.summaries.get(tomo.name)
        if s is None:
            per_tomogram[tomo.name] = {"error": result.failed.get(tomo.name, "not run")}
            continue
        for cls, n in s["class_counts"].items():
            totals[cls] = totals.get(cls, 0) + int(n)
        per_tomogram[tomo.name] = {"picks": s["picks"], "class_counts": s["class_counts"], "averages": s["averages"],
                                   "warnings": s.get("warnings", []), "seconds": round(sum(s["seconds"].values()), 1)}  # fmt: skip
    return {"cryomine_version": __version__, "tomograms": per_tomogram, "class_totals": dict(sorted(totals.items())),
            "finished": len(result.summaries), "failed": sorted(result.failed)}  # fmt: skip
