"""``cryomine train / evaluate / predict`` end to end on a tiny dataset, and bad input through the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryomine.cli import main
from cryomine.data.normalise import normalise
from cryomine.errors import InputError
from cryomine.evaluate.predict import predict
from cryomine.io.mrc import write_mrc
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.train import resolve_run
from reference_metrics import segmentation_scores

TINY = ["--base-channels", "4", "--fc-units", "16"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")
EVAL_FIELDS = {"object_accuracy", "per_class_accuracy", "confusion_matrix", "pixel_accuracy", "miou", "iou_target",
               "iou_background", "recovery_mse", "recovery_correlation", "n_subtomograms", "class_names"}


@pytest.fixture(scope="module")
def trained_run(blob_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", str(blob_dataset), "--model", "dsmnet", "--out", str(run), "--epochs", "2",
                 "--batch-size", "8", "--max-train", "12", "--seed", "3", "--loss-weights", "1:10:1", *TINY])
    assert code == 0
    return run


def test_train_writes_the_run_folder(trained_run: Path) -> None:
    for name in ("config.json", "split.json", "best.pt", "last.pt", "metrics.csv"):
        assert (trained_run / name).is_file(), name
    cfg = json.loads((trained_run / "config.json").read_text())
    assert cfg["model"]["name"] == "dsmnet" and cfg["model"]["base_channels"] == 4
    assert cfg["train"]["max_epochs"] == 2 and cfg["train"]["seed"] == 3 and cfg["split"]["train"] == 12
    assert cfg["train"]["patience"] == 15  # not given: the TrainConfig default
    metrics = pd.read_csv(trained_run / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and metrics[["val_accuracy", "val_miou", "train_loss_rec"]].notna().all().all()
    assert resolve_run(trained_run) == trained_run


def _scores_from_predictions(pred_dir: Path, dataset: Path, rows: np.ndarray) -> dict:
    """Evaluation metrics of ``rows`` recomputed from ``cryomine predict``'s files (predictions.csv, masks/,
    recovered/) against the dataset's ground truth, by plain numpy."""
    table = pd.read_csv(pred_dir / "predictions.csv").set_index("row").loc[rows]
    truth = read_rows(dataset, ("class_id", "target_mask", "target_density"), rows)
    names = read_header(dataset).class_names
    out: dict = {"n_subtomograms": len(rows)}
    if "class_name" in table.columns:
        pred = np.array([names.index(n) for n in table["class_name"]])
        cm = np.zeros((len(names), len(names)), np.int64)
        np.add.at(cm, (truth["class_id"], pred), 1)
        out.update(object_accuracy=float(np.mean(pred == truth["class_id"])), confusion_matrix=cm.tolist())
    masks = np.stack([mrcfile.read(pred_dir / f) for f in table["mask_file"]])
    out.update(segmentation_scores(masks, truth["target_mask"]))
    if "recovered_file" in table.columns:
        rec = np.stack([mrcfile.read(pred_dir / f) for f in table["recovered_file"]]).reshape(len(rows), -1)
        target = normalise(truth["target_density"]).reshape(len(rows), -1).astype(np.float64)
        out["recovery_mse"] = float(np.mean((rec - target) ** 2))
        out["recovery_correlation"] = float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(rec, target)]))
    return out


