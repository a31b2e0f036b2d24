"""Benchmark of discovery (issue: discovery of unseen structures): the DSM-Net paper's held-out-class experiment.

For each held-out complex (default ``3j9i`` proteasome, ``4v4r`` ribosome, ``1bxn`` rubisco):

1. ``cryomine train DATASET --exclude-class NAME --epochs E --out OUT/run_NAME`` (continued with ``--resume``
   when the run folder exists, so an interrupted benchmark picks up where it stopped);
2. ``cryomine discover OUT/run_NAME DATASET --out OUT/discover_NAME`` (k = the 21 trained classes + 1);
3. reads ``summary.json``: the held-out class's recall and precision (its majority cluster), and the FSC of that
   cluster's mean recovered density against the true structure (0.5 / 0.143 resolutions, FSC sum), for DSM-Net
   features and for the rotation-invariant baseline (whose cluster mean is of the subtomograms themselves).

Targets at SNR 0.06 (``dsmnet-a``): recall >= 0.8 with precision >= 0.8; FSC-0.5 resolution <= 40 Å (10 Å voxels).

Usage::

    .venv/bin/cryomine simulate subtomograms /tmp/cryomine-bench/dsmnet_a.h5 --preset dsmnet-a
    .venv/bin/python benchmarks/bench_discovery.py --dataset /tmp/cryomine-bench/dsmnet_a.h5 --epochs 30 \\
        --out /tmp/cryomine-bench/discovery

Results: ``benchmarks/results/<--name, default discovery>.json`` and a markdown table on stdout for
``docs/benchmarks.md``. ``--train-arg`` passes extra options to ``cryomine train`` (e.g. ``--train-arg=--max-train=200``
for a quick check).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from _common import CRYOMINE, machine, save, timed_run

RECALL_TARGET, PRECISION_TARGET, RESOLUTION_TARGET_A = 0.8, 0.8, 40.0


def _held_out_numbers(summary: dict[str, Any], method: str, name: str) -> dict[str, Any]:
    """Recall, precision and FSC of ``name`` under ``method`` (``dsmnet`` / ``baseline``) from a summary.json."""
    part = summary.get(method) or {}
    h = (part.get("held_out") or {}).get(name)
    if h is None:
        return {"found": False}
    f = h.get("fsc") if method == "dsmnet" and h.get("fsc") else h.get("fsc_subtomogram_mean") or {}
    res = f.get("resolution_fsc05_a")
    out = {
        "found": True, "cluster": h["cluster"], "cluster_size": h["cluster_size"], "n": h["n"],
        "recall": h["recall"], "precision": h["precision"], "purity": part.get("purity"),
        "fsc_05_a": res, "fsc_0143_a": f.get("resolution_fsc0143_a"), "fsc_sum": f.get("fsc_sum"),
        "met_recall_precision": h["recall"] >= RECALL_TARGET and h["precision"] >= PRECISION_TARGET,
        "met_resolution": res is not None and res <= RESOLUTION_TARGET_A,
    }
    if method == "dsmnet" and h.get("fsc_subtomogram_mean"):
        out["fsc_05_a_subtomogram_mean"] = h["fsc_subtomogram_mean"].get("resolution_fsc05_a")
    return out


def _dataset_info(path: Path) -> dict[str, Any] | None:
    """``cryomine dataset info --json`` of the dataset (None if that fails)."""
    proc = subprocess.run([CRYOMINE, "dataset", "info", str(path), "--json"], capture_output=True, text=True)
    try:
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        return None


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table (one row per held-out class and method)."""
    lines = ["| held out | method | recall | precision | purity (all) | FSC 0.5 (Å) | FSC 0.143 (Å) | FSC sum | targets met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in results["held_out"].items():
        for method, label in (("dsmnet", "DSM-Net features (recovered mean)"), ("baseline", "rotation-invariant baseline")):
            r = entry.get(method, {})
            if not r.get("found"):
                lines.append(f"| {name} | {label} | not found | | | | | | no |")
                continue
            met = "yes" if r["met_recall_precision"] and r["met_resolution"] else (
                "recall/precision only" if r["met_recall_precision"] else ("resolution only" if r["met_resolution"] else "no"))
            lines.append(f"| {name} | {label} | {r['recall']:.3f} | {r['precision']:.3f} | {_fmt(r['purity'], '.3f')} | "
                         f"{_fmt(r['fsc_05_a'], '.1f')} | {_fmt(r['fsc_0143_a'], '.1f')} | {_fmt(r['fsc_sum'], '.2f')} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("/tmp/cryomine-bench/dsmnet_a.h5"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench/discovery"))
    parser.add_argument("--held-out", default="3j9i,4v4r,1bxn", help="Comma-separated classes to hold out, one run each.")
    parser.add_argument("--k", type=int, default=None, help="Clusters (default: trained classes + 1).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-arg", action="append", default=[], help="Extra 'cryomine train' option (repeatable).")
    parser.add_argument("--name", default="discovery", help="Results file name under benchmarks/results/.")
    args = parser.parse_args()
    if not args.dataset.is_file():
        raise SystemExit(f"{args.dataset}: dataset not found (make it with 'cryomine simulate subtomograms --preset dsmnet-a')")
    args.out.mkdir(parents=True, exist_ok=True)
    extra = [a for arg in args.train_arg for a in shlex.split(arg)]
    info = _dataset_info(args.dataset)
    results: dict[str, Any] = {"machine": machine(), "dataset": str(args.dataset.resolve()), "epochs": args.epochs,
                               "train_args": extra, "targets": {"recall": RECALL_TARGET, "precision": PRECISION_TARGET,
                                                                "fsc_05_a": RESOLUTION_TARGET_A}, "held_out": {}}
    if info:
        results["dataset_info"] = {k: info.get(k) for k in ("n_written", "shape", "voxel_size_a", "snr_measured", "class_names")}
    for name in [n.strip() for n in args.held_out.split(",") if n.strip()]:
        run_dir, disc_dir = args.out / f"run_{name}", args.out / f"discover_{name}"
        train = [CRYOMINE, "train", str(args.dataset), "--exclude-class", name, "--epochs", str(args.epochs),
                 "--out", str(run_dir), "--seed", str(args.seed), *extra]
        if (run_dir / "config.json").is_file():
            train = [CRYOMINE, "train", str(args.dataset), "--out", str(run_dir), "--resume", "--epochs", str(args.epochs)]
        t = timed_run(train)
        disc = [CRYOMINE, "discover", str(run_dir), str(args.dataset), "--out", str(disc_dir), "--seed", str(args.seed)]
        if args.k is not None:
            disc += ["--k", str(args.k)]
        d = timed_run(disc)
        summary = json.loads((disc_dir / "summary.json").read_text())
        results["held_out"][name] = {
            "train": {"wall_s": t["wall_s"], "peak_rss_gb": t["peak_rss_gb"], "last_line": t["stdout_tail"]},
            "discover": {"wall_s": d["wall_s"], "peak_rss_gb": d["peak_rss_gb"]},
            "k": summary["k"], "n_subtomograms": summary["n_subtomograms"],
            "truth_source": summary.get("truth_source", {}).get(name),
            "dsmnet": _held_out_numbers(summary, "dsmnet", name),
            "baseline": _held_out_numbers(summary, "baseline", name),
            "summary": str(disc_dir / "summary.json"),
        }
        (args.out / "partial.json").write_text(json.dumps(results, indent=2))  # what is done so far, if interrupted
    save(args.name, results)
    print()
    print(markdown(results))


if __name__ == "__main__":
    main()
