"""A run folder, read back: resolving ``pretrained:NAME`` or a path, its ``config.json`` and ``split.json``, the
dataset fingerprint it was trained on, and the trained model (:func:`load_run`). :mod:`cryomine.train.run` writes
these folders; everything that only reads one (evaluate, predict, discover, pick, export) goes through here.

Folder layout:

* ``config.json``: the resolved model config (``model``), train config (``train``), the dataset (absolute path,
  box size, voxel size, row count, class names, a fingerprint), the class map (excluded classes, new ids and
  names), split sizes and the runtime (device, bf16, channels_last).
* ``split.json``: dataset row numbers of ``train`` (after ``max_train``), ``val``, ``test`` and ``excluded`` (rows of
  excluded classes).
* ``last.pt``: weights, optimiser state, completed epochs, early-stopping state and RNG states (for ``--resume``).
* ``best.pt``: the weights of the epoch with the lowest validation loss (what evaluate / predict use).
* ``metrics.csv``: one row per epoch: train/val loss (total and per head), val accuracy, val mIoU, time, best.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cryomine.devices import default_device
from cryomine.errors import InputError
from cryomine.io.subtomo_h5 import DatasetHeader
from cryomine.models import ModelConfig, build_model
from cryomine.train.loop import load_checkpoint, load_model_state

RUN_FORMAT = "cryomine-run"
CONFIG_FILE, SPLIT_FILE, BEST_FILE, LAST_FILE, METRICS_FILE = "config.json", "split.json", "best.pt", "last.pt", "metrics.csv"
PRETRAINED_PREFIX = "pretrained:"


def shipped_pretrained() -> list[str]:
    """Names ``NAME`` of the models shipped in ``cryomine/pretrained/NAME/`` (usable as ``pretrained:NAME``), sorted."""
    try:
        root = resources.files("cryomine") / "pretrained"
        return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())
    except (ModuleNotFoundError, OSError):
        return []


def resolve_run(spec: str | os.PathLike[str]) -> Path:
    """A run folder from a path or ``pretrained:NAME`` (shipped in ``cryomine/pretrained/NAME/``)."""
    text = str(spec)
    if text.startswith(PRETRAINED_PREFIX):
        name = text[len(PRETRAINED_PREFIX):].strip()
        shipped = shipped_pretrained()
        if name not in shipped:
            raise InputError(f"unknown pretrained model {name!r} (shipped: {', '.join(shipped) or 'none'})")
        return Path(str(resources.files("cryomine") / "pretrained" / name))
    p = Path(spec)
    if not p.is_dir():
        raise InputError("run folder not found" if not p.exists() else "not a run folder", p)
    if not (p / CONFIG_FILE).is_file():
        raise InputError(f"not a cryomine run folder (no {CONFIG_FILE})", p)
    return p


def dataset_fingerprint(path: str | os.PathLike[str], header: DatasetHeader) -> dict[str, Any]:
    """What identifies a dataset file's content for this run (not its location)."""
    digest = hashlib.sha1(json.dumps(header.config, sort_keys=True).encode()).hexdigest()
    return {"path": str(Path(path).resolve()), "size": header.size, "voxel_size_a": header.voxel_size_a,
            "n_written": header.n_written, "class_names": list(header.class_names), "config_sha1": digest}


def same_dataset(fingerprint: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether two :func:`dataset_fingerprint` results describe the same content (wherever the files lie)."""
    return {k: v for k, v in fingerprint.items() if k != "path"} == {k: v for k, v in stored.items() if k != "path"}


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """Read and sanity-check ``config.json`` of a run folder."""
    p = run_dir / CONFIG_FILE
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable run config ({' '.join(str(exc).split())[:120]})", p) from None
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT or not {"model", "train", "dataset", "classes"} <= set(cfg):
        raise InputError("not a cryomine run config", p)
    return cfg


def read_split(run_dir: Path) -> dict[str, Any]:
    """Read ``split.json`` of a run folder (row lists ``train``, ``val``, ``test``, ``excluded``)."""
    p = run_dir / SPLIT_FILE
    try:
        split = json.loads(p.read_text())
        if not all(isinstance(split[k], list) for k in ("train", "val", "test", "excluded")):
            raise ValueError("missing row lists")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable split file ({' '.join(str(exc).split())[:120]})", p) from None
    return split


def check_dataset_compatible(run_config: Mapping[str, Any], header: DatasetHeader, path: str | os.PathLike[str]) -> None:
    """InputError unless the dataset's box size and classes are those the run was trained on."""
    model_cfg = ModelConfig.from_dict(run_config["model"])
    if model_cfg.input_zyx != (header.size,) * 3:
        raise InputError(f"box size {header.size} does not match the model's input size "
                         f"{'x'.join(map(str, model_cfg.input_zyx))}", path)
    trained = list(run_config["classes"]["dataset_class_names"])
    if list(header.class_names) != trained:
        what = "class count mismatch" if len(header.class_names) != len(trained) else "class names differ"
        raise InputError(f"{what}: dataset has {len(header.class_names)} classes, the run was trained on "
                         f"{len(trained)} ({', '.join(trained[:6])}{', ...' if len(trained) > 6 else ''})", path)


@dataclass(frozen=True)
class LoadedRun:
    """A trained run read back: its folder, config.json, model config, class names and the model (eval mode)."""

    run_dir: Path
    config: dict[str, Any]
    model_config: ModelConfig
    class_names: list[str]
    model: nn.Module


def load_run(spec: str | os.PathLike[str], checkpoint: str = BEST_FILE, device: torch.device | None = None) -> LoadedRun:
    """Resolve ``spec`` (:func:`resolve_run`), rebuild the model and load ``checkpoint`` weights."""
    run_dir = resolve_run(spec)
    cfg = read_run_config(run_dir)
    model_cfg = ModelConfig.from_dict(cfg["model"])
    ckpt = load_checkpoint(run_dir / checkpoint)
    model = build_model(model_cfg)
    load_model_state(model, ckpt["model_state"], run_dir / checkpoint)
    model.to(device or default_device()).eval()
    return LoadedRun(run_dir, cfg, model_cfg, list(cfg["classes"]["class_names"]), model)
