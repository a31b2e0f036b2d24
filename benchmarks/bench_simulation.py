"""Benchmark of the simulator (issue: realistic simulation).

Measures, each in a fresh process (so peak memory is that job's alone):
1. the ``dsmnet-a`` preset (22 classes, 3205 subtomograms of 40³, SNR 0.06): wall time and peak RSS (target: <= 5 min);
2. a 200 x 512 x 512 tomogram with 1,000 particles: wall time and peak RSS (target: <= 10 min);
3. the measured SNR at 0.06 (the preset) and at 0.01 (``dsmnet-b`` with ``--per-class 10``).

Usage: ``.venv/bin/python benchmarks/bench_simulation.py [--out /tmp/cryomine-bench] [--skip-preset] [--skip-tomogram]``
Results: ``benchmarks/results/simulation.json``; copy the numbers into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from _common import CRYOMINE, machine, save, timed_run


def info(path: Path) -> dict:
    out = subprocess.run([CRYOMINE, "dataset", "info", str(path), "--json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench"))
    parser.add_argument("--skip-preset", action="store_true")
    parser.add_argument("--skip-tomogram", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"machine": machine()}
    if not args.skip_preset:
        a = args.out / "dsmnet_a.h5"
        run = timed_run([CRYOMINE, "simulate", "subtomograms", str(a), "--preset", "dsmnet-a", "--force"])
        meta = info(a)
        results["dsmnet_a"] = {**run, "target_s": 300, "met": run["wall_s"] <= 300, "snr_measured": meta["snr_measured"],
                               "volume_fraction": meta.get("volume_fraction"), "n": meta["n_written"]}  # fmt: skip
    b = args.out / "dsmnet_b_small.h5"
    run = timed_run([CRYOMINE, "simulate", "subtomograms", str(b), "--preset", "dsmnet-b", "--per-class", "10", "--force"])
    results["dsmnet_b_per_class_10"] = {**run, "snr_measured": info(b)["snr_measured"]}
    if not args.skip_tomogram:
        t = args.out / "tomo_200x512x512.mrc"
        run = timed_run([CRYOMINE, "simulate", "tomogram", str(t), "--shape", "200,512,512", "--particles", "1000",
                         "--structures", "1bxn,1qvr,1s3x,1u6g,2cg9,3cf3,3d2f,3gl1,3h84,3j9i,3qm1,4v4r", "--seed", "0"])  # fmt: skip
        summary = json.loads(t.with_suffix(".json").read_text())
        results["tomogram"] = {**run, "target_s": 600, "met": run["wall_s"] <= 600,
                               "particles_placed": summary["particles_placed"], "snr_measured": summary["snr_measured"],
                               "volume_fraction": summary["volume_fraction"]}  # fmt: skip
    save("simulation", results)


if __name__ == "__main__":
    main()
