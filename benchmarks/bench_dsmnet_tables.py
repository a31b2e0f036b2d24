"""The DSM-Net paper's tables on cryomine's simulated data (issue 4, item 5).

Trains and evaluates, on the same split (seed) and the same budget (epochs, training-set cap), the rows of
- Table 1 (dataset A, SNR 0.06): DSRF3D-v2, Cls, SSN3D-ED, Seg, Cls+Rec, Cls+Seg, DSM-Net;
- Table 2 (dataset B, SNR 0.01): the same simulated rows;
- Table 3 (dataset A): DSM-Net with other cls:seg:rec loss ratios.
Each cell comes from ``cryomine train`` then ``cryomine evaluate RUN DATASET --split test --json``.

Usage (full paper budget needs a GPU; on a 2-core CPU use a small budget and say so):
``.venv/bin/python benchmarks/bench_dsmnet_tables.py --dataset-a A.h5 [--dataset-b B.h5] --epochs E
[--max-train N] [--out /tmp/cryomine-tables] [--tables 1,2,3] [--seed S] [--models dsmnet,seg]``
Results: ``benchmarks/results/dsmnet_tables.json`` and a Markdown table printed for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from _common import CRYOMINE, machine, save

ROWS = ("dsrf3d-v2", "cls", "ssn3d-ed", "seg", "cls+rec", "cls+seg", "dsmnet")
LOSS_RATIOS = ("1:1:1", "1:10:1", "1:10:10", "10:10:1")
# The paper's DSM-Net numbers as the issue states them (object accuracy, mIoU, %); other cells: see the paper.
PAPER = {("A", "dsmnet"): (93.75, 89.0), ("B", "dsmnet"): (53.1, 81.4)}


def evaluate(run: Path | str, dataset: Path, split: str = "test") -> dict:
    """``cryomine evaluate RUN DATASET --split SPLIT --json``: object accuracy, mIoU, pixel accuracy (%)."""
    proc = subprocess.run([CRYOMINE, "evaluate", str(run), str(dataset), "--split", split, "--json"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    ev = json.loads(proc.stdout)
    pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
    return {"object_accuracy": pct(ev.get("object_accuracy")), "miou": pct(ev.get("miou")),
            "pixel_accuracy": pct(ev.get("pixel_accuracy"))}


def train_and_evaluate(dataset: Path, model: str, out: Path, epochs: int, max_train: int | None, weights: str | None,
                       seed: int = 0, extra: tuple[str, ...] = ()) -> dict:
    """Train one row (resuming an interrupted run) and evaluate it on the test split; the cell is cached in
    ``out/row.json`` so that a re-started benchmark skips finished rows. ``extra``: more ``cryomine train``
    options (e.g. ``--recipe paper``)."""
    run = out
    cached = out / "row.json"
    budget = {"epochs": epochs, "max_train": max_train, **({"extra": list(extra)} if extra else {})}
    if cached.is_file():
        row = json.loads(cached.read_text())
        if row.get("budget") == budget and row.get("seed", 0) == seed:
            return row["result"]
    args = [CRYOMINE, "train", str(dataset), "--model", model, "--out", str(run), "--epochs", str(epochs), "--seed", str(seed),
            *extra]
    if max_train:
        args += ["--max-train", str(max_train)]
    if weights:
        args += ["--loss-weights", weights]
    if (run / "config.json").exists():
        args.append("--resume")
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    train_s = time.perf_counter() - t0
    epoch_s = [float(line.split(",")[-2]) for line in (run / "metrics.csv").read_text().splitlines()[1:] if line]
    result = {**evaluate(run, dataset, "test"), "train_s": round(train_s, 1),
              "epochs_run": len(epoch_s), "mean_epoch_s": round(sum(epoch_s) / max(len(epoch_s), 1), 1),
              "load_average_after": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    cached.write_text(json.dumps({"budget": budget, "seed": seed, "result": result}))
    return result


def markdown(results: dict) -> str:
    lines = ["| table | dataset | model | loss cls:seg:rec | object acc. % | mIoU % | paper object acc. / mIoU % |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results["rows"]:
        paper = PAPER.get((r["dataset"], r["model"])) if r["loss"] == "1:10:1" else None
        lines.append(f"| {r['table']} | {r['dataset']} | {r['model']} | {r['loss']} | {r['object_accuracy']} | {r['miou']} | "
                     f"{f'{paper[0]} / {paper[1]}' if paper else 'see paper'} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset-a", type=Path, required=True)
    parser.add_argument("--dataset-b", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-tables"))
    parser.add_argument("--tables", default="1,2,3")
    parser.add_argument("--name", default="dsmnet_tables", help="Results file name under benchmarks/results/.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split and the training (the same for every row).")
    parser.add_argument("--models", default=None, help="Comma-separated subset of the rows' models (default: all).")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = []
    if "1" in tables:
        jobs += [("1", "A", args.dataset_a, m, "1:10:1") for m in ROWS]
    if "2" in tables and args.dataset_b is not None:
        jobs += [("2", "B", args.dataset_b, m, "1:10:1") for m in ROWS]
    if "3" in tables:
        jobs += [("3", "A", args.dataset_a, "dsmnet", w) for w in LOSS_RATIOS if w != "1:10:1"]
    if args.models:
        keep = set(args.models.split(","))
        jobs = [j for j in jobs if j[3] in keep]
    results: dict = {"machine": machine(), "budget": {"epochs": args.epochs, "max_train": args.max_train},
                     "seed": args.seed, "rows": []}
    for table, tag, dataset, model, weights in jobs:
        out = args.out / f"{tag}_{model.replace('+', '_')}_{weights.replace(':', '-')}"
        res = train_and_evaluate(dataset, model, out, args.epochs, args.max_train, None if weights == "1:10:1" else weights,
                                 args.seed)
        results["rows"].append({"table": table, "dataset": tag, "model": model, "loss": weights, **res})
        print(results["rows"][-1], flush=True)
        (args.out / "partial.json").write_text(json.dumps(results, indent=2))
    save(args.name, results)
    print(markdown(results))


if __name__ == "__main__":
    main()
