"""A training run is a folder (layout: :mod:`cryomine.train.runfolder`); :func:`train_run` creates or resumes one.

``--resume`` continues from ``last.pt`` exactly: the same weights as an uninterrupted run. ``max_epochs``,
``patience`` and ``num_threads`` may be changed on resume; any other change is refused. (A new ``max_epochs``
stretches the rest of the cosine learning-rate schedule to the new end.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from cryomine.train.runfolder import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    RUN_FORMAT,
    SPLIT_FILE,
    dataset_fingerprint,
    read_run_config,
    read_split,
    resolve_run,
    same_dataset,
)
from cryomine.train.runtime import Runtime

DEFAULT_MODEL = "dsmnet"
RESUMABLE_FIELDS = ("max_epochs", "patience", "num_threads")
METRIC_COLUMNS = ("epoch", "train_loss", "train_loss_cls", "train_loss_seg", "train_loss_rec", "val_loss", "val_loss_cls",
                  "val_loss_seg", "val_loss_rec", "val_accuracy", "val_miou", "lr", "time_s", "best")


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


@dataclass(frozen=True)
class _Plan:
    """What a run trains: its resolved configs, class map, split and (new runs) ``--init-from`` weights."""

    train: TrainConfig
    model: ModelConfig
    class_map: ClassMap
    split: dict[str, Any]
    init: dict[str, Any] | None


def _plan_resume(run_dir: Path, dataset: Path, header: DatasetHeader, model: str | ModelConfig | None,
                 options: Mapping[str, Any], train: TrainConfig | Mapping[str, Any] | None) -> _Plan:
    """The stored plan of the run in ``run_dir``; InputError if there is nothing to resume or anything but
    :data:`RESUMABLE_FIELDS` would change."""
    if (run_dir / CONFIG_FILE).exists() and not (run_dir / LAST_FILE).exists() and not (run_dir / BEST_FILE).exists():
        raise InputError("nothing to resume: the run stopped before finishing its first epoch (no last.pt); "
                         "start it again without --resume", run_dir)  # fmt: skip
    if not (run_dir / CONFIG_FILE).exists() or not (run_dir / LAST_FILE).exists():
        raise InputError("nothing to resume: no config.json / last.pt in the run folder", run_dir)
    stored = read_run_config(run_dir)
    if not same_dataset(dataset_fingerprint(dataset, header), stored["dataset"]):
        raise InputError("dataset differs from the one this run was started on", dataset)
    model_cfg = ModelConfig.from_dict(stored["model"])
    if model is not None or options:
        wanted = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(
            {**stored["model"], **({"name": model} if model else {}), **options})
        if wanted != model_cfg:
            raise InputError("resume: the run was started with another model configuration; use a new --out")
    class_map = ClassMap(tuple(stored["classes"]["dataset_class_names"]), tuple(stored["classes"]["excluded"]))
    return _Plan(_resolve_train(stored["train"], train), model_cfg, class_map, read_split(run_dir), stored.get("init_from"))


def _plan_new(run_dir: Path, dataset: Path, header: DatasetHeader, model: str | ModelConfig | None,
              options: Mapping[str, Any], train: TrainConfig | Mapping[str, Any] | None) -> _Plan:
    """The plan of a new run; InputError if ``run_dir`` already holds one that finished an epoch."""
    if (run_dir / CONFIG_FILE).exists() and ((run_dir / LAST_FILE).exists() or (run_dir / BEST_FILE).exists()):
        raise InputError("run folder already holds a run; use --resume to continue it or another --out", run_dir)
    train_cfg = _resolve_train(None, train)
    class_map = ClassMap.build(header.class_names, train_cfg.exclude_classes)
    model_cfg = _model_config(model, options, class_map, header.size)
    init = initial_weights(train_cfg.init_from, dataset, header, class_map, model_cfg) if train_cfg.init_from else None
    split = (_kept_split(init.pop("split"), dataset, class_map, train_cfg) if init and "split" in init
             else {"seed": train_cfg.seed, "fractions": list(train_cfg.split_fractions),
                   **_make_split(dataset, class_map, train_cfg)})
    return _Plan(train_cfg, model_cfg, class_map, split, init)


def _runtime(plan: _Plan, log: Callable[[str], None]) -> Runtime:
    """Threads, device and precision for training ``plan`` (a warning line if bf16 may be unsafe here)."""
    if plan.train.num_threads is not None:
        torch.set_num_threads(plan.train.num_threads)
    device = default_device()
    if device.type == "cpu":
        keep_freed_memory()  # large activations otherwise page-fault afresh every step (see models.flops)
    input_zyx = plan.model.input_zyx
    runtime = Runtime(device, resolve_bf16(plan.train.bf16, device, input_zyx, training=True), plan.train.channels_last)
    if runtime.bf16 and not bf16_training_safe(device, input_zyx):
        log(f"warning: bf16 training on CPU with {input_zyx} inputs gives wrong gradients with some "
            "oneDNN versions; consider --no-bf16")
    return runtime


def _restore(run_dir: Path, net: nn.Module, optimizer: torch.optim.Optimizer, train_cfg: TrainConfig) -> tuple[StopState, int]:
    """Load ``last.pt`` into ``net`` and ``optimizer`` and restore the RNG states; (early-stopping state, epochs done)."""
    ckpt = load_checkpoint(run_dir / LAST_FILE)
    load_model_state(net, ckpt["model_state"], run_dir / LAST_FILE)
    optimizer.load_state_dict(ckpt["optimizer_state"])
    for group in optimizer.param_groups:  # betas are the (unchanged) config's; lr is set per step
        group["betas"] = train_cfg.betas
    restore_rng(ckpt["rng"])
    return StopState(float(ckpt["stop"]["best_score"]), int(ckpt["stop"]["best_epoch"])), int(ckpt["epoch"])


def _run_config(plan: _Plan, dataset: Path, header: DatasetHeader, runtime: Runtime) -> dict[str, Any]:
    """The ``config.json`` of a run: everything resolved, to read back or resume it."""
    return {
        "format": RUN_FORMAT, "format_version": 1, "cryomine_version": __version__,
        "model": plan.model.to_dict(), "train": plan.train.to_dict(),
        "dataset": dataset_fingerprint(dataset, header), "classes": plan.class_map.to_dict(),
        "split": {k: len(plan.split[k]) for k in ("train", "val", "test", "excluded")}, "init_from": plan.init,
        "runtime": {"device": str(runtime.device), "bf16": runtime.bf16, "channels_last": runtime.channels_last,
                    "num_threads": torch.get_num_threads()},
    }


def _epoch_writer(run_dir: Path, plan: _Plan, net: nn.Module, optimizer: torch.optim.Optimizer,
                  rows: list[dict[str, Any]], log: Callable[[str], None]) -> Callable[..., None]:
    """The end-of-epoch callback of :func:`fit`: appends to ``metrics.csv``, writes ``best.pt`` / ``last.pt``, logs."""
    meta = {"model_config": plan.model.to_dict(), "class_names": plan.class_map.names}

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
        log(_epoch_line(epoch, plan.train.max_epochs, stats, is_best))

    return on_epoch_end


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
    run_dir, dataset = Path(out), Path(dataset)
    header = open_dataset(dataset)
    plan = (_plan_resume if resume else _plan_new)(run_dir, dataset, header, model, dict(model_options or {}), train)
    heads = model_heads(plan.model)
    weights = plan.train.weights_for(heads)  # refuses all-zero weights of this model's heads, before any output
    check_model_memory(plan.model, training=True)  # before the folder is made or the weights allocated
    runtime = _runtime(plan, log)
    limit = int(plan.train.cache_limit_gb * 1024**3)
    data = {part: SubtomoDataset(dataset, plan.split[part], plan.class_map, with_mask="seg" in heads,
                                 with_density="rec" in heads, cache_limit_bytes=limit,
                                 augment=plan.train.augment if part == "train" else None)
            for part in ("train", "val")}

    seed_everything(plan.train.seed)
    net = runtime.prepare(build_model(plan.model))
    optimizer = build_optimizer(net, plan.train)
    stop, start_epoch = StopState(), 0
    if plan.init and not resume:
        load_model_state(net, plan.init.pop("state"), plan.init["run"])
    if resume:
        stop, start_epoch = _restore(run_dir, net, optimizer, plan.train)
    config = _run_config(plan, dataset, header, runtime)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(run_dir / SPLIT_FILE, {**plan.split, "excluded_classes": list(plan.class_map.excluded)})
    write_json(run_dir / CONFIG_FILE, config)
    rows = _metrics_rows(run_dir, start_epoch)
    stopped = fit(net, optimizer, data["train"], data["val"], config=plan.train, start_epoch=start_epoch, heads=heads,
                  weights=weights, runtime=runtime, stop=stop,
                  n_classes=plan.model.n_classes if plan.model.has_cls else None,
                  on_epoch_end=_epoch_writer(run_dir, plan, net, optimizer, rows, log))
    for d in data.values():
        d.close()
    epochs = rows[-1]["epoch"] if rows else start_epoch
    return TrainResult(run_dir, int(epochs), stopped, stop.best_epoch, stop.best_score)
