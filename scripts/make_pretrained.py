"""Make a shipped DSM-Net model (``pretrained:dsmnet-a``, ``pretrained:dsmnet-b``) from a training run (maintainer script).

1. Load the run's ``best.pt`` and ``last.pt``; re-estimate their batch-norm statistics over 20 training batches
   (precise BN, :mod:`cryomine.train.batchnorm`); keep the one with the higher validation accuracy.
2. Evaluate it on the run's test split (never used for any choice).
3. Export to ``src/cryomine/pretrained/NAME/`` with ``training.json`` (data, seed, epochs, hardware, metrics).

Usage: ``.venv/bin/python scripts/make_pretrained.py RUN DATASET [--name dsmnet-a] [--note TEXT]
[--data-command CMD] [--train-command CMD] [--hardware-note TEXT]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from cryomine import __version__
from cryomine.data.loader import SubtomoDataset
from cryomine.devices import resolve_bf16
from cryomine.evaluate.evaluate import evaluate_run
from cryomine.io.subtomo_h5 import read_header
from cryomine.train.batchnorm import recalibrate_batchnorm
from cryomine.train.export import export_pretrained
from cryomine.train.loop import load_checkpoint, save_checkpoint
from cryomine.train.runfolder import load_run, read_split, resolve_run
from cryomine.train.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--name", default="dsmnet-a")
    parser.add_argument("--note", default="")
    parser.add_argument("--data-command", default="cryomine simulate subtomograms dsmnet_a.h5 --preset dsmnet-a")
    parser.add_argument("--train-command", default="cryomine train dsmnet_a.h5 --model dsmnet --out RUN --seed 0")
    parser.add_argument("--hardware-note", default="the 2 cores were shared with other jobs during training")
    args = parser.parse_args()
    split = read_split(args.run)
    runtime = Runtime(torch.device("cpu"), bf16=resolve_bf16(None, torch.device("cpu")), channels_last=True)
    candidates = {}
    for ckpt in ("best.pt", "last.pt"):
        loaded = load_run(args.run, checkpoint=ckpt, device=torch.device("cpu"))
        train = SubtomoDataset(args.dataset, split["train"], None, with_mask=False, with_density=False)
        recalibrate_batchnorm(loaded.model, train, batch_size=64, n_batches=20, runtime=runtime, seed=0)
        state = {k: v.detach().clone().contiguous() for k, v in loaded.model.state_dict().items()}
        epoch = int(load_checkpoint(args.run / ckpt).get("epoch", 0))
        save_checkpoint(args.run / f"precise_{ckpt}", {"model_state": state, "epoch": epoch})
        val = evaluate_run(args.run, args.dataset, split="val", checkpoint=f"precise_{ckpt}")
        candidates[ckpt] = (val["object_accuracy"], epoch)
        print(ckpt, "epoch", epoch, "val accuracy after precise BN", val["object_accuracy"], flush=True)
    chosen = max(candidates, key=lambda k: candidates[k][0])
    test = evaluate_run(args.run, args.dataset, split="test", checkpoint=f"precise_{chosen}")
    with open(args.run / "metrics.csv") as f:
        history = list(csv.DictReader(f))
    header = read_header(args.dataset)
    run_config = json.loads((args.run / "config.json").read_text())
    init = run_config.get("init_from")
    if init:  # fine-tuned: keep how the starting weights were trained (their own training.json, where shipped)
        start = resolve_run(init["run"]) / "training.json"
        init = {**init, "its_training": json.loads(start.read_text()).get("training") if start.is_file() else None}
    record = {
        "model": "DSM-Net (cls+seg+rec), 22 classes, 40^3 at 10 A",
        "data": {"command": args.data_command, "n": header.n_written, "seed": header.config.get("seed"),
                 "imaging": header.config.get("imaging"), "variation": header.config.get("variation"),
                 "dataset_cryomine_version": header.cryomine_version},
        "split": {k: len(v) for k, v in split.items() if isinstance(v, list)},
        "training": {"command": args.train_command, "epochs_run": len(history),
                     "train_config": run_config["train"], "init_from": init,
                     "chosen_checkpoint": chosen, "chosen_epoch": candidates[chosen][1],
                     "precise_bn": "batch-norm statistics re-estimated over 20 training batches (1280 subtomograms)",
                     "val_accuracy_after_precise_bn": {k: v[0] for k, v in candidates.items()},
                     "mean_epoch_s": round(float(np.mean([float(r["time_s"]) for r in history])), 1)},
        "hardware": {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
                     "torch": torch.__version__, "python": sys.version.split()[0],
                     "note": args.hardware_note},
        "test_metrics": {k: test[k] for k in ("object_accuracy", "pixel_accuracy", "miou", "n_subtomograms") if k in test},
        "cryomine_version": __version__,
        "note": args.note,
    }
    dest = ROOT / "src" / "cryomine" / "pretrained" / args.name
    export_pretrained(args.run, dest, record, checkpoint=f"precise_{chosen}")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
