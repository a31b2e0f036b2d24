"""Training the learned picker (:class:`~cryomine.models.picker.PickerUNet`) on simulated tomograms with class maps.

A run folder holds ``config.json`` (the resolved :class:`PickerTrainConfig`, the network's
:class:`~cryomine.models.picker.PickerConfig`, the tomograms), ``metrics.csv`` (one row per epoch), ``last.pt``
(weights, optimiser, epoch: what ``--resume`` continues from) and ``best.pt`` (the weights of the epoch with the
best validation mean IoU, the network config and each class's expected region size: what
``cryomine pick --method learned --model RUN`` loads). Checkpoints hold tensors and primitive containers only
(:func:`~cryomine.train.loop.save_checkpoint`, read with ``weights_only=True``).

Each step draws its batch from ``numpy.random.default_rng([seed, epoch, step])`` (:class:`~cryomine.data.tomo_tiles.TileSampler`):
a resumed run sees the batches an uninterrupted one would. Loss: voxel cross-entropy weighted by
``frequency ** -0.5`` per label (normalised to mean 1), so that small complexes count; AdamW with warm-up and a
cosine schedule; bf16 autocast where the hardware has it natively. Before each validation the batch-norm
statistics are re-estimated on seeded training batches (precise BN). Validation: fixed seeded tiles of the last tomogram (held out when there are
two or more), per-class IoU.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cryomine.data.tomo_tiles import TileSampler, expected_voxels, open_training_tomogram
from cryomine.devices import resolve_bf16, resolve_device
from cryomine.errors import InputError, check_int
from cryomine.io.atomic import atomic_output, write_json
from cryomine.models.picker import PickerConfig, PickerUNet
from cryomine.train.batchnorm import recalibrate_on_batches
from cryomine.train.loop import load_checkpoint, load_model_state, save_checkpoint
from cryomine.train.runfolder import resolve_run
from cryomine.train.runtime import Runtime

__all__ = ["PickerTrainConfig", "train_picker", "load_picker", "validation_tiles", "picker_runtime"]

BEST, LAST = "best.pt", "last.pt"


@dataclass(frozen=True)
class PickerTrainConfig:
    """How the picker is trained: ``epochs`` of ``steps_per_epoch`` steps of ``batch`` tiles of ``tile_vox``³;
    ``lr`` (AdamW, ``weight_decay``) after ``warmup_epochs``, cosine to ``lr / 20``; ``val_tiles`` fixed
    validation tiles; ``base_channels`` / ``depth`` of the network; ``seed``; ``device`` (auto, cpu, cuda);
    ``bf16`` autocast (``None``: automatic, on only where the CPU/GPU has native bf16,
    :func:`cryomine.devices.resolve_bf16`; emulated bf16 is many times slower than float32); ``init_from``:
    a picker run folder or ``pretrained:NAME`` whose ``best.pt`` weights a new
    run starts from (same labels and network shape) instead of random ones."""

    epochs: int = 40
    steps_per_epoch: int = 100
    batch: int = 2
    tile_vox: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    val_tiles: int = 16
    base_channels: int = 16
    depth: int = 3
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        for name, high in (("epochs", 100_000), ("steps_per_epoch", 1_000_000), ("batch", 256), ("tile_vox", 256),
                           ("val_tiles", 100_000), ("base_channels", 512), ("depth", 6)):
            check_int(getattr(self, name), "--batch-size" if name == "batch" else f"--{name.replace('_', '-')}", 1, high)
        if self.tile_vox % 2**self.depth or self.tile_vox > 256:
            raise InputError(f"tiles must be a multiple of {2**self.depth} voxels, at most 256, got {self.tile_vox}", "--tile-vox")
        if not (isinstance(self.lr, float | int) and 0 < self.lr < 1) or not 0 <= self.weight_decay < 1:
            raise InputError(f"need 0 < lr < 1 and 0 <= weight decay < 1, got {self.lr!r}, {self.weight_decay!r}", "--lr")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs <= self.epochs:
            raise InputError(f"must be an integer in [0, epochs], got {self.warmup_epochs!r}", "--warmup-epochs")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"must be an integer >= 0, got {self.seed!r}", "--seed")
        if self.bf16 is not None and not isinstance(self.bf16, bool):
            raise InputError(f"must be true, false or automatic, got {self.bf16!r}", "--bf16")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise InputError(f"must be a picker run folder or pretrained:NAME, got {self.init_from!r}", "--init-from")

    def lr_at(self, step: int) -> float:
        warm = self.warmup_epochs * self.steps_per_epoch
        if step < warm:
            return self.lr * (step + 1) / warm
        t = min((step - warm) / max(self.epochs * self.steps_per_epoch - warm, 1), 1.0)
        return self.lr / 20 + (self.lr - self.lr / 20) * 0.5 * (1 + math.cos(math.pi * t))


def picker_runtime(config: PickerTrainConfig) -> Runtime:
    """Where and in what precision a picker run trains and validates: ``config.device``, bf16 by
    :func:`cryomine.devices.resolve_bf16` for its training tiles, channels_last_3d on CPU."""
    device = resolve_device(config.device)
    return Runtime(device, resolve_bf16(config.bf16, device, (config.tile_vox,) * 3, training=True), device.type == "cpu")


def _class_weights(sampler: TileSampler) -> torch.Tensor:
    freq = np.maximum(sampler.class_frequencies(), 1e-6)
    w = freq**-0.5
    return torch.tensor(w / w.mean(), dtype=torch.float32)


#: Training batches of precise BN before each validation. With 4, the shipped picker's validation mIoU on a new
#: tomogram fell from 0.297 (its stored statistics) to 0.285; with 16 it stayed at 0.296 (2026-12-03, seeds 5200-5215).
PRECISE_BN_BATCHES = 16


def _recalibrate(model: nn.Module, sampler: TileSampler, runtime: Runtime, config: PickerTrainConfig,
                 n: int = PRECISE_BN_BATCHES) -> None:
    """Precise BN over ``n`` seeded training batches (:func:`~cryomine.train.batchnorm.recalibrate_on_batches`)."""
    batches = (_to(torch.from_numpy(sampler.batch(config.batch, np.random.default_rng([config.seed, 0xB4, i]))[0]), runtime)
               for i in range(n))
    recalibrate_on_batches(model, batches, runtime)


def _to(x: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    x = x.to(runtime.device)
    return x.contiguous(memory_format=torch.channels_last_3d) if runtime.channels_last else x


def validation_tiles(sampler: TileSampler, config: PickerTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """A run's fixed validation tiles: ``config.val_tiles`` seeded tiles (``(n, 1, t, t, t)`` images, ``(n, t, t, t)``
    labels) of ``sampler``, the held-out tomogram; the same for every epoch and for any later scoring."""
    return sampler.batch(config.val_tiles, np.random.default_rng([config.seed, 0x7A1]))


def _validate(model: nn.Module, val: tuple[np.ndarray, np.ndarray], n_labels: int, runtime: Runtime) -> dict[str, float]:
    model.eval()
    inter, union = np.zeros(n_labels), np.zeros(n_labels)
    with torch.no_grad(), runtime.autocast():
        for i in range(len(val[0])):
            pred = model(_to(torch.from_numpy(val[0][i : i + 1]), runtime)).float().argmax(1).cpu().numpy()[0]
            y = val[1][i]
            for c in range(n_labels):
                inter[c] += ((pred == c) & (y == c)).sum()
                union[c] += ((pred == c) | (y == c)).sum()
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return {"val_miou": float(np.nanmean(iou[1:])), **{f"val_iou_{c}": float(iou[c]) for c in range(n_labels)}}


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _start_run(run: Path, record: dict[str, Any], resume: bool) -> None:
    """Check that the folder may be (re)used and write ``config.json``."""
    if resume:
        if not (run / LAST).is_file():
            raise InputError(f"nothing to resume: no {LAST} in the run folder (run without --resume)", run)
        try:
            stored = json.loads((run / "config.json").read_text())
        except (OSError, ValueError):
            raise InputError("config.json is missing or unreadable: run without --resume, or another folder", run) from None
        if stored != record:
            raise InputError("the run was started with other tomograms or settings: run without --resume, or another folder", run)
    elif run.exists() and any(run.iterdir()):
        raise InputError("run folder is not empty: give another --out, or --resume", run)
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "config.json", record)


def _initial_weights(net_cfg: PickerConfig, init_from: str) -> dict[str, torch.Tensor]:
    """The ``best.pt`` weights of the picker run ``init_from`` (InputError when its labels or network shape differ
    from this run's)."""
    start = load_picker(init_from)
    if start.config != net_cfg:
        raise InputError(f"the starting picker has labels {start.config.class_names}, {start.config.base_channels} base channels, "
                         f"depth {start.config.depth}; this run needs {net_cfg.class_names}, {net_cfg.base_channels}, "
                         f"{net_cfg.depth}", "--init-from")  # fmt: skip
    return start.model.state_dict()


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, sampler: TileSampler, weights: torch.Tensor, runtime: Runtime,
                 config: PickerTrainConfig, epoch: int) -> list[float]:  # fmt: skip
    """One epoch of seeded batches (module docstring); the loss of every step."""
    model.train()
    losses = []
    for step in range(config.steps_per_epoch):
        for g in opt.param_groups:
            g["lr"] = config.lr_at((epoch - 1) * config.steps_per_epoch + step)
        x, y = sampler.batch(config.batch, np.random.default_rng([config.seed, epoch, step]))
        opt.zero_grad(set_to_none=True)
        with runtime.autocast():
            logits = model(_to(torch.from_numpy(x), runtime))
        loss = F.cross_entropy(logits.float(), torch.from_numpy(y).to(runtime.device), weight=weights)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def train_picker(tomograms: list[str | os.PathLike[str]], run_dir: str | os.PathLike[str], config: PickerTrainConfig = PickerTrainConfig(),
                 *, resume: bool = False, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train (or, with ``resume``, continue) a picker on ``tomograms`` (``cryomine simulate tomogram`` outputs)
    into ``run_dir`` (module docstring); returns the summary also written as ``run_dir/summary.json``."""
    run = Path(run_dir)
    opened = [open_training_tomogram(t, seed=config.seed) for t in tomograms]
    held_out = opened[-1:] if len(opened) > 1 else opened
    sampler = TileSampler(opened[:-1] if len(opened) > 1 else opened, config.tile_vox)
    val_sampler = TileSampler(held_out, config.tile_vox)
    net_cfg = PickerConfig(sampler.names[1:], config.base_channels, config.depth)
    record = {"train": asdict(config), "picker": net_cfg.to_dict(), "tomograms": [str(Path(t).resolve()) for t in tomograms]}
    initial = _initial_weights(net_cfg, config.init_from) if config.init_from is not None and not resume else None
    _start_run(run, record, resume)  # after every check: a refused run leaves no folder behind
    runtime = picker_runtime(config)
    device = runtime.device
    torch.manual_seed(config.seed)
    model = runtime.prepare(PickerUNet(net_cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, rows, best = 1, [], -1.0
    if initial is not None:  # a resumed run already holds its (fine-tuned) weights
        model.load_state_dict(initial)
    if resume:
        state = load_checkpoint(run / LAST)
        load_model_state(model, state["model"], run / LAST)
        opt.load_state_dict(state["optimizer"])
        start, rows, best = int(state["epoch"]) + 1, list(state["rows"]), float(state["best"])
    weights = _class_weights(sampler).to(device)
    expected = expected_voxels(opened)
    val = validation_tiles(val_sampler, config)
    for epoch in range(start, config.epochs + 1):
        t0 = time.perf_counter()
        losses = _train_epoch(model, opt, sampler, weights, runtime, config, epoch)
        _recalibrate(model, sampler, runtime, config)
        metrics = _validate(model, val, net_cfg.n_labels, runtime)
        is_best = metrics["val_miou"] > best
        row = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5), **{k: round(v, 4) for k, v in metrics.items()},
               "lr": config.lr_at(epoch * config.steps_per_epoch - 1), "time_s": round(time.perf_counter() - t0, 1),
               "best": int(is_best)}  # fmt: skip
        rows.append(row)
        if is_best:
            best = metrics["val_miou"]
            save_checkpoint(run / BEST, {"model": model.state_dict(), "picker": net_cfg.to_dict(), "expected_voxels": expected, "epoch": epoch,
                                         "voxel_size_a": sampler.voxel_size_a})  # fmt: skip
        save_checkpoint(run / LAST, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "rows": rows, "best": best})
        _write_metrics(run / "metrics.csv", rows)
        if progress:
            print(f"epoch {epoch}/{config.epochs}: loss {row['train_loss']:.4f}, val mIoU {metrics['val_miou']:.3f}"
                  f"{' (best)' if is_best else ''}, {row['time_s']:.0f} s", flush=True)  # fmt: skip
    summary = {"epochs_run": len(rows), "best_val_miou": best, "best_epoch": max(rows, key=lambda r: r["val_miou"])["epoch"] if rows else None}
    write_json(run / "summary.json", summary)
    return summary


@dataclass(frozen=True)
class LoadedPicker:
    """A trained picker: the network (eval mode, CPU), its config, each class's expected region size and the
    voxel size (Å) of its training tomograms (None for a checkpoint that did not record it)."""

    model: PickerUNet
    config: PickerConfig
    expected_voxels: dict[str, float]
    voxel_size_a: float | None = None


def load_picker(run_dir: str | os.PathLike[str]) -> LoadedPicker:
    """Load ``best.pt`` of a picker run folder or ``pretrained:NAME`` (InputError naming the file when missing or
    foreign)."""
    path = resolve_run(run_dir) / BEST
    state = load_checkpoint(path)
    if "picker" not in state or "expected_voxels" not in state:
        raise InputError("not a picker checkpoint (train one with cryomine train-picker)", path)
    config = PickerConfig.from_dict(state["picker"])
    model = PickerUNet(config)
    load_model_state(model, state["model"], path)
    vs = state.get("voxel_size_a")
    return LoadedPicker(model.eval(), config, {str(k): float(v) for k, v in state["expected_voxels"].items()},
                        None if vs is None else float(vs))  # fmt: skip