def test_evaluate_json_and_text(trained_run: Path, blob_dataset: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(trained_run), str(blob_dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert EVAL_FIELDS <= set(result)
    split = json.loads((trained_run / "split.json").read_text())
    assert result["n_subtomograms"] == len(split["test"]) == 3  # 8 per class: 1 test row each
    # every number is the one recomputed from 'cryomine predict's output files for the test rows
    assert main(["predict", str(trained_run), str(blob_dataset), "--out", str(tmp_path / "pred")]) == 0
    want = _scores_from_predictions(tmp_path / "pred", blob_dataset, np.sort(split["test"]))
    assert result["confusion_matrix"] == want.pop("confusion_matrix")
    for key, value in want.items():
        assert result[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    capsys.readouterr()
    assert main(["evaluate", str(trained_run), str(blob_dataset), "--split", "all"]) == 0
    text = capsys.readouterr().out
    assert "object accuracy" in text and "mIoU" in text and "24 subtomograms" in text and "confusion matrix" in text
    # the printed accuracy and mIoU are those of all 24 rows' predictions
    every = _scores_from_predictions(tmp_path / "pred", blob_dataset, np.arange(24))
    assert f"object accuracy:   {every['object_accuracy']:.4f}" in text
    assert f"mIoU:              {every['miou']:.4f} (background {every['iou_background']:.4f}" in text


def test_predict_dataset_and_mrc_inputs(trained_run: Path, blob_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run), str(blob_dataset), "--out", str(out)]) == 0
    star = starfile.read(out / "predictions.star")
    assert len(star) == 24 and set(star["rlnClassNumber"]) <= {1, 2, 3}
    assert {"cmClassName", "cmClassProbability", "cmMaskFile", "cmRecoveredFile"} <= set(star.columns)
    csv = pd.read_csv(out / "predictions.csv")
    np.testing.assert_allclose(csv[["p_sphere", "p_rod", "p_two_spheres"]].sum(axis=1), 1.0, atol=1e-5)
    with mrcfile.open(out / csv["mask_file"][0]) as m:
        assert m.data.shape == (16, 16, 16) and set(np.unique(m.data)) <= {0.0, 1.0}
        assert float(m.voxel_size.x) == pytest.approx(10.0)

    # MRC inputs: a folder and a file (same stem twice -> unique names); the model's 10 Å voxels are required
    vols = read_rows(blob_dataset, ("subtomograms",), np.array([0, 1]))["subtomograms"]
    folder = tmp_path / "mrcs"
    folder.mkdir()
    write_mrc(folder / "a.mrc", vols[0], voxel_size_a=7.5)
    write_mrc(folder / "b.mrc", vols[1], voxel_size_a=7.5)
    (tmp_path / "other").mkdir()
    write_mrc(tmp_path / "other" / "a.mrc", vols[1], voxel_size_a=7.5)
    out2 = tmp_path / "pred2"
    args = ["predict", str(trained_run), str(folder), str(tmp_path / "other" / "a.mrc"), "--out", str(out2)]
    capsys.readouterr()
    assert main(args) == 2  # 7.5 Å boxes for a 10 Å model: refused in one line, nothing written
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a.mrc" in err and "7.5 Å" in err and "trained at 10 Å" in err and not out2.exists()
    assert main([*args, "--voxel-size", "10"]) == 0  # the user says the headers are wrong
    star2 = starfile.read(out2 / "predictions.star")
    assert list(star2["cmName"]) == ["a", "b", "a_2"] and "rlnImageName" in star2
    with mrcfile.open(out2 / "recovered" / "a_2.mrc") as m:
        assert m.data.shape == (16, 16, 16) and float(m.voxel_size.x) == pytest.approx(10.0)
    # b.mrc and other/a.mrc hold the same subtomogram: same prediction
    assert star2["cmClassProbability"][1] == pytest.approx(star2["cmClassProbability"][2], abs=1e-6)


def test_segmentation_only_model(blob_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "seg"
    assert main(["train", str(blob_dataset), "--model", "seg", "--out", str(run), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), str(blob_dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["object_accuracy"] is None and result["confusion_matrix"] is None and result["recovery_mse"] is None
    assert main(["predict", str(run), str(blob_dataset), "--out", str(tmp_path / "p")]) == 0
    test_rows = np.sort(json.loads((run / "split.json").read_text())["test"])
    want = _scores_from_predictions(tmp_path / "p", blob_dataset, test_rows)
    assert set(want) == {"n_subtomograms", "pixel_accuracy", "iou_background", "iou_target", "miou"}
    for key, value in want.items():
        assert result[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    star = starfile.read(tmp_path / "p" / "predictions.star")
    assert "rlnClassNumber" not in star and not (tmp_path / "p" / "recovered").exists()
    assert len(list((tmp_path / "p" / "masks").glob("*.mrc"))) == 24


def _bad(args: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and err.startswith("error:"), err
    assert match in err, err


def test_bad_input(trained_run: Path, blob_dataset: Path, blob_dataset_factory: Callable[..., Path], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    ds24 = blob_dataset_factory("blobs24", n_per_class=8, size=24, n_classes=3)
    ds4 = blob_dataset_factory("blobs4", n_per_class=8, size=16, n_classes=4)
    empty = blob_dataset_factory("empty", n_per_class=8, size=16, n_classes=3, n_written=0)
    run, ds = str(trained_run), str(blob_dataset)
    _bad(["evaluate", run, str(ds24)], capsys, "box size 24")
    _bad(["predict", run, str(ds24), "--out", str(tmp_path / "p")], capsys, "box size 24x24x24")
    _bad(["evaluate", run, str(ds4)], capsys, "class count mismatch")
    _bad(["train", str(empty), "--out", str(tmp_path / "e")], capsys, "empty")
    _bad(["train", ds, "--model", "resnet", "--out", str(tmp_path / "m")], capsys, "unknown model 'resnet'")
    _bad(["train", ds, "--exclude-class", "banana", "--out", str(tmp_path / "x")], capsys, "unknown class 'banana'")
    _bad(["train", ds, "--exclude-class", "9", "--out", str(tmp_path / "x")], capsys, "no class id 9")
    _bad(["train", ds, "--loss-weights", "0:0:0", "--out", str(tmp_path / "w")], capsys, "all zero")
    _bad(["train", ds, "--loss-weights", "1:-10:1", "--out", str(tmp_path / "w")], capsys, "--loss-weights (seg)")
    _bad(["train", ds, "--model", "seg", "--loss-weights", "1:0:1", "--out", str(tmp_path / "w")], capsys, "heads (seg) are zero")
    _bad(["train", ds, "--out", run], capsys, "already holds a run")
    _bad(["train", ds, "--out", str(tmp_path / "none"), "--resume"], capsys, "nothing to resume")
    _bad(["train", ds, "--out", str(tmp_path / "i"), "--init-from", str(tmp_path / "missing")], capsys,
         "--init-from: ")
    _bad(["train", ds, "--out", str(tmp_path / "i"), "--init-from", "pretrained:dsmnet-a"], capsys,
         "--init-from: pretrained:dsmnet-a was trained on 22 classes")
    _bad(["evaluate", "pretrained:nope", ds], capsys, "unknown pretrained model 'nope' (shipped: dsmnet-a")
    _bad(["evaluate", str(tmp_path / "missing"), ds], capsys, "run folder not found")
    _bad(["evaluate", run, ds, "--split", "dev"], capsys, "split")
    _bad(["evaluate", run, str(ds4), "--split", "all"], capsys, "class count mismatch")
    other = blob_dataset_factory("blobs_seed2", n_per_class=4, size=16, n_classes=3, seed=2)  # same classes, new rows
    _bad(["evaluate", run, str(other)], capsys, "use --split all")
    assert main(["evaluate", run, str(other), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_subtomograms"] == 12
    # a truncated checkpoint
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    data = (broken / "best.pt").read_bytes()
    (broken / "best.pt").write_bytes(data[: len(data) // 2])
    _bad(["evaluate", str(broken), ds], capsys, "truncated or corrupt")
    _bad(["predict", str(broken), ds, "--out", str(tmp_path / "p")], capsys, "truncated or corrupt")
    (broken / "best.pt").unlink()
    _bad(["predict", str(broken), ds, "--out", str(tmp_path / "p")], capsys, "checkpoint not found")
    # no stray output folders from refused commands
    assert not any((tmp_path / d).exists() for d in ("m", "w", "x", "p", "e", "i"))


def test_recipe_and_augmentation_options_reach_the_run_config(blob_dataset: Path, blob_dataset_factory: Callable[..., Path],
                                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--model", "cls", "--epochs", "1", "--batch-size", "16", *TINY]
    assert main(["train", str(blob_dataset), "--out", str(tmp_path / "paper"), "--recipe", "paper", *common]) == 0
    paper = json.loads((tmp_path / "paper" / "config.json").read_text())["train"]
    assert (paper["optimizer"], paper["lr_schedule"], paper["label_smoothing"]) == ("adam", "constant", 0.0)
    assert not any(paper["augment"][k] for k in ("flips", "fresh_noise"))
    assert main(["train", str(blob_dataset), "--out", str(tmp_path / "mix"), "--no-fresh-noise", "--shift", "1",
                 "--weight-decay", "0.01", *common]) == 0
    mix = json.loads((tmp_path / "mix" / "config.json").read_text())["train"]
    assert mix["augment"] == {"flips": True, "fresh_noise": False, "noise_mix": 3, "max_shift_vox": 1, "snr_range": None,
                              "snr_range_fraction": 1.0}
    assert (mix["optimizer"], mix["weight_decay"]) == ("adamw", 0.01)
    assert main(["train", str(blob_dataset), "--out", str(tmp_path / "snr"), "--snr-range", "0.5,2", *common]) == 0
    assert json.loads((tmp_path / "snr" / "config.json").read_text())["train"]["augment"]["snr_range"] == [0.5, 2.0]
    # a dataset without a noise model: fresh noise is refused with the way out named; --no-augment trains
    legacy = blob_dataset_factory("blobs_legacy", n_per_class=8, size=16, n_classes=3, noise_model=False)
    _bad(["train", str(legacy), "--out", str(tmp_path / "legacy"), *common], capsys, "--no-fresh-noise")
    assert not (tmp_path / "legacy").exists()
    assert main(["train", str(legacy), "--out", str(tmp_path / "legacy"), "--no-augment", *common]) == 0
    _bad(["train", str(blob_dataset), "--out", str(tmp_path / "b1"), "--snr-range", "2,0.5"], capsys, "--snr-range: need two finite SNRs")
    _bad(["train", str(blob_dataset), "--out", str(tmp_path / "b2"), "--recipe", "adam"], capsys, "unknown recipe")
    _bad(["train", str(blob_dataset), "--out", str(tmp_path / "b3"), "--optimizer", "adam", "--weight-decay", "0.1"],
         capsys, "--weight-decay: needs --optimizer adamw")


def test_predict_refuses_a_nan_box_in_a_later_batch_before_writing_anything(trained_run: Path, blob_dataset: Path, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A NaN box anywhere (here in the last of several batches) is refused, naming its row, before the first file
    is written: half-written mask and density folders were left behind before."""
    bad = tmp_path / "bad.h5"
    shutil.copy(blob_dataset, bad)
    with h5py.File(bad, "r+") as f:
        box = f["subtomograms"][20]
        box[3, 4, 5] = np.nan
        f["subtomograms"][20] = box
    out = tmp_path / "pred"
    with pytest.raises(InputError, match=r"\(row 20\): holds 1 NaN or infinite voxels"):
        predict(trained_run, [bad], out, batch_size=8)  # rows 16-23 are the third batch
    assert not out.exists()
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(bad), "--out", str(out)]) == 2
    assert "holds 1 NaN" in capsys.readouterr().err and not out.exists()


def test_evaluate_on_another_runs_split(trained_run: Path, blob_dataset: Path, blob_dataset_factory: Callable[..., Path],
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--split-from: one model scored on the held-out rows of another run's dataset, exactly those rows."""
    other = blob_dataset_factory("blobs_seed5", n_per_class=6, size=16, n_classes=3, seed=5)
    source = tmp_path / "source"
    assert main(["train", str(other), "--out", str(source), "--epochs", "1", "--batch-size", "8", "--seed", "4", *TINY]) == 0
    test_rows = np.sort(json.loads((source / "split.json").read_text())["test"])
    capsys.readouterr()
    assert main(["evaluate", str(trained_run), str(other), "--split-from", str(source), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split_from"] == str(source) and result["n_subtomograms"] == len(test_rows) > 0
    assert main(["predict", str(trained_run), str(other), "--out", str(tmp_path / "pred")]) == 0
    want = _scores_from_predictions(tmp_path / "pred", other, test_rows)  # the trained_run's predictions of those rows
    assert result["confusion_matrix"] == want.pop("confusion_matrix")
    for key, value in want.items():
        assert result[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    capsys.readouterr()
    assert main(["evaluate", str(trained_run), str(other), "--split-from", str(source), "--split", "val"]) == 0
    n_val = len(json.loads((source / "split.json").read_text())["val"])
    assert f"split val of {source}: {n_val} subtomograms" in capsys.readouterr().out
    # the run's own split through --split-from is its plain evaluation
    assert main(["evaluate", str(trained_run), str(blob_dataset), "--split-from", str(trained_run), "--json"]) == 0
    via = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(trained_run), str(blob_dataset), "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert via["confusion_matrix"] == own["confusion_matrix"] and via["miou"] == own["miou"]

    # refusals: a dataset that is not the source run's, split all, a missing run, and rows the model trained on
    _bad(["evaluate", str(trained_run), str(blob_dataset), "--split-from", str(source)], capsys,
         "only defined on that run's dataset")
    _bad(["evaluate", str(trained_run), str(other), "--split-from", str(source), "--split", "all"], capsys,
         "--split-from: needs --split test, val or train")
    _bad(["evaluate", str(trained_run), str(other), "--split-from", str(tmp_path / "nope")], capsys,
         "--split-from: " + str(tmp_path / "nope") + ": run folder not found")
    leaky = tmp_path / "leaky"
    shutil.copytree(trained_run, leaky)
    split = json.loads((trained_run / "split.json").read_text())
    (leaky / "split.json").write_text(json.dumps({**split, "test": split["train"][:2] + split["test"]}))
    _bad(["evaluate", str(trained_run), str(blob_dataset), "--split-from", str(leaky)], capsys,
         f"trained or early-stopped on 2 of the {2 + len(split['test'])} rows")
