"""Where DSM-Net works (issue 12, item 4): accuracy and mIoU against SNR and under other imaging conditions.

For each ``--run LABEL=RUN`` (a run folder or ``pretrained:NAME``), evaluates on freshly simulated data (a seed
never used in training, the run's classes) at SNR inf, 0.5, 0.1, 0.06, 0.03, 0.01 and, at SNR 0.06, other
defocus values, narrower / asymmetric tilt ranges and other crowding (:mod:`cryomine.evaluate.robustness`). Writes
``benchmarks/results/dsmnet_robustness.json``, the figure ``docs/dsmnet_snr_curve.png`` and, with
``--into-run LABEL`` (repeatable), that run's ``robustness.json`` (which the report draws). ``--earlier LABEL=RESULTS.json``
adds a run measured before (its rows from an earlier results file of this benchmark, on the same data: same seed
and per-class count, conditions among today's, else refused; conditions added since have no row for it), drawn and
recorded as such with that file's date and revision.

Usage: ``.venv/bin/python benchmarks/bench_dsmnet_snr.py --run shipped=pretrained:dsmnet-a
--run ceiling=runs/noise_free [--per-class 12] [--seed 20261201] [--workdir runs/robustness] [--snr-only]``
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _common import ROOT, machine, save
from cryomine.evaluate.robustness import DEFAULT_CONDITIONS, SNR_CURVE, measure_robustness, write_robustness
from cryomine.report.figures import robustness_figure
from cryomine.train.runfolder import resolve_run


def earlier_rows(item: str, per_class: int, seed: int, conditions: list[str]) -> tuple[str, str, dict]:
    """``LABEL=RESULTS.json`` -> (label, legend, record) of a run measured before on the same data; ValueError
    naming the option when the file cannot be read or was measured on other data."""
    label, _, path = item.partition("=")
    try:
        old = json.loads(Path(path).read_text())
        entry = old["runs"][label]
    except (OSError, ValueError) as exc:
        raise ValueError(f"--earlier {item}: cannot read {path}: {exc}") from None
    except (KeyError, TypeError):
        raise ValueError(f"--earlier {item}: {path} has no run {label!r}") from None
    if (old.get("seed"), old.get("per_class")) != (seed, per_class) or not {r["name"] for r in entry["rows"]} <= set(conditions):
        raise ValueError(f"--earlier {item}: measured on other data (seed {old.get('seed')}, {old.get('per_class')} per class)")
    when = old["machine"]
    record = {"run": entry["run"], "rows": entry["rows"], "measured_earlier": {
        "results": path, "date": when["date"], "git_revision": when["git_revision"], "cpu": when["cpu"]}}
    return label, f"{label} (measured {when['date'][:10]})", record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="append", required=True, help="LABEL=RUN (repeatable).")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--workdir", type=Path, default=Path("runs/robustness"))
    parser.add_argument("--snr-only", action="store_true", help="Only the SNR curve, not the other imaging conditions.")
    parser.add_argument("--into-run", action="append", default=[], help="LABEL whose run folder gets robustness.json (repeatable).")
    parser.add_argument("--earlier", action="append", default=[], help="LABEL=RESULTS.json: a run measured before on the same data (repeatable).")
    args = parser.parse_args()
    conditions = SNR_CURVE if args.snr_only else DEFAULT_CONDITIONS
    names = [c.name for c in conditions]
    try:
        earlier = [earlier_rows(item, args.per_class, args.seed, names) for item in args.earlier]
    except ValueError as exc:
        parser.error(str(exc))
    curves, results = {}, {"machine": machine(), "per_class": args.per_class, "seed": args.seed, "runs": {}}
    for item in args.run:
        label, _, run = item.partition("=")
        rows = measure_robustness(run, args.workdir, conditions=conditions, per_class=args.per_class, seed=args.seed,
                                  log=lambda line, label=label: print(f"{label}: {line}", flush=True))
        curves[label] = rows
        results["runs"][label] = {"run": run, "rows": rows}
        if label in args.into_run:
            tmp = write_robustness(args.workdir / f"{label}_robustness.json", run, rows)
            shutil.copyfile(tmp, resolve_run(run) / "robustness.json")
    for label, legend, record in earlier:
        curves[legend] = record["rows"]
        results["runs"][label] = record
    save("dsmnet_robustness", results)
    fig = robustness_figure(curves, f"DSM-Net on fresh simulated data (seed {args.seed}, {args.per_class} per class)")
    fig.savefig(ROOT / "docs" / "dsmnet_snr_curve.png", dpi=110)
    for label, rows in curves.items():
        print(f"\n{label}\n| condition | obj. acc. % | mIoU % |\n| --- | --- | --- |")
        for r in rows:
            pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
            print(f"| {r['name']} | {pct(r['object_accuracy'])} | {pct(r['miou'])} |")


if __name__ == "__main__":
    main()
