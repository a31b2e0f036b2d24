"""DSM-Net speed on this machine (issue 4, item 6).

Measures, for DSM-Net at 40³ with C classes (default 22):
- forward FLOPs per subtomogram (torch FlopCounterMode);
- inference throughput at batch 64: fp32 (default layout), fp32 + channels_last_3d + folded BN, and bf16
  autocast + channels_last_3d + folded BN, with 1 and 2 torch threads; achieved FLOP/s;
- with ``--run RUN --dataset DATASET``: object accuracy on the run's test split in fp32 and in bf16 (target:
  within 0.5 points);
- training time per epoch: from the run's ``metrics.csv`` when given, and a few timed training steps
  (bf16 and fp32) extrapolated to an epoch of ``--train-size`` subtomograms.

Usage: ``.venv/bin/python benchmarks/bench_dsmnet_speed.py [--run pretrained:dsmnet-a --dataset dsmnet_a.h5]``
Results: ``benchmarks/results/dsmnet_speed.json`` (``--name`` for another machine kind).
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np
import torch

from _common import machine, save
from cryomine.data.normalise import normalise
from cryomine.io.subtomo_h5 import read_rows
from cryomine.models import ModelConfig, benchmark_throughput, build_model, count_forward_flops, infer, keep_freed_memory, prepare_for_inference
from cryomine.train.runfolder import load_run, read_split


def throughput(n_classes: int, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig("dsmnet", n_classes=n_classes)).eval()
    out = {
        "fp32": benchmark_throughput(model, 40, 64, bf16=False, channels_last=False, fuse_bn=False),
        "fp32_channels_last_fused_bn": benchmark_throughput(model, 40, 64, bf16=False, channels_last=True, fuse_bn=True),
        "bf16_channels_last_fused_bn": benchmark_throughput(model, 40, 64, bf16=True, channels_last=True, fuse_bn=True),
    }
    return {k: round(v, 1) for k, v in out.items()}


def accuracy_fp32_vs_bf16(run: str, dataset: str) -> dict[str, float]:
    loaded = load_run(run, device=torch.device("cpu"))
    rows = np.asarray(read_split(loaded.run_dir)["test"], dtype=np.int64)
    data = read_rows(dataset, ("subtomograms", "class_id"), rows)
    names = list(loaded.class_names)
    ds_names = loaded.config["dataset"]["class_names"]
    truth = np.array([names.index(ds_names[c]) if ds_names[c] in names else -1 for c in data["class_id"]])
    model = prepare_for_inference(loaded.model, channels_last=True, fuse_bn=True)
    result = {}
    for label, bf16 in (("fp32", False), ("bf16", True)):
        preds = []
        for i in range(0, len(rows), 64):
            x = torch.from_numpy(normalise(data["subtomograms"][i : i + 64]))[:, None]
            preds.append(infer(model, x, bf16=bf16).logits.argmax(1).numpy())
        pred = np.concatenate(preds)
        result[f"object_accuracy_{label}"] = round(float((pred == truth)[truth >= 0].mean()) * 100, 2)
    result["difference_points"] = round(abs(result["object_accuracy_fp32"] - result["object_accuracy_bf16"]), 2)
    result["n_test"] = int((truth >= 0).sum())
    return result


def train_step_seconds(n_classes: int, bf16: bool, steps: int = 3) -> float:
    torch.manual_seed(0)
    model = build_model(ModelConfig("dsmnet", n_classes=n_classes)).train().to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    x = torch.randn(64, 1, 40, 40, 40).contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, n_classes, (64,))
    m = torch.randint(0, 2, (64, 40, 40, 40))
    d = torch.randn(64, 1, 40, 40, 40)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss = (torch.nn.functional.cross_entropy(out.logits.float(), y)
                    + 10 * torch.nn.functional.cross_entropy(out.seg_logits.float(), m)
                    + torch.nn.functional.mse_loss(out.recon.float(), d))  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", type=int, default=22)
    parser.add_argument("--run", default=None)
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--train-size", type=int, default=2564, help="training subtomograms per epoch (dsmnet-a: 80%% of 3205)")
    parser.add_argument("--name", default="dsmnet_speed", help="results file benchmarks/results/NAME.json (one per machine kind)")
    args = parser.parse_args()
    keep_freed_memory()
    model = build_model(ModelConfig("dsmnet", n_classes=args.classes)).eval()
    flops = count_forward_flops(model, 40)
    results: dict[str, object] = {"machine": machine(), "forward_gflop_per_subtomogram": round(flops / 1e9, 3)}
    results["throughput_subtomo_per_s"] = {f"{t}_threads": throughput(args.classes, t) for t in (2, 1)}
    best = max(v for t in results["throughput_subtomo_per_s"].values() for v in t.values())  # type: ignore[union-attr]
    results["best_throughput"] = best
    results["target_60_per_s_met"] = best >= 60
    results["achieved_gflop_per_s_at_best"] = round(best * flops / 1e9, 1)
    torch.set_num_threads(2)
    step = {"bf16": train_step_seconds(args.classes, True), "fp32": train_step_seconds(args.classes, False)}
    n_batches = -(-args.train_size // 64)
    results["train_step_s_batch64"] = {k: round(v, 2) for k, v in step.items()}
    results["train_epoch_s_extrapolated"] = {k: round(v * n_batches, 1) for k, v in step.items()}
    if args.run and args.dataset:
        results["accuracy"] = accuracy_fp32_vs_bf16(args.run, args.dataset)
        try:
            with open(load_run(args.run).run_dir / "metrics.csv") as f:
                times = [float(r["time_s"]) for r in csv.DictReader(f)]
            results["run_epoch_time_s"] = {"mean": round(float(np.mean(times)), 1), "epochs": len(times)}
        except (OSError, KeyError, ValueError):
            pass
    save(args.name, results)


if __name__ == "__main__":
    main()
