"""Training the learned picker: tiles and labels stay aligned through flips, a run folder that resumes to what an
uninterrupted run gives, and a checkpoint the picker loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cryomine.devices as devices
import cryomine.pick.learned as pl
import cryomine.train.picker as tp
from cryomine.data.tomo_tiles import TileSampler, expected_voxels, open_training_tomogram
from cryomine.errors import InputError
from cryomine.models.picker import PickerConfig, PickerUNet
from cryomine.pick.config import LearnedPickConfig
from cryomine.pick.learned import DEFAULT_PICKER
from cryomine.simulate.config import DSMNET_CLASSES
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.membranes import MEMBRANE_LABEL
from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram
from cryomine.train.picker import PickerTrainConfig, load_picker, train_picker
from faults import interrupted_on_call


@pytest.fixture(scope="module")
def tomograms(tmp_path_factory):
    out = tmp_path_factory.mktemp("picker_train")
    paths = []
    for seed in (1, 2):
        p = out / f"t{seed}.mrc"
        simulate_tomogram(p, TomogramConfig(shape_zyx=(32, 64, 64), particles=8, structures=("1bxn", "3gl1"), seed=seed,
                                            imaging=ImagingConfig(snr=1.0)), progress=False)  # fmt: skip
        paths.append(p)
    return paths


def test_tiles_and_labels_are_cut_and_flipped_together(tomograms):
    t = open_training_tomogram(tomograms[0])
    assert t.names == ("background", "1bxn", "3gl1", "membrane")
    x, y = TileSampler([t], 16).batch(6, np.random.default_rng(0))
    std = (np.asarray(t.volume, np.float32) - np.float32(t.mean)) / np.float32(t.std)  # as the sampler computes it
    lab = np.asarray(t.labels)
    for img, labels in zip(x[:, 0], y):  # each tile is a flipped crop of the standardised tomogram, its labels the same crop
        found = []
        for flips in np.ndindex(2, 2, 2):
            axes = tuple(i for i, f in enumerate(flips) if f)
            plain, plain_labels = (np.flip(img, axes), np.flip(labels, axes)) if axes else (img, labels)
            for a, b, c in np.argwhere(std[:17, :49, :49] == plain[0, 0, 0]):
                if (std[a : a + 16, b : b + 16, c : c + 16] == plain).all():
                    found.append(bool((lab[a : a + 16, b : b + 16, c : c + 16] == plain_labels).all()))
        assert found and all(found)
    sizes = expected_voxels([t])
    assert set(sizes) == {"1bxn", "3gl1"} and min(sizes.values()) > 20  # no membranes here


def test_a_killed_run_resumes_to_the_uninterrupted_weights(tomograms, tmp_path, monkeypatch):
    small = dict(steps_per_epoch=2, batch=2, tile_vox=16, val_tiles=2, base_channels=4, depth=2, device="cpu", bf16=False)
    whole = train_picker(tomograms, tmp_path / "whole", PickerTrainConfig(epochs=3, **small), progress=False)
    assert whole["epochs_run"] == 3
    first = PickerTrainConfig(epochs=3, **small)
    monkeypatch.setattr(tp, "_validate", interrupted_on_call(tp._validate, 3))  # killed in epoch 3, before saving it
    with pytest.raises(KeyboardInterrupt):
        train_picker(tomograms, tmp_path / "run", first, progress=False)
    monkeypatch.undo()
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3  # two epochs kept
    with pytest.raises(InputError, match="not empty"):
        train_picker(tomograms, tmp_path / "run", first, progress=False)
    with pytest.raises(InputError, match="other tomograms or settings"):
        train_picker(tomograms, tmp_path / "run", PickerTrainConfig(epochs=3, **{**small, "batch": 1}), resume=True, progress=False)
    train_picker(tomograms, tmp_path / "run", first, resume=True, progress=False)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,train_loss,val_miou")
    loaded = load_picker(tmp_path / "run")
    assert loaded.voxel_size_a == pytest.approx(10.0)  # what the picks' tomograms must match
    assert loaded.config.class_names == ("1bxn", "3gl1", "membrane") and set(loaded.expected_voxels) == {"1bxn", "3gl1"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["picker"]["base_channels"] == 4


def test_init_from_starts_from_the_given_pickers_weights_and_refuses_another_shape(tomograms, tmp_path):
    small = dict(steps_per_epoch=2, batch=2, tile_vox=16, val_tiles=2, base_channels=4, depth=2, device="cpu", bf16=False)
    train_picker(tomograms, tmp_path / "a", PickerTrainConfig(epochs=2, **small), progress=False)
    start = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    # a learning rate of 1e-12 leaves the weights where they started: from run a's best, not from a seeded random init
    tiny = PickerTrainConfig(epochs=1, lr=1e-12, **small)
    train_picker(tomograms, tmp_path / "b", tiny, progress=False)
    fine = PickerTrainConfig(epochs=1, lr=1e-12, init_from=str(tmp_path / "a"), **small)
    train_picker(tomograms, tmp_path / "c", fine, progress=False)
    scratch = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    tuned = torch.load(tmp_path / "c" / "last.pt", weights_only=True)["model"]
    convs = [k for k in start if k.endswith("weight") and start[k].ndim == 5]
    assert convs and all(torch.allclose(tuned[k], start[k], atol=1e-6) for k in convs)
    assert not any(torch.allclose(scratch[k], start[k], atol=1e-3) for k in convs)
    assert json.loads((tmp_path / "c" / "config.json").read_text())["train"]["init_from"] == str(tmp_path / "a")
    with pytest.raises(InputError, match="base channels"):
        train_picker(tomograms, tmp_path / "d", PickerTrainConfig(epochs=1, init_from=str(tmp_path / "a"), **{**small, "base_channels": 8}),
                     progress=False)  # fmt: skip
    assert not (tmp_path / "d").exists()  # refused before the run folder was made
    with pytest.raises(InputError, match="--init-from"):
        PickerTrainConfig(init_from="")


def test_train_picker_and_pick_learned_from_the_command_line(tomograms, tmp_path, capsys):
    from cryomine.cli import main
    from cryomine.io.star import read_particles

    run = tmp_path / "run"
    args = ["train-picker", *map(str, tomograms), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "2", "--tile-vox", "16",
            "--base-channels", "4", "--depth", "2", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0 and (run / "best.pt").is_file()
    capsys.readouterr()
    bad = [a if a != str(run) else str(tmp_path / "bad") for a in args]
    assert main([*bad, "--tile-vox", "10"]) == 2  # not a multiple of 2 ** depth: refused before anything is written
    assert "--tile-vox" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    out = tmp_path / "picks" / "p.star"
    assert main(["pick", str(tomograms[1]), "--method", "learned", "--model", str(run), "--tile-size", "32", "--overlap", "8",
                 "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["labels"] == {"0": "background", "1": "1bxn", "2": "3gl1", "3": "membrane"} and summary["method"] == "learned"
    assert (tmp_path / "picks" / "p_labels.mrc").is_file() and (tmp_path / "picks" / "p_probability.mrc").is_file()
    if summary["n_picks"]:  # an untrained picker may find nothing; what it finds carries a class
        assert set(read_particles(out).particles["rlnClassName"]) <= {"1bxn", "3gl1", "membrane"}
    capsys.readouterr()
    assert main(["pick", str(tomograms[1]), "--method", "learned", "--model", str(run), "--voxel-size", "7", "--out", str(tmp_path / "v.star")]) == 2
    assert "trained at 10 Å" in capsys.readouterr().err and not (tmp_path / "v.star").exists()
    assert main(["pick", str(tomograms[1]), "--method", "learned", "--model", "pretrained:nothing", "--out", str(tmp_path / "q.star")]) == 2
    assert "nothing" in capsys.readouterr().err and not (tmp_path / "q.star").exists()


def test_the_shipped_picker_loads_with_its_training_voxel_size_and_labels():
    shipped = load_picker(DEFAULT_PICKER)
    assert shipped.voxel_size_a == 10.0
    assert shipped.config.class_names == (*DSMNET_CLASSES, MEMBRANE_LABEL)
    assert set(shipped.expected_voxels) >= set(DSMNET_CLASSES)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("native", [False, True])
def test_automatic_precision_is_bf16_only_where_the_cpu_has_it(tomograms, tmp_path, monkeypatch, native):
    """Emulated bf16 (a CPU without AVX512-BF16/AMX) made picker training many times slower than float32: the
    picker's training and tiled labelling take bf16 from the one hardware check unless told otherwise."""
    monkeypatch.setattr(devices, "_NATIVE_BF16", native)
    seen: list[bool] = []

    def runtime_spy(device, bf16, channels_last):
        seen.append(bf16)
        raise _Stop

    monkeypatch.setattr(tp, "Runtime", runtime_spy)
    small = dict(epochs=1, steps_per_epoch=1, batch=1, tile_vox=32, val_tiles=1, base_channels=4, depth=2, device="cpu")
    for i, requested in enumerate((None, False, True)):
        with pytest.raises(_Stop):
            train_picker(tomograms, tmp_path / f"run{i}", PickerTrainConfig(bf16=requested, **small), progress=False)
    real_infer = pl.infer

    def infer_spy(model, x, *, bf16, channels_last):
        seen.append(bf16)
        return real_infer(model, x, bf16=False, channels_last=channels_last)

    monkeypatch.setattr(pl, "infer", infer_spy)
    assert seen == [native, False, True]  # training: automatic, then the explicit choices obeyed
    net = PickerUNet(PickerConfig(("a", "b"), base_channels=4, depth=2))
    volume = np.random.default_rng(0).normal(size=(12, 20, 16)).astype(np.float32)
    for requested, expected in ((None, native), (False, False), (True, True)):
        seen.clear()
        pl.label_tomogram(volume, net, LearnedPickConfig(tile_vox=16, overlap_vox=2, device="cpu", bf16=requested))
        assert len(seen) > 1 and set(seen) == {expected}  # every tile's forward pass
