"""Speed-up of ``cryomine run PROJECT`` from 1 to 2 local Dask workers (issue 18, item 2), and that the result is
the same whichever way the tomograms are spread.

Simulates N tomograms (fresh seeds 1801...; none used anywhere else) and runs the whole project with the CLI, as a
user would: ``--workers 1`` (one tomogram at a time, all CPUs' threads) and ``--workers 2`` (two at a time, the
threads shared), each into a fresh folder, then checks that both give the same picks, classes and averages.
Rows are skipped when their result is already in the JSON (``--rerun`` to redo them).

Usage: ``.venv/bin/python benchmarks/bench_project.py --work runs/bench_project [--tomograms 4] [--shape 64,192,192]``
Results: ``benchmarks/results/project_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

from _common import CRYOMINE, RESULTS, machine, save, timed_run
from cryomine.io import read_mrc
from cryomine.io.star import coordinates_xyz_voxels, read_particles

NAME = "project_scaling"
RESULT = RESULTS / f"{NAME}.json"
STRUCTURES = "3j9i,4v4r,1bxn,6utj,3gl1,1qvr"


def simulate(work: Path, n: int, shape: str, particles: int, snr: float) -> Path:
    src = work / "src"
    for i in range(n):
        mrc = src / f"TS_{i + 1:02d}.mrc"
        if not mrc.exists():
            timed_run([CRYOMINE, "simulate", "tomogram", str(mrc), "--shape", shape, "--particles", str(particles),
                       "--structures", STRUCTURES, "--snr", f"{snr:g}", "--seed", str(1801 + i)])  # fmt: skip
    return src


def same_results(a: Path, b: Path) -> dict[str, object]:
    """Whether two project runs hold the same picks, predicted classes and averages (max map difference)."""
    same_picks = same_classes = True
    max_diff = 0.0
    for folder in sorted((a / "tomograms").iterdir()):
        other = b / "tomograms" / folder.name
        pa, pb = read_particles(folder / "predict" / "predictions.star"), read_particles(other / "predict" / "predictions.star")
        same_picks &= bool(np.array_equal(coordinates_xyz_voxels(pa), coordinates_xyz_voxels(pb)))
        same_classes &= list(pa.particles["rlnClassName"]) == list(pb.particles["rlnClassName"])
        for avg in sorted(folder.glob("average_*/average.mrc")):
            diff = np.abs(read_mrc(avg).data - read_mrc(other / avg.parent.name / "average.mrc").data).max()
            max_diff = max(max_diff, float(diff))
    return {"same_picks": same_picks, "same_classes": same_classes, "max_average_difference": max_diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_project"))
    ap.add_argument("--tomograms", type=int, default=4)
    ap.add_argument("--shape", default="64,192,192")
    ap.add_argument("--particles", type=int, default=40)
    ap.add_argument("--snr", type=float, default=0.1)
    ap.add_argument("--rerun", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = json.loads(RESULT.read_text()) if RESULT.exists() and not args.rerun else {"rows": {}}
    src = simulate(args.work, args.tomograms, args.shape, args.particles, args.snr)
    cpus = os.cpu_count() or 1
    for workers in (1, 2):
        key = f"workers={workers}"
        if key in result["rows"]:
            continue
        out = args.work / f"out_w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        threads = max(1, cpus // workers)
        run = timed_run([CRYOMINE, "run", str(src), "--out", str(out), "--workers", str(workers), "--threads", str(threads), "-q"])
        summary = json.loads((out / "summary.json").read_text())
        per_tomo = [t["seconds"] for t in summary["tomograms"].values()]
        result["rows"][key] = {"workers": workers, "threads_per_worker": threads, "wall_s": round(run["wall_s"], 1),
                               "peak_rss_gb_main_process": run["peak_rss_gb"], "tomogram_task_s": per_tomo,
                               "picks": sum(t["picks"] for t in summary["tomograms"].values())}  # fmt: skip
        save(NAME, result)  # per row: an interrupted benchmark keeps its finished rows
    w1, w2 = result["rows"]["workers=1"], result["rows"]["workers=2"]
    result["speedup_1_to_2"] = round(w1["wall_s"] / w2["wall_s"], 2)
    result["agreement"] = same_results(args.work / "out_w1", args.work / "out_w2")
    result["setup"] = {"tomograms": args.tomograms, "shape_zyx": args.shape, "particles": args.particles, "snr": args.snr,
                       "structures": STRUCTURES, "seeds": [1801 + i for i in range(args.tomograms)], "cpus": cpus}  # fmt: skip
    result["machine"] = machine()
    save(NAME, result)
    print(json.dumps({k: result[k] for k in ("speedup_1_to_2", "agreement")}, indent=1))


if __name__ == "__main__":
    main()
