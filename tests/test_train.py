"""Data loading, split, class exclusion, training config, exact resume and early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cryomine.data import ClassMap, SubtomoDataset, normalise, stratified_split
from cryomine.errors import InputError
from cryomine.models import ModelConfig, infer
from cryomine.train import TrainConfig, load_checkpoint, load_run, parse_loss_weights, train_run
from cryomine.train.loop import capture_rng, epoch_order, restore_rng
from faults import interrupted_on_call

TINY = {"base_channels": 4, "fc_units": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ split and classes


def test_stratified_split_is_disjoint_complete_stratified_and_stable() -> None:
    sizes = [50, 20, 10, 3, 1]
    class_id = np.concatenate([np.full(m, c) for c, m in enumerate(sizes)] + [np.full(4, -1)])
    class_id = np.random.default_rng(5).permutation(class_id)
    split = stratified_split(class_id, (0.8, 0.1, 0.1), seed=3)
    parts = [split[k] for k in ("train", "val", "test")]
    allrows = np.concatenate(parts)
    assert len(np.unique(allrows)) == allrows.size  # disjoint
    np.testing.assert_array_equal(np.sort(allrows), np.flatnonzero(class_id >= 0))  # complete, no unknowns
    for c, m in enumerate(sizes):
        counts = [int(np.sum(class_id[p] == c)) for p in parts]
        assert counts[0] >= 1
        if m >= 10:  # per-class 80/10/10
            assert counts[1] == round(0.1 * m) and counts[2] == round(0.1 * m)
    again = stratified_split(class_id, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = stratified_split(class_id, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(split["val"], other["val"])
    with pytest.raises(InputError, match="fractions"):
        stratified_split(class_id, (0.5, 0.1, 0.1))


def test_class_map_excludes_and_remaps() -> None:
    cmap = ClassMap.build(["a", "b", "c", "d"], ["1", "d"])
    assert cmap.excluded == (1, 3) and cmap.names == ["a", "c"] and cmap.n_classes == 2
    np.testing.assert_array_equal(cmap.remap(np.array([0, 1, 2, 3, -1, 2])), [0, -1, 1, -1, -1, 1])
    with pytest.raises(InputError, match="unknown class 'zebra'"):
        ClassMap.build(["a", "b"], ["zebra"])
    with pytest.raises(InputError, match="no class id 7"):
        ClassMap.build(["a", "b"], ["7"])
    with pytest.raises(InputError, match="every class"):
        ClassMap.build(["a", "b"], ["a", "b"])


def test_dataset_normalises_and_chunked_reads_match_cache(blob_dataset: Path) -> None:
    rows = np.array([5, 0, 17, 3])
    cmap = ClassMap.build(["sphere", "rod", "two_spheres"], ["rod"])
    cached = SubtomoDataset(blob_dataset, rows, cmap, with_mask=True, with_density=True)
    chunked = SubtomoDataset(blob_dataset, rows, cmap, with_mask=True, with_density=True, cache_limit_bytes=0)
    assert cached.cached and not chunked.cached
    a, b = cached.batch([2, 0, 3]), chunked.batch([2, 0, 3])
    for k in a:
        assert torch.equal(a[k], b[k]), k
    chunked.close()
    x = a["x"].double()
    assert a["x"].shape == (3, 1, 16, 16, 16) and a["mask"].shape == (3, 16, 16, 16)
    np.testing.assert_allclose(x.mean(dim=(1, 2, 3, 4)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(1, 2, 3, 4), unbiased=False), 1, atol=1e-4)
    # rows 5, 0, 17, 3 have dataset classes 2, 0, 2, 0 (i % 3) -> new ids (rod excluded) 1, 0, 1, 0
    np.testing.assert_array_equal(cached.labels, [1, 0, 1, 0])
    assert np.allclose(normalise(np.full((1, 2, 2, 2), 3.0)), 0.0)  # constant box: centred, no division by 0


# ------------------------------------------------------------------ config


def test_train_config_validation() -> None:
    cfg = TrainConfig()
    assert (cfg.w_cls, cfg.w_seg, cfg.w_rec) == (1.0, 10.0, 1.0) and cfg.betas == (0.9, 0.99)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert parse_loss_weights("1:10:1") == (1.0, 10.0, 1.0)
    for bad in ({"w_cls": 0, "w_seg": 0, "w_rec": 0}, {"w_seg": -1}, {"batch_size": 0}, {"lr": float("nan")},
                {"split_fractions": (0.9, 0.0, 0.1)}, {"patience": 0}, {"bf16": "yes"}):
        with pytest.raises(InputError):
            TrainConfig(**bad)
    with pytest.raises(InputError, match="cls:seg:rec"):
        parse_loss_weights("1:10")
    with pytest.raises(InputError, match="all weights of this model's heads"):
        TrainConfig(w_seg=0).weights_for(("seg",))


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(lr=1e-3, warmup_epochs=2, max_epochs=10, min_lr_fraction=0.01)
    spe = 5
    lrs = np.array([cfg.lr_at(t, spe) for t in range(10 * spe)])
    np.testing.assert_allclose(lrs[:10], 1e-3 * np.arange(1, 11) / 10)  # linear warm-up to the peak
    t = (np.arange(10, 50) - 10) / 40
    np.testing.assert_allclose(lrs[10:], 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * t)))
    assert np.all(np.diff(lrs[10:]) < 0) and cfg.lr_at(10**6, spe) == pytest.approx(1e-5)
    const = TrainConfig.paper()
    assert {const.lr_at(t, spe) for t in (0, 7, 499)} == {1e-3} and not const.augment.active
    for bad in ({"optimizer": "sgd"}, {"lr_schedule": "step"}, {"label_smoothing": 0.9}, {"warmup_epochs": -1},
                {"optimizer": "adam", "weight_decay": 0.1}, {"augment": {"noise_mix": 0}}):
        with pytest.raises(InputError):
            TrainConfig(**bad)


def test_runs_from_before_the_recipe_resume_with_what_they_trained_with(blob_dataset: Path, tmp_path: Path) -> None:
    model = ModelConfig("cls", n_classes=3, input_size=16, **TINY)
    train_run(blob_dataset, tmp_path / "old", model=model, train=TrainConfig.paper(max_epochs=1, batch_size=16))
    p = tmp_path / "old" / "config.json"
    cfg = json.loads(p.read_text())
    for key in ("optimizer", "weight_decay", "lr_schedule", "warmup_epochs", "min_lr_fraction", "label_smoothing",
                "augment"):
        del cfg["train"][key]  # as written by cryomine before these fields existed
    p.write_text(json.dumps(cfg))
    train_run(blob_dataset, tmp_path / "old", train={"max_epochs": 2}, resume=True)
    resolved = TrainConfig.from_dict(json.loads(p.read_text())["train"])
    assert resolved == TrainConfig.paper(max_epochs=2, batch_size=16)


def test_rng_state_round_trip_and_epoch_order() -> None:
    state = capture_rng()
    a = (torch.rand(3), np.random.rand(3))
    restore_rng(state)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(epoch_order(10, 1, 2), epoch_order(10, 1, 2))
    assert not np.array_equal(epoch_order(10, 1, 2), epoch_order(10, 1, 3))


# ------------------------------------------------------------------ training runs


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_gives_identical_weights(blob_dataset_factory, tmp_path: Path) -> None:
    # 24^3: on CPUs with native bf16 this exercises bf16 training (automatic for sides > 16)
    blob_dataset = blob_dataset_factory("blobs24", n_per_class=8, size=24, n_classes=3)
    train = {"max_epochs": 3, "batch_size": 8, "seed": 7}
    full = train_run(blob_dataset, tmp_path / "full", model="dsmnet", model_options=TINY, train=train)
    assert full.epochs == 3 and full.stopped == "max_epochs"
    part = train_run(blob_dataset, tmp_path / "part", model="dsmnet", model_options=TINY, train={**train, "max_epochs": 1})
    assert part.epochs == 1
    resumed = train_run(blob_dataset, tmp_path / "part", train={"max_epochs": 3}, resume=True)
    assert resumed.epochs == 3
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")
    assert _states_equal(a["model_state"], b["model_state"])
    assert torch.equal(a["optimizer_state"]["state"][0]["exp_avg"], b["optimizer_state"]["state"][0]["exp_avg"])
    ma, mb = (pd.read_csv(tmp_path / r / "metrics.csv").drop(columns="time_s") for r in ("full", "part"))
    pd.testing.assert_frame_equal(ma, mb)
    assert list(ma["epoch"]) == [1, 2, 3]
    stored = json.loads((tmp_path / "part" / "config.json").read_text())["train"]
    assert stored["augment"]["fresh_noise"] and stored["augment"]["flips"]  # the default: augmented training
    assert ma["lr"].iloc[0] < ma["lr"].max()  # the warm-up
    # a different seed gives different weights (the comparison above is not vacuous)
    other = train_run(blob_dataset, tmp_path / "other", model="dsmnet", model_options=TINY, train={**train, "seed": 8, "max_epochs": 1})
    assert not _states_equal(load_checkpoint(other.run_dir / "last.pt")["model_state"], b["model_state"])
    # changing a non-resumable setting is refused
    with pytest.raises(InputError, match="other lr"):
        train_run(blob_dataset, tmp_path / "part", train={"lr": 0.5}, resume=True)
    with pytest.raises(InputError, match="already holds a run"):
        train_run(blob_dataset, tmp_path / "part", model="dsmnet", model_options=TINY, train=train)


def test_early_stopping_after_patience_epochs_without_improvement(blob_dataset: Path, tmp_path: Path) -> None:
    model = ModelConfig("cls", n_classes=3, input_size=16, batch_norm=False, **TINY)  # lr 0: nothing changes
    res = train_run(blob_dataset, tmp_path / "run", model=model,
                    train={"lr": 0.0, "patience": 2, "max_epochs": 10, "batch_size": 16})
    assert res.stopped == "early_stopping" and res.best_epoch == 1 and res.epochs == 3
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3] and list(metrics["best"]) == [1, 0, 0]
    assert metrics["val_loss"].nunique() == 1 and metrics["val_loss_seg"].isna().all()
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1


def test_exclude_class_run_files(blob_dataset: Path, tmp_path: Path) -> None:
    res = train_run(blob_dataset, tmp_path / "run", model="cls", model_options=TINY,
                    train={"max_epochs": 1, "batch_size": 16, "exclude_classes": ["rod"], "max_train": 6})
    cfg = json.loads((res.run_dir / "config.json").read_text())
    split = json.loads((res.run_dir / "split.json").read_text())
    assert cfg["classes"]["class_names"] == ["sphere", "two_spheres"] and cfg["model"]["n_classes"] == 2
    assert cfg["classes"]["dataset_to_model"] == {"0": 0, "2": 1}
    rods = [i for i in range(24) if i % 3 == 1]
    assert split["excluded"] == rods
    used = split["train"] + split["val"] + split["test"]
    assert not set(used) & set(rods) and len(split["train"]) == 6
    assert cfg["split"]["train"] == 6 and (res.run_dir / "best.pt").is_file()


def test_training_fits_the_training_set(blob_dataset: Path, tmp_path: Path) -> None:
    # capacity check: the plain recipe (no augmentation, no label smoothing) must memorise the training set
    res = train_run(blob_dataset, tmp_path / "run", model="cls", model_options={**TINY, "fc_units": 32, "dropout": 0.0},
                    train=TrainConfig.paper(max_epochs=10, batch_size=8, lr=3e-3, patience=10))
    metrics = pd.read_csv(res.run_dir / "metrics.csv")
    assert metrics["train_loss"].iloc[-1] < 0.5 * metrics["train_loss"].iloc[0]
    run = load_run(res.run_dir, checkpoint="last.pt")
    split = json.loads((res.run_dir / "split.json").read_text())
    data = SubtomoDataset(blob_dataset, split["train"], ClassMap(tuple(run.config["classes"]["dataset_class_names"])))
    batch = data.batch(np.arange(len(data)))
    pred = infer(run.model, batch["x"], bf16=False).logits.argmax(1)
    assert (pred == batch["label"]).float().mean() >= 0.9


def test_a_run_killed_in_its_first_epoch_starts_again(blob_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    import cryomine.train.loop as loop

    real = loop.train_one_epoch
    monkeypatch.setattr(loop, "train_one_epoch", interrupted_on_call(real, 1))
    with pytest.raises(KeyboardInterrupt):
        train_run(blob_dataset, tmp_path / "run", model="dsmnet", model_options=TINY, train={"max_epochs": 1, "batch_size": 8})
    assert (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / "last.pt").exists()
    monkeypatch.setattr(loop, "train_one_epoch", real)
    with pytest.raises(InputError, match="before finishing its first epoch"):
        train_run(blob_dataset, tmp_path / "run", resume=True)
    res = train_run(blob_dataset, tmp_path / "run", model="dsmnet", model_options=TINY, train={"max_epochs": 1, "batch_size": 8})
    assert res.epochs == 1 and (tmp_path / "run" / "last.pt").exists()


def test_init_from_starts_from_the_runs_weights_and_keeps_its_split(blob_dataset: Path, tmp_path: Path) -> None:
    model = ModelConfig("cls", n_classes=3, input_size=16, batch_norm=False, **TINY)
    first = train_run(blob_dataset, tmp_path / "first", model=model, train={"max_epochs": 2, "batch_size": 16, "seed": 1})
    start = load_checkpoint(first.run_dir / "best.pt")["model_state"]
    # lr 0: the fine-tuned run's weights are exactly the ones it started from
    tuned = train_run(blob_dataset, tmp_path / "tuned", model=model,
                      train={"lr": 0.0, "max_epochs": 1, "batch_size": 16, "seed": 5, "init_from": str(first.run_dir)})
    assert _states_equal(load_checkpoint(tuned.run_dir / "last.pt")["model_state"], start)
    fresh = train_run(blob_dataset, tmp_path / "fresh", model=model, train={"lr": 0.0, "max_epochs": 1, "batch_size": 16, "seed": 5})
    assert not _states_equal(load_checkpoint(fresh.run_dir / "last.pt")["model_state"], start)
    # same dataset: the first run's split, not seed 5's, so its test boxes stay unseen
    split = lambda r: {k: json.loads((r / "split.json").read_text())[k] for k in ("train", "val", "test")}  # noqa: E731
    assert split(tuned.run_dir) == split(first.run_dir) != split(fresh.run_dir)
    cfg = json.loads((tuned.run_dir / "config.json").read_text())
    assert cfg["init_from"]["run"] == str(first.run_dir) and cfg["init_from"]["split_kept"] and cfg["init_from"]["epoch"] >= 1
    assert cfg["train"]["init_from"] == str(first.run_dir)
    resumed = train_run(blob_dataset, tmp_path / "tuned", train={"max_epochs": 2}, resume=True)
    assert resumed.epochs == 2
    assert json.loads((tuned.run_dir / "config.json").read_text())["init_from"] == cfg["init_from"]
    with pytest.raises(InputError, match="--init-from: .* another model"):
        train_run(blob_dataset, tmp_path / "wide", model=model.replace(base_channels=8),
                  train={"max_epochs": 1, "init_from": str(first.run_dir)})
    with pytest.raises(InputError, match="--init-from: .* trained on 3 classes"):
        train_run(blob_dataset, tmp_path / "fewer", model="cls", model_options=TINY,
                  train={"max_epochs": 1, "exclude_classes": ["rod"], "init_from": str(first.run_dir)})
    with pytest.raises(InputError, match="--init-from: .*run folder not found"):
        train_run(blob_dataset, tmp_path / "none", model=model, train={"max_epochs": 1, "init_from": str(tmp_path / "nope")})
    assert not (tmp_path / "wide").exists() and not (tmp_path / "none").exists()


def test_init_from_on_the_same_dataset_trains_on_every_row_not_held_out(blob_dataset: Path, tmp_path: Path) -> None:
    """A kept split keeps the starting run's val / test rows; training takes every other row (the starting run's
    --max-train does not carry over) and this run's --max-train cuts that, seeded."""
    model = ModelConfig("cls", n_classes=3, input_size=16, batch_norm=False, **TINY)
    first = train_run(blob_dataset, tmp_path / "first", model=model,
                      train={"max_epochs": 1, "batch_size": 16, "seed": 1, "max_train": 6})
    theirs = json.loads((first.run_dir / "split.json").read_text())
    assert len(theirs["train"]) == 6
    held = set(theirs["val"]) | set(theirs["test"])
    rows = lambda d: json.loads((tmp_path / d / "split.json").read_text())  # noqa: E731
    train_run(blob_dataset, tmp_path / "all", model=model, train={"lr": 0.0, "max_epochs": 1, "batch_size": 16,
                                                                  "seed": 3, "init_from": str(first.run_dir)})
    assert sorted(rows("all")["train"]) == sorted(set(range(24)) - held)
    assert {k: rows("all")[k] for k in ("val", "test", "seed", "fractions")} == {
        k: theirs[k] for k in ("val", "test", "seed", "fractions")}
    train_run(blob_dataset, tmp_path / "cut", model=model, train={"lr": 0.0, "max_epochs": 1, "batch_size": 16,
                                                                  "seed": 3, "max_train": 4, "init_from": str(first.run_dir)})
    cut = rows("cut")
    assert len(cut["train"]) == 4 and set(cut["train"]) <= set(rows("all")["train"]) and cut["val"] == theirs["val"]
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["split"]["train"] == 4
