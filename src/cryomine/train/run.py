"""A training run is a folder; :func:`train_run` creates or resumes one, :func:`load_run` reads it back.

Folder layout:

* ``config.json``: the resolved model config (``model``), train config (``train``), the dataset (absolute path,
  box size, voxel size, row count, class names, a fingerprint), the class map (excluded classes, new ids and
  names), split sizes and the runtime (device, bf16, channels_last).
* ``split.json``: dataset row numbers of ``train`` (after ``max_train``), ``val``, ``test`` and ``excluded`` (rows of
  excluded classes).
* ``last.pt``: weights, optimiser state, completed epochs, early-stopping state and RNG states (for ``--resume``).
* ``best.pt``: the weights of the epoch with the lowest validation loss (what evaluate / predict use).
* ``metrics.csv``: one row per epoch: train/val loss (total and per head), val accuracy, val mIoU, time, best.

``--resume`` continues from ``last.pt`` exactly: the same weights as an uninterrupted run. ``max_epochs``,
``patience`` and ``num_threads`` may be changed on resume; any other change is refused. (A new ``max_epochs``
stretches the rest of the cosine learning-rate schedule to the new end.)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryomine import __version__
from cryomine.data.loader import ClassMap, SubtomoDataset, open_dataset, stratified_split
from cryomine.devices import bf16_training_safe, default_device, resolve_bf16
from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output, write_json
from cryomine.io.subtomo_h5 import DatasetHeader, read_rows
from cryomine.models import ModelConfig, build_model, check_model_memory, keep_freed_memory
from cryomine.train.config import LEGACY_DEFAULTS, TrainConfig
from cryomine.train.loop import (
    StopState,
    build_optimizer,
    capture_rng,
    fit,
    load_checkpoint,
    load_model_state,
    model_heads,
    restore_rng,
    save_checkpoint,
    seed_everything,
)
from cryomine.train.runtime import Runtime

RUN_FORMAT = "cryomine-run"
CONFIG_FILE, SPLIT_FILE, BEST_FILE, LAST_FILE, METRICS_FILE = "config.json", "split.json", "best.pt", "last.pt", "metrics.csv"
DEFAULT_MODEL = "dsmnet"
RESUMABLE_FIELDS = ("max_epochs", "patience", "num_threads")
METRIC_COLUMNS = ("epoch", "train_loss", "train_loss_cls", "train_loss_seg", "train_loss_rec", "val_loss", "val_loss_cls",
                  "val_loss_seg", "val_loss_rec", "val_accuracy", "val_miou", "lr", "time_s", "best")
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


def initial_weights(spec: str, dataset: Path, header: DatasetHeader, class_map: ClassMap, model_cfg: ModelConfig) -> dict[str, Any]:
    """The ``best.pt`` weights of the run ``spec`` (``--init-from``) for a new run of ``model_cfg`` on ``dataset``.

    Returns ``{"run", "checkpoint", "epoch", "sha1", "split_kept", "state"}`` and, when ``spec`` was trained on
    the same dataset (equal fingerprints), ``"split"``: its split, so that its validation and test boxes stay
    out of training. InputError (naming ``--init-from``) if its model or classes are not this run's."""
    try:
        source = resolve_run(spec)
        cfg = read_run_config(source)
    except InputError as exc:
        raise InputError(f"--init-from: {exc}") from None
    names = list(cfg["classes"]["class_names"])
    if names != list(class_map.names):
        raise InputError(f"--init-from: {spec} was trained on {len(names)} classes ({', '.join(names[:4])}, ...), "
                         f"this run has {class_map.n_classes} ({', '.join(class_map.names[:4])}, ...)")
    theirs = ModelConfig.from_dict(cfg["model"])
    if theirs != model_cfg:
        a, b = theirs.to_dict(), model_cfg.to_dict()
        diff = ", ".join(f"{k}: {a.get(k)} vs {v}" for k, v in b.items() if a.get(k) != v)
        raise InputError(f"--init-from: {spec} is another model ({diff}); give the same --model and widths")
    ckpt = load_checkpoint(source / BEST_FILE)
    out = {"run": str(spec), "checkpoint": BEST_FILE, "epoch": int(ckpt.get("epoch", 0)),
           "sha1": hashlib.sha1((source / BEST_FILE).read_bytes()).hexdigest(), "state": ckpt["model_state"]}
    same = same_dataset(dataset_fingerprint(dataset, header), cfg["dataset"])
    if same:
        out["split"] = read_split(source)
    out["split_kept"] = same
    return out


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_run`."""

    run_dir: Path
    epochs: int
    stopped: str
    best_epoch: int
    best_val_loss: float


def _cap_train(split: dict[str, Any], train: TrainConfig) -> dict[str, Any]:
    """``split`` with its ``train`` rows cut to ``train.max_train`` (a subset seeded by ``train.seed``)."""
    if train.max_train is None or len(split["train"]) <= train.max_train:
        return split
    keep = np.random.default_rng([train.seed, 1]).permutation(len(split["train"]))[: train.max_train]
    return {**split, "train": sorted(int(split["train"][i]) for i in keep)}


def _make_split(path: Path, class_map: ClassMap, train: TrainConfig) -> dict[str, list[int]]:
    class_id = read_rows(path, ("class_id",))["class_id"]
    split = stratified_split(class_id, train.split_fractions, train.seed)
    new_ids = class_map.remap(class_id)
    out = _cap_train({k: [int(i) for i in v if new_ids[i] >= 0] for k, v in split.items()}, train)
    out["excluded"] = [int(i) for i in np.flatnonzero((new_ids < 0) & (class_id >= 0))]
    for k in ("train", "val"):
        if not out[k]:
            raise InputError(f"dataset is too small: the {k} split is empty (need about 10 subtomograms per class)", path)
    return out


def _kept_split(theirs: Mapping[str, Any], path: Path, class_map: ClassMap, train: TrainConfig) -> dict[str, Any]:
    """The split of a run fine-tuned on ``--init-from``'s own dataset: its val, test and excluded rows (and the seed
    and fractions they came from) unchanged, so its held-out boxes stay unseen; training gets every other labelled
    row (not only the rows ``theirs`` trained on, which ``max_train`` may have cut), cut to this ``max_train``."""
    held = {int(i) for k in ("val", "test", "excluded") for i in theirs[k]}
    labelled = np.flatnonzero(class_map.remap(read_rows(path, ("class_id",))["class_id"]) >= 0)
    out = {**theirs, "train": [int(i) for i in labelled if int(i) not in held]}
    return _cap_train(out, train)


def _model_config(model: str | ModelConfig | None, options: Mapping[str, Any], class_map: ClassMap, size: int) -> ModelConfig:
    if isinstance(model, ModelConfig):
        cfg = model.replace(**options) if options else model
    else:
        name = DEFAULT_MODEL if model is None else model
        probe = ModelConfig(name, n_classes=max(class_map.n_classes, 2))  # validates the name first
        cfg = ModelConfig(name, n_classes=class_map.n_classes if probe.has_cls else None, input_size=size, **options)
    if cfg.has_cls and cfg.n_classes != class_map.n_classes:
        raise InputError(f"class count mismatch: model has {cfg.n_classes} classes, the dataset "
                         f"(after exclusions) has {class_map.n_classes}")
    if cfg.input_zyx != (size,) * 3:
        raise InputError(f"box size {size} does not match the model's input size {cfg.input_size}")
    return cfg


def _resolve_train(stored: Mapping[str, Any] | None, train: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """The train config: defaults < ``stored`` (a resumed run's) < ``train``. A partial ``augment`` mapping in
    ``train`` overrides single fields of the augmentation. Fields a stored config lacks (runs made before they
    existed) take :data:`LEGACY_DEFAULTS`, what those runs trained with."""
    given = train.to_dict() if isinstance(train, TrainConfig) else dict(train or {})
    if stored is not None:
        stored = {**LEGACY_DEFAULTS, **stored}
    if isinstance(given.get("augment"), Mapping):
        base_aug = (stored or {}).get("augment") or TrainConfig().augment.to_dict()
        given["augment"] = {**base_aug, **given["augment"]}
    if stored is None:
        return TrainConfig.from_dict(given)
    base = TrainConfig.from_dict(stored)
    new = TrainConfig.from_dict({**base.to_dict(), **given}).to_dict()
    changed = [k for k in new if new[k] != base.to_dict()[k] and k not in RESUMABLE_FIELDS]
    if changed:
        raise InputError(f"resume: the run was started with other {', '.join(changed)}; drop those options or use a new --out")
    return TrainConfig.from_dict(new)


def _metrics_rows(run_dir: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    p = run_dir / METRICS_FILE
    if not p.is_file() or up_to_epoch == 0:
        return []
    try:
        df = pd.read_csv(p)
        epochs = pd.to_numeric(df["epoch"], errors="raise").astype(int).tolist()
        values = df[[c for c in METRIC_COLUMNS if c in df and c != "best"]].apply(pd.to_numeric, errors="raise")
    except (ValueError, KeyError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"unreadable training record ({' '.join(str(exc).split())[:120]}); the checkpoints are intact: "
                         "restore the file or start a new --out", p) from None
    if epochs[:up_to_epoch] != list(range(1, up_to_epoch + 1)) or values.iloc[:up_to_epoch].isna().all(axis=1).any():
        raise InputError(f"training record does not hold epochs 1..{up_to_epoch}, which last.pt has finished (a "
                         "truncated or edited file): restore it or start a new --out", p)
    return df[df["epoch"] <= up_to_epoch].to_dict("records")


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_output(run_dir / METRICS_FILE) as tmp:
        pd.DataFrame(rows, columns=list(METRIC_COLUMNS)).to_csv(tmp, index=False, float_format="%.6g")


def _epoch_line(epoch: int, max_epochs: int, s: Mapping[str, float], is_best: bool) -> str:
    parts = [f"epoch {epoch}/{max_epochs}: train loss {s['train_loss']:.4g}", f"val loss {s['val_loss']:.4g}"]
    if "val_accuracy" in s:
        parts.append(f"val acc {s['val_accuracy']:.3f}")
    if "val_miou" in s:
        parts.append(f"val mIoU {s['val_miou']:.3f}")
    parts.append(f"{s['time_s']:.1f} s" + (" (best)" if is_best else ""))
    return ", ".join(parts)


def train_run(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | ModelConfig | None = None,
    model_options: Mapping[str, Any] | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` (a name, default ``dsmnet``, or a ModelConfig) on ``dataset`` into the run folder ``out``.

    ``train`` is a TrainConfig or a mapping of fields overriding its defaults (on resume: overriding the stored
    config; only :data:`RESUMABLE_FIELDS` may change). ``model_options`` (e.g. ``base_channels``) are passed to
    :class:`ModelConfig`. ``log`` receives one line per epoch.
    """
    log = log or (lambda _line: None)
    run_dir = Path(out)
    dataset = Path(dataset)
    header = open_dataset(dataset)
    options = dict(model_options or {})
    has_run = (run_dir / CONFIG_FILE).exists()
    unstarted = has_run and not (run_dir / LAST_FILE).exists() and not (run_dir / BEST_FILE).exists()
    if resume:
        if unstarted:
            raise InputError("nothing to resume: the run stopped before finishing its first epoch (no last.pt); "
                             "start it again without --resume", run_dir)  # fmt: skip
        if not has_run or not (run_dir / LAST_FILE).exists():
            raise InputError("nothing to resume: no config.json / last.pt in the run folder", run_dir)
        stored = read_run_config(run_dir)
        if not same_dataset(dataset_fingerprint(dataset, header), stored["dataset"]):
            raise InputError("dataset differs from the one this run was started on", dataset)
        train_cfg = _resolve_train(stored["train"], train)
        model_cfg = ModelConfig.from_dict(stored["model"])
        if model is not None or options:
            wanted = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(
                {**stored["model"], **({"name": model} if model else {}), **options})
            if wanted != model_cfg:
                raise InputError("resume: the run was started with another model configuration; use a new --out")
        class_map = ClassMap(tuple(stored["classes"]["dataset_class_names"]), tuple(stored["classes"]["excluded"]))
        split = read_split(run_dir)
        init = stored.get("init_from")
    else:
        if has_run and not unstarted:  # a run that never finished an epoch holds nothing to keep: it starts again
            raise InputError("run folder already holds a run; use --resume to continue it or another --out", run_dir)
        train_cfg = _resolve_train(None, train)
        class_map = ClassMap.build(header.class_names, train_cfg.exclude_classes)
        model_cfg = _model_config(model, options, class_map, header.size)
        init = initial_weights(train_cfg.init_from, dataset, header, class_map, model_cfg) if train_cfg.init_from else None
        split = (_kept_split(init.pop("split"), dataset, class_map, train_cfg) if init and "split" in init
                 else {"seed": train_cfg.seed, "fractions": list(train_cfg.split_fractions),
                       **_make_split(dataset, class_map, train_cfg)})
    heads = model_heads(model_cfg)
    weights = train_cfg.weights_for(heads)
    check_model_memory(model_cfg, training=True)  # before the folder is made or the weights allocated

    if train_cfg.num_threads is not None:
        torch.set_num_threads(train_cfg.num_threads)
    device = default_device()
    if device.type == "cpu":
        keep_freed_memory()  # large activations otherwise page-fault afresh every step (see models.flops)
    runtime = Runtime(device, resolve_bf16(train_cfg.bf16, device, model_cfg.input_zyx, training=True),
                      train_cfg.channels_last)
    if runtime.bf16 and not bf16_training_safe(device, model_cfg.input_zyx):
        log(f"warning: bf16 training on CPU with {model_cfg.input_zyx} inputs gives wrong gradients with some "
            "oneDNN versions; consider --no-bf16")
    limit = int(train_cfg.cache_limit_gb * 1024**3)
    train_data = SubtomoDataset(dataset, split["train"], class_map, with_mask="seg" in heads,
                                with_density="rec" in heads, cache_limit_bytes=limit, augment=train_cfg.augment)
    val_data = SubtomoDataset(dataset, split["val"], class_map, with_mask="seg" in heads,
                              with_density="rec" in heads, cache_limit_bytes=limit)

    seed_everything(train_cfg.seed)
    net = runtime.prepare(build_model(model_cfg))
    optimizer = build_optimizer(net, train_cfg)
    stop = StopState()
    start_epoch = 0
    if init and not resume:
        load_model_state(net, init.pop("state"), init["run"])
    if resume:
        ckpt = load_checkpoint(run_dir / LAST_FILE)
        load_model_state(net, ckpt["model_state"], run_dir / LAST_FILE)
        optimizer.load_state_dict(ckpt["optimizer_state"])
        for group in optimizer.param_groups:  # betas are the (unchanged) config's; lr is set per step
            group["betas"] = train_cfg.betas
        stop = StopState(float(ckpt["stop"]["best_score"]), int(ckpt["stop"]["best_epoch"]))
        start_epoch = int(ckpt["epoch"])
        restore_rng(ckpt["rng"])

    config = {
        "format": RUN_FORMAT, "format_version": 1, "cryomine_version": __version__,
        "model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
        "dataset": dataset_fingerprint(dataset, header), "classes": class_map.to_dict(),
        "split": {k: len(split[k]) for k in ("train", "val", "test", "excluded")}, "init_from": init,
        "runtime": {"device": str(device), "bf16": runtime.bf16, "channels_last": runtime.channels_last,
                    "num_threads": torch.get_num_threads()},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(run_dir / SPLIT_FILE, {**split, "excluded_classes": list(class_map.excluded)})
    write_json(run_dir / CONFIG_FILE, config)
    rows = _metrics_rows(run_dir, start_epoch)
    meta = {"model_config": model_cfg.to_dict(), "class_names": class_map.names}

    def on_epoch_end(epoch: int, stats: dict[str, float], is_best: bool, st: StopState) -> None:
        rows.append({"epoch": epoch, **stats, "best": int(is_best)})
        _write_metrics(run_dir, rows)
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        if is_best:
            save_checkpoint(run_dir / BEST_FILE, {"kind": "best", "epoch": epoch, "val_loss": stats["val_loss"],
                                                  "model_state": state, **meta})
        save_checkpoint(run_dir / LAST_FILE, {"kind": "last", "epoch": epoch, "model_state": state,
                                              "optimizer_state": optimizer.state_dict(),
                                              "stop": {"best_score": st.best_score, "best_epoch": st.best_epoch},
                                              "rng": capture_rng(), **meta})
        log(_epoch_line(epoch, train_cfg.max_epochs, stats, is_best))

    stopped = fit(net, optimizer, train_data, val_data, config=train_cfg, start_epoch=start_epoch, heads=heads,
                  weights=weights, runtime=runtime, stop=stop,
                  n_classes=model_cfg.n_classes if model_cfg.has_cls else None, on_epoch_end=on_epoch_end)
    train_data.close()
    val_data.close()
    epochs = rows[-1]["epoch"] if rows else start_epoch
    return TrainResult(run_dir, int(epochs), stopped, stop.best_epoch, stop.best_score)
