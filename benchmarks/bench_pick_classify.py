"""Benchmark: end-to-end picking and classification (issue: picking, item 5).

1. simulate a tomogram with several classes (``cryomine simulate tomogram``; true particles in ``<stem>.star``);
2. pick with DoG (``cryomine pick --method dog``; radius: the median of the classes' radii unless ``--radius``);
3. extract ``--size``³ boxes around the picks (``cryomine extract``: a dataset, row i = pick i);
4. classify them with a trained run (``cryomine predict RUN``, e.g. ``pretrained:dsmnet-a``);
5. score (``cryomine evaluate-picks --classes predictions.star``): localisation F1 (class ignored) and
   localisation + class F1, overall and per class (hit within half the particle radius).

The classes default to (up to ``--n-classes``) classes of the run, spread over its class list, so every true
particle is a class the model knows; the box size must be the model's input size (40 for DSM-Net A/B).

Usage::

    .venv/bin/python benchmarks/bench_pick_classify.py --run pretrained:dsmnet-a \\
        [--shape 100,256,256] [--particles 150] [--snr 0.06] [--size 40] [--out /tmp/cryomine-bench/e2e] [--results NAME]

Results: ``benchmarks/results/pick_classify.json`` (or ``NAME.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

from _common import CRYOMINE, machine, save, timed_run


def _run_classes(run: str) -> list[str]:
    from cryomine.train.runfolder import read_run_config, resolve_run

    return [str(c) for c in read_run_config(resolve_run(run))["classes"]["class_names"]]


def _pick_spread(names: list[str], n: int) -> list[str]:
    if len(names) <= n:
        return list(names)
    step = len(names) / n
    return [names[int(i * step)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="trained run folder or pretrained:NAME (e.g. pretrained:dsmnet-a)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench/e2e"))
    parser.add_argument("--shape", default="100,256,256", help="Z,Y,X voxels")
    parser.add_argument("--particles", type=int, default=150)
    parser.add_argument("--structures", default=None, help="comma-separated classes (default: spread over the run's classes)")
    parser.add_argument("--n-classes", type=int, default=6)
    parser.add_argument("--snr", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=40, help="box edge: the model's input size")
    parser.add_argument("--radius", type=float, default=None, help="DoG particle radius (Å)")
    parser.add_argument("--results", default="pick_classify", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from cryomine.structures import list_structures

    known = _run_classes(args.run)
    structures = args.structures.split(",") if args.structures else _pick_spread(known, args.n_classes)
    unknown = sorted(set(structures) - set(known))
    if unknown:
        raise SystemExit(f"classes {unknown} are not classes of {args.run} ({len(known)} classes: {', '.join(known[:8])}, ...)")
    diameters = {s.id: s.diameter_a for s in list_structures()}
    radius = args.radius if args.radius is not None else statistics.median(diameters[s] / 2 for s in structures)

    tomo = args.out / "tomo.mrc"
    picks, dataset, pred = args.out / "picks.star", args.out / "picks.h5", args.out / "predictions"
    steps = {
        "simulate": timed_run([CRYOMINE, "simulate", "tomogram", str(tomo), "--shape", args.shape, "--particles", str(args.particles),
                               "--structures", ",".join(structures), "--snr", str(args.snr), "--seed", str(args.seed)]),
        "pick_dog": timed_run([CRYOMINE, "pick", str(tomo), "--method", "dog", "--radius", f"{radius:g}", "--out", str(picks)]),
        "extract": timed_run([CRYOMINE, "extract", str(tomo), str(picks), "--size", str(args.size), "--out", str(dataset)]),
        "predict": timed_run([CRYOMINE, "predict", args.run, str(dataset), "--out", str(pred)]),
    }  # fmt: skip
    report = json.loads(subprocess.run([CRYOMINE, "evaluate-picks", str(picks), str(tomo.with_suffix(".star")), "--classes",
                                        str(pred / "predictions.star"), "--json"], capture_output=True, text=True, check=True).stdout)  # fmt: skip
    per_class = {
        name: {
            "n_true": e["n_true"], "n_picked": e["n_picked"],
            "localisation_f1": e["localisation"]["f1"], "localisation_recall": e["localisation"]["recall"],
            "localisation_and_class_f1": (e["localisation_and_class"] or {}).get("f1"),
        }
        for name, e in report["per_class"].items()
    }  # fmt: skip
    save(args.results, {
        "machine": machine(),
        "setup": {"run": args.run, "shape_zyx": args.shape, "particles": args.particles, "classes": structures, "snr": args.snr,
                  "seed": args.seed, "dog_radius_a": radius, "box": args.size, "hit": "within 0.5 x radius"},
        "steps": steps,
        "localisation": report["localisation"],
        "localisation_and_class": report["localisation_and_class"],
        "per_class": per_class,
        "evaluation": report,
    })  # fmt: skip


if __name__ == "__main__":
    main()
