"""Where a trained model works: its accuracy and mIoU on freshly simulated data under other imaging conditions.

:func:`measure_robustness` simulates, for each :class:`Condition` (an SNR, and optionally another defocus or
tilt range), a dataset of the run's classes with a given seed (use one never used in training), evaluates the
run on all of it and returns one row per condition. The default conditions are the SNR curve of issue 12
(noise-free, 0.5, 0.1, 0.06, 0.03, 0.01) and, at SNR 0.06, other defocus values, narrower / asymmetric tilt
ranges and other crowding (isolated molecules to boxes more crowded than the simulator's default 0.2). Results
are written as ``robustness.json`` (what the report draws; see :func:`cryomine.report.figures.robustness_figure`).

The datasets are kept in ``workdir`` and reused when they exist with the same parameters, so an interrupted
measurement resumes. (This module sits above :mod:`cryomine.train`; it is not re-exported by
:mod:`cryomine.evaluate`, which :mod:`cryomine.train` imports.)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryomine.errors import InputError
from cryomine.evaluate.evaluate import evaluate_run
from cryomine.io.atomic import atomic_output
from cryomine.simulate.config import build_dataset_config
from cryomine.simulate.subtomograms import simulate_subtomograms
from cryomine.train.runfolder import read_run_config, resolve_run

ROBUSTNESS_FILE = "robustness.json"


@dataclass(frozen=True)
class Condition:
    """One condition to test: ``snr`` (``inf`` = noise-free) and optional defocus (µm), tilt range (degrees) and
    crowding (volume fraction of the box covered by molecules) replacing the simulator's defaults (5 µm,
    -60..+60, 0.2)."""

    name: str
    snr: float
    defocus_um: float | None = None
    tilt_min_deg: float | None = None
    tilt_max_deg: float | None = None
    crowding: float | None = None

    @property
    def kind(self) -> str:
        """``"snr"`` for the SNR curve (default optics and crowding), ``"imaging"`` for other optics, tilts or crowding."""
        default = (self.defocus_um, self.tilt_min_deg, self.tilt_max_deg, self.crowding) == (None, None, None, None)
        return "snr" if default else "imaging"


SNR_CURVE = tuple(Condition(f"SNR {s:g}", s) for s in (math.inf, 0.5, 0.1, 0.06, 0.03, 0.01))
IMAGING_CONDITIONS = (
    Condition("defocus 3 µm", 0.06, defocus_um=3.0),
    Condition("defocus 8 µm", 0.06, defocus_um=8.0),
    Condition("tilt -45..+45", 0.06, tilt_min_deg=-45.0, tilt_max_deg=45.0),
    Condition("tilt -60..+42", 0.06, tilt_min_deg=-60.0, tilt_max_deg=42.0),
    Condition("tilt -54..+48", 0.06, tilt_min_deg=-54.0, tilt_max_deg=48.0),
)
CROWDING_CONDITIONS = tuple(Condition(f"crowding {v:g}", 0.06, crowding=v) for v in (0.0, 0.05, 0.1, 0.35))
DEFAULT_CONDITIONS = SNR_CURVE + IMAGING_CONDITIONS + CROWDING_CONDITIONS


def _dataset(run_config: dict[str, Any], cond: Condition, per_class: int, seed: int, workdir: Path) -> Path:
    names = list(run_config["classes"]["dataset_class_names"])
    size = int(run_config["dataset"]["size"])
    config = build_dataset_config(structures=tuple(names), per_class=per_class, size=size, seed=seed, snr=cond.snr,
                                  voxel_size_a=float(run_config["dataset"]["voxel_size_a"]), defocus_um=cond.defocus_um,
                                  tilt_min=cond.tilt_min_deg, tilt_max=cond.tilt_max_deg, crowding=cond.crowding)
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in cond.name)
    path = workdir / f"{safe}_seed{seed}_n{per_class}.h5"
    simulate_subtomograms(path, config, resume=path.exists(), progress=False)
    return path


def measure_robustness(
    run: str | os.PathLike[str],
    workdir: str | os.PathLike[str],
    *,
    conditions: Sequence[Condition] = DEFAULT_CONDITIONS,
    per_class: int = 12,
    seed: int = 20261201,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Evaluate ``run`` (a run folder or ``pretrained:NAME``) under each condition; one row per condition with
    ``object_accuracy``, ``miou``, ``pixel_accuracy`` (fractions) and the condition's parameters."""
    if per_class < 1 or per_class > 10_000:
        raise InputError(f"per-class count must be in 1..10000, got {per_class}", "--per-class")
    run_dir = resolve_run(run)
    cfg = read_run_config(run_dir)
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for cond in conditions:
        dataset = _dataset(cfg, cond, per_class, seed, out)
        res = evaluate_run(run, dataset, split="all")
        rows.append({**asdict(cond), "snr": "inf" if math.isinf(cond.snr) else cond.snr, "kind": cond.kind,
                     "per_class": per_class, "seed": seed, "n": res.get("n_subtomograms"),
                     **{k: res.get(k) for k in ("object_accuracy", "miou", "pixel_accuracy")}})
        if log is not None:
            log(f"{cond.name}: object accuracy {rows[-1]['object_accuracy']}, mIoU {rows[-1]['miou']}")
    return rows


def write_robustness(path: str | os.PathLike[str], run: str, rows: list[dict[str, Any]]) -> Path:
    """Write ``{"run": run, "rows": rows}`` atomically (the file the report reads)."""
    p = Path(path)
    with atomic_output(p) as tmp:
        tmp.write_text(json.dumps({"format": "cryomine-robustness", "run": str(run), "rows": rows}, indent=2) + "\n")
    return p
