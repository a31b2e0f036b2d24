"""Ablation of DSM-Net's training augmentation and recipe (issue 12, item 1-2), same split, same budget.

Rows (all DSM-Net, dataset A, split seed 0, ``--epochs E``; the cosine schedule spans the E epochs):

- ``paper``: the paper's protocol (``--recipe paper``: Adam 1e-3 constant, no augmentation, no label smoothing);
- ``recipe``: cryomine's recipe without augmentation (AdamW + weight decay, warm-up + cosine, label smoothing);
- ``flips``: the recipe + wedge-preserving flips (stored noise);
- ``full``: the recipe + flips + fresh noise every time a box is seen (the default of ``cryomine train``);
- ``shift``: ``full`` + random shifts of up to 2 voxels.

Each row is evaluated on the test split of A and on a dataset simulated with a fresh seed (``--fresh``). Rows
resume and are cached in ``OUT/abl_NAME/row.json``; several invocations with different ``--rows`` can run at
once, and each writes ``benchmarks/results/dsmnet_ablation.json`` from every finished row it finds.

Usage: ``.venv/bin/python benchmarks/bench_dsmnet_ablation.py --dataset A.h5 --fresh FRESH.h5 --epochs 12
[--rows paper,full] [--out runs] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import machine, save
from bench_dsmnet_tables import evaluate, train_and_evaluate

ROWS = {
    "paper": ("--recipe", "paper"),
    "recipe": ("--no-augment",),
    "flips": ("--no-fresh-noise",),
    "full": (),
    "shift": ("--shift", "2"),
}


def markdown(rows: list[dict]) -> str:
    lines = ["| row | train options | test obj. acc. % | test mIoU % | fresh-seed obj. acc. % | fresh-seed mIoU % | "
             "best epoch | mean epoch s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['row']} | `{' '.join(r['options']) or '(defaults)'}` | {r['object_accuracy']} | {r['miou']} | "
                     f"{r['fresh']['object_accuracy']} | {r['fresh']['miou']} | {r['best_epoch']} | {r['mean_epoch_s']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--fresh", type=Path, required=True, help="Dataset simulated with a seed never used before.")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--out", type=Path, default=Path("runs"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = ("--num-threads", str(args.threads)) if args.threads else ()
    for name in args.rows.split(","):
        run = args.out / f"abl_{name}"
        res = train_and_evaluate(args.dataset, "dsmnet", run, args.epochs, None, None, 0, (*ROWS[name], *threads))
        fresh_file = run / "fresh.json"
        if not fresh_file.is_file():
            fresh_file.write_text(json.dumps({"dataset": str(args.fresh), **evaluate(run, args.fresh, "all")}))
        print(name, res, flush=True)
    rows = []
    for name, options in ROWS.items():
        run = args.out / f"abl_{name}"
        if (run / "row.json").is_file() and (run / "fresh.json").is_file():
            metrics = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]
            best = max((int(m[0]) for m in metrics if m[-1].strip() == "1"), default=0)
            rows.append({"row": name, "options": list(options), **json.loads((run / "row.json").read_text())["result"],
                         "best_epoch": best, "fresh": json.loads((run / "fresh.json").read_text())})
    save("dsmnet_ablation", {"machine": machine(), "epochs": args.epochs, "dataset": str(args.dataset),
                             "fresh": str(args.fresh), "rows": rows})
    print(markdown(rows))


if __name__ == "__main__":
    main()
