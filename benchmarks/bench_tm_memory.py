"""Benchmark: template matching's peak memory and time on big tomograms (issue 15, item 1).

Runs ``cryomine pick TOMO --template T --angular-step S --memory-gb G`` (automatic threshold) in a fresh process
per tomogram and memory bound (``--memory-gb 4,2``: one run each) and records wall time, peak RSS (the process
alone), orientations and tiles. ``--memory-gb`` bounds the whole run; the number of orientations changes only
the time (they are correlated ``--angle-batch`` at a time).

Usage: ``.venv/bin/python benchmarks/bench_tm_memory.py TOMO.mrc [TOMO2.mrc ...] [--template 4v4r] [--step 60]
[--memory-gb 4[,2,...]] [--out /tmp/cryomine-bench/tm_memory]``. Results: appended as one invocation to the
``runs`` of ``benchmarks/results/tm_memory.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mrcfile

from _common import CRYOMINE, RESULTS, machine, save, timed_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tomograms", nargs="+", type=Path)
    parser.add_argument("--template", default="4v4r")
    parser.add_argument("--step", type=float, default=60.0)
    parser.add_argument("--memory-gb", default="4", help="comma-separated bounds, one run each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench/tm_memory"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for tomo in args.tomograms:
        with mrcfile.mmap(tomo, mode="r") as mrc:
            shape = list(mrc.data.shape)
        for gb in (float(v) for v in args.memory_gb.split(",")):
            picks = args.out / f"{tomo.stem}_{gb:g}gb_picks.star"
            run = timed_run([CRYOMINE, "pick", str(tomo), "--template", args.template, "--angular-step", f"{args.step:g}",
                             "--memory-gb", f"{gb:g}", "--threads", str(args.threads), "--out", str(picks)])  # fmt: skip
            summary = json.loads(picks.with_suffix(".json").read_text())
            row = {"tomogram": str(tomo), "shape_zyx": shape, "voxels": int(shape[0] * shape[1] * shape[2]), **run,
                   "n_orientations": summary["n_orientations"], "n_tiles": summary["n_tiles"], "n_picks": summary["n_picks"],
                   "threshold": summary["threshold"], "memory_gb_option": gb,
                   "bound_met": run["peak_rss_gb"] * 2**30 <= gb * 1e9}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    path = RESULTS / "tm_memory.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    runs = old.get("runs", []) if isinstance(old.get("runs"), list) else []
    runs.append({"machine": machine(), "template": args.template, "step_deg": args.step, "threads": args.threads, "rows": rows})
    save("tm_memory", {"runs": runs, "note": "one entry per invocation of benchmarks/bench_tm_memory.py"})


if __name__ == "__main__":
    main()
