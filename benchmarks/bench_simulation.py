"""Benchmark of the simulator (issues 3 and 14: realistic simulation, throughput).

Measures, each in a fresh process (so peak memory is that job's alone), on this revision and optionally on a
baseline checkout of an earlier one (``--baseline-src OLD/src``, run with the same interpreter and commands):

1. the ``dsmnet-a`` preset (22 classes, 3205 subtomograms of 40³, SNR 0.06): wall time, peak RSS
   (issue 14 target: <= 20 s, i.e. >= 160 boxes/s);
2. a cell-sized 300 x 1024 x 1024 tomogram with 5,000 particles of 12 classes (issue 14 target: <= 60 s
   within 4 GB);
3. the 200 x 512 x 512 tomogram with 1,000 particles of issue 3 (target <= 10 min);
4. the measured SNR at 0.06 (the preset) and at 0.01 (``dsmnet-b`` with ``--per-class 10``).

The load average is recorded before and after every job: times are only comparable on a quiet machine.

Usage: ``.venv/bin/python benchmarks/bench_simulation.py [--out /tmp/cryomine-bench] [--baseline-src DIR]
[--skip-preset] [--skip-tomogram]``. Results: ``benchmarks/results/simulation.json``; copy the numbers into
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _common import CRYOMINE, machine, save, timed_run

CLASSES_12 = "1bxn,1qvr,1s3x,1u6g,2cg9,3cf3,3d2f,3gl1,3h84,3j9i,3qm1,4v4r"


def info(path: Path) -> dict:
    out = subprocess.run([CRYOMINE, "dataset", "info", str(path), "--json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def command(baseline_src: Path | None) -> list[str]:
    """The cryomine CLI of this revision, or of the baseline source tree (same interpreter and packages)."""
    if baseline_src is None:
        return [CRYOMINE]
    return ["env", f"PYTHONPATH={baseline_src}", sys.executable, "-c", "from cryomine.cli import main; main()"]


def run_job(name: str, out: Path, args: list[str], baseline_src: Path | None) -> dict:
    """Run ``cryomine <out> <args>`` (``args[0:2]`` the command, then the output); the baseline writes beside it
    (``<stem>_baseline``) so that this revision's output is the one measured afterwards."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    result = {"load_average_before": load_before, **timed_run(command(None) + args[:2] + [str(out)] + args[2:])}
    if baseline_src is not None:
        other = out.with_name(f"{out.stem}_baseline{out.suffix}")
        result["baseline"] = {"load_average_before": [round(x, 2) for x in os.getloadavg()],
                              **timed_run(command(baseline_src) + args[:2] + [str(other)] + args[2:])}  # fmt: skip
        result["speed_up"] = round(result["baseline"]["wall_s"] / result["wall_s"], 2)
    print(name, json.dumps({k: v for k, v in result.items() if k != "stdout_tail"}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench"))
    parser.add_argument("--baseline-src", type=Path, default=None, help="src/ folder of an earlier revision to compare with")
    parser.add_argument("--skip-preset", action="store_true")
    parser.add_argument("--skip-tomogram", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.baseline_src.resolve() if args.baseline_src else None
    results: dict[str, object] = {"machine": machine(), "baseline_src": str(base) if base else None}
    if not args.skip_preset:
        a = args.out / "dsmnet_a.h5"
        run = run_job("dsmnet_a", a, ["simulate", "subtomograms", "--preset", "dsmnet-a", "--force"], base)
        meta = info(a)
        results["dsmnet_a"] = {**run, "target_s": 20, "met": run["wall_s"] <= 20,
                               "boxes_per_s": round(meta["n_written"] / run["wall_s"], 1), "snr_measured": meta["snr_measured"],
                               "volume_fraction": meta.get("volume_fraction"), "n": meta["n_written"]}  # fmt: skip
    b = args.out / "dsmnet_b_small.h5"
    run = run_job("dsmnet_b", b, ["simulate", "subtomograms", "--preset", "dsmnet-b", "--per-class", "10", "--force"], base)
    results["dsmnet_b_per_class_10"] = {**run, "snr_measured": info(b)["snr_measured"]}
    if not args.skip_tomogram:
        for key, shape, particles, target_s, target_gb in (("tomogram_cell", "300,1024,1024", 5000, 60, 4.0),
                                                           ("tomogram", "200,512,512", 1000, 600, None)):  # fmt: skip
            t = args.out / f"{key}.mrc"
            run = run_job(key, t, ["simulate", "tomogram", "--shape", shape, "--particles", str(particles),
                                "--structures", CLASSES_12, "--seed", "0"], base)  # fmt: skip
            summary = json.loads(t.with_suffix(".json").read_text())
            met = run["wall_s"] <= target_s and (target_gb is None or run["peak_rss_gb"] <= target_gb)
            results[key] = {**run, "target_s": target_s, "target_gb": target_gb, "met": met,
                            "particles_placed": summary["particles_placed"], "snr_measured": summary["snr_measured"],
                            "volume_fraction": summary["volume_fraction"]}  # fmt: skip
    save("simulation", results)


if __name__ == "__main__":
    main()
