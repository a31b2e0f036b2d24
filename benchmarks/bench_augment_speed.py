"""Cost of the training augmentation per DSM-Net epoch (issue 12, item 2: within 10% of the epoch time).

Times one epoch's worth of training batches (the dsmnet-a training split, batch 64) drawn by
``SubtomoDataset.batch`` with no augmentation, flips only, and flips + fresh noise (the default), and a few
bf16 DSM-Net training steps (forward + backward + AdamW) to put the data time beside the compute time.

Usage: ``.venv/bin/python benchmarks/bench_augment_speed.py --dataset dsmnet_a.h5 [--threads 2]``
Results: ``benchmarks/results/augment_speed.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import machine, save
from cryomine.data import AugmentConfig, ClassMap, SubtomoDataset, stratified_split
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.models import ModelConfig, build_model, keep_freed_memory
from cryomine.train import TrainConfig
from cryomine.train.loop import augment_rng, build_optimizer, loss_terms, weighted_total
from cryomine.train.runtime import Runtime


def data_epoch_s(path, rows, cmap, augment, batch) -> float:
    data = SubtomoDataset(path, rows, cmap, with_mask=True, with_density=True, augment=augment)
    order = np.random.default_rng(0).permutation(len(data))
    t0 = time.perf_counter()
    for i in range(0, len(order), batch):
        data.batch(order[i:i + batch], augment_rng(0, 1, i // batch) if augment else None)
    return time.perf_counter() - t0


def step_s(n_classes: int, batch: dict, steps: int = 4) -> float:
    keep_freed_memory()
    cfg = TrainConfig()
    runtime = Runtime(torch.device("cpu"), bf16=True, channels_last=True)
    model = runtime.prepare(build_model(ModelConfig("dsmnet", n_classes=n_classes)))
    opt = build_optimizer(model, cfg)
    b = runtime.to_device(batch)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with runtime.autocast():
            out = model(b["x"])
        loss = weighted_total(loss_terms(out, b, ("cls", "seg", "rec"), 0.1), cfg.loss_weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header = read_header(args.dataset)
    cmap = ClassMap(tuple(header.class_names))
    rows = stratified_split(read_rows(args.dataset, ("class_id",))["class_id"])["train"]
    res = {name: round(data_epoch_s(args.dataset, rows, cmap, aug, args.batch), 2) for name, aug in
           (("none", None), ("flips", AugmentConfig(fresh_noise=False)), ("flips_fresh_noise", AugmentConfig()))}
    probe = SubtomoDataset(args.dataset, rows[: args.batch], cmap, with_mask=True, with_density=True)
    step = step_s(len(cmap.names), probe.batch(np.arange(args.batch)))
    n_batches = -(-len(rows) // args.batch)
    compute = step * n_batches
    payload = {"machine": machine(), "threads": args.threads, "train_rows": int(len(rows)), "batches": n_batches,
               "data_s_per_epoch": res, "train_step_s": round(step, 3), "compute_s_per_epoch": round(compute, 1),
               "overhead_vs_no_augmentation_pct": {k: round(100 * (v - res["none"]) / (compute + res["none"]), 1)
                                                   for k, v in res.items()}}
    save("augment_speed", payload)


if __name__ == "__main__":
    main()
