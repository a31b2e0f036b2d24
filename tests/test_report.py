"""The HTML report: built from a small synthetic demo folder, it is one self-contained file (only data: images,
no outside links, no script), shows every section and the headline numbers, escapes names from files, degrades to
"not available" per section, draws exactly the picks that cut a slice; ``cryomine report`` end to end."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure

from cryomine.cli import main
from cryomine.errors import InputError
from cryomine.io import make_particles, write_mrc, write_particles
from cryomine.report.build import build_report
from cryomine.report.figures import Points, tomogram_picks_figure
from cryomine.report.html import escape, table
from cryomine.report.inputs import find_inputs

EVIL = '<script>alert("x")</script>&co'
CLASSES = ["1bxn", "3j9i", EVIL]
SECTIONS = ("figures", "tomogram", "training", "classification", "examples", "discovery", "average", "parameters", "inputs")


def _png(path: Path, seed: int) -> None:
    fig = Figure(figsize=(2, 1.5))
    fig.subplots().plot(np.random.default_rng(seed).normal(size=10))
    fig.savefig(path, format="png", dpi=40)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def make_demo_folder(root: Path) -> Path:
    """A small demo folder following the report's conventions (module docstring of cryomine.report.build)."""
    rng = np.random.default_rng(7)
    shape = (24, 40, 56)  # odd, non-cubic (d, h, w)
    tomo = rng.normal(size=shape).astype(np.float32)
    truth_xyz = np.array([[10.0, 12.0, 12.0], [30.0, 20.0, 11.0], [45.0, 30.0, 3.0]])
    for x, y, z in truth_xyz:
        tomo[int(z) - 1:int(z) + 2, int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] += 4.0
    write_mrc(root / "tomogram.mrc", tomo, 10.0)
    write_particles(root / "tomogram.star", make_particles(truth_xyz, class_number=[1, 2, 3],
                                                          extra={"rlnClassName": np.array(CLASSES, dtype=object)}), pixel_size_a=10.0)
    _write_json(root / "tomogram.json", {"particles_placed": 3, "snr_measured": 0.0612, "volume_fraction": 0.01,
                                         "config": {"shape_zyx": list(shape), "voxel_size_a": 10.0, "seed": 0,
                                                    "imaging": {"snr": 0.06}}})
    picks_xyz = np.array([[11.0, 12.0, 13.0], [30.0, 21.0, 10.0], [50.0, 5.0, 20.0]])
    write_particles(root / "picks.star", make_particles(picks_xyz, extra={"rlnClassName": np.array(CLASSES, dtype=object)}), pixel_size_a=10.0)
    loc = {"tp": 2, "fp": 1, "fn": 1, "precision": 0.6667, "recall": 0.6667, "f1": 0.6667}
    _write_json(root / "picks_evaluation.json", {
        "n_picks": 3, "n_true": 3, "hit_fraction": 0.5, "radius_vox": {n: 4.0 for n in CLASSES},
        "localisation": loc, "localisation_and_class": {**loc, "f1": 0.8125},
        "per_class": {n: {"n_true": 1, "n_picked": 1, "localisation": {"recall": 1.0},
                          "localisation_and_class": {"precision": 1.0, "recall": 1.0, "f1": 1.0}} for n in CLASSES},
        "voxel_size_a": 10.0})
    _write_json(root / "summary.json", {"cryomine_version": "0", "subtomograms": 12, "figures": {"demo headline": 0.4321}})
    _write_json(root / "config.json", {"voxel_size_a": 10.0, "snr": 0.06, "seed": 0})

    run = root / "run"
    _write_json(run / "config.json", {
        "format": "cryomine-run", "model": {"name": "dsmnet", "input_size": 16, "fc_units": 16},
        "train": {"lr": 0.002, "batch_size": 8, "max_epochs": 5, "seed": 3, "exclude_classes": [EVIL]},
        "dataset": {"n_written": 12, "voxel_size_a": 10.0}, "classes": {"class_names": CLASSES[:2]}})
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.2], "train_loss_cls": [1.0, 0.8, 0.6],
                  "val_loss": [2.1, 1.6, 1.7], "val_accuracy": [0.5, 0.7, 0.65], "val_miou": [0.4, 0.55, 0.5],
                  "time_s": [1.0, 1.0, 1.0], "best": [1, 1, 0]}).to_csv(run / "metrics.csv", index=False)
    _write_json(run / "evaluation.json", {
        "run": str(run), "dataset": "/data/sub.h5", "split": "test", "model": "dsmnet", "n_subtomograms": 16,
        "class_names": CLASSES, "object_accuracy": 0.9375, "per_class_accuracy": {CLASSES[0]: 1.0, CLASSES[1]: 0.875,
                                                                                   CLASSES[2]: 1.0},
        "class_support": {CLASSES[0]: 6, CLASSES[1]: 8, CLASSES[2]: 2}, "confusion_matrix": [[6, 0, 0], [1, 7, 0], [0, 0, 2]],
        "pixel_accuracy": 0.9123, "iou_background": 0.9, "iou_target": 0.7, "miou": 0.8012,
        "recovery_mse": 0.2, "recovery_correlation": 0.7654})

    pred = root / "predict"
    records = []
    for i, name in enumerate(["a", "b", "c"]):
        box = rng.normal(size=(12, 12, 12)).astype(np.float32)
        write_mrc(root / "subtomos" / f"{name}.mrc", box, 10.0)
        write_mrc(pred / "masks" / f"{name}.mrc", (box > 0.5).astype(np.float32), 10.0)
        write_mrc(pred / "recovered" / f"{name}.mrc", box * 0.5, 10.0)
        records.append({"name": name, "source": str(root / "subtomos" / f"{name}.mrc"), "row": -1,
                        "class_number": i % 2 + 1, "class_name": CLASSES[i % 2], "probability": 0.6 + 0.1 * i,
                        "mask_file": f"masks/{name}.mrc", "recovered_file": f"recovered/{name}.mrc"})
    pd.DataFrame.from_records(records).to_csv(pred / "predictions.csv", index=False)

    disc = root / "discover"
    disc.mkdir()
    _png(disc / "tsne.png", 1)
    _png(disc / "cluster_0.png", 2)
    _png(disc / "cluster_1.png", 3)
    held = {EVIL: {"class_id": 2, "n": 4, "cluster": 1, "recall": 0.75, "precision": 0.6,
                   "cluster_size": 5, "fsc": {"resolution_fsc05_a": 40.0, "resolution_fsc0143_a": 31.25}}}
    _write_json(disc / "summary.json", {
        "k": 3, "model": "dsmnet", "n_subtomograms": 12, "config": {"seed": 0, "tsne_perplexity": 5},
        "dsmnet": {"purity": 0.8333, "adjusted_rand_index": 0.5, "normalized_mutual_info": 0.6, "held_out": held,
                   "clusters": [{"cluster": 0, "size": 7, "majority_class": CLASSES[0], "majority_fraction": 0.9},
                                {"cluster": 1, "size": 5, "majority_class": EVIL, "majority_fraction": 0.6}]},
        "baseline": {"purity": 0.5, "held_out": {}}})

    avg = root / "average"
    zz, yy, xx = np.mgrid[:16, :16, :16] - 8
    write_mrc(avg / "average.mrc", np.exp(-(zz**2 + yy**2 + xx**2) / 10.0).astype(np.float32), 10.0)
    freq = np.arange(9) / (16 * 10.0)
    pd.DataFrame({"shell": range(9), "frequency_a_inv": freq, "fsc": np.linspace(1, -0.05, 9)}).to_csv(avg / "fsc.csv", index=False)
    _write_json(avg / "summary.json", {"particles": 40, "box": 16, "voxel_size_a": 10.0, "history": [],
                                       "classes": [{"class": 1, "particles": 40, "resolution_fsc0143_a": 23.5,
                                                    "resolution_fsc05_a": 28.0, "fsc_sum": 4.0}],
                                       "config": {"iterations": 3, "angular_step_deg": 15}})
    return root


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    root = make_demo_folder(tmp_path_factory.mktemp("demo"))
    out = build_report(root)
    return root, out.read_text(encoding="utf-8")


def test_report_is_self_contained(demo):
    root, text = demo
    assert (root / "report.html").is_file()
    assert "<script" not in text.lower()
    for attr, value in re.findall(r'\b(src|href)\s*=\s*"([^"]*)"', text):
        assert value.startswith("data:") or (attr == "href" and value.startswith("#")), (attr, value[:60])
    assert not re.search(r"url\(", text)  # no style sheet fetches either
    images = _images(text)
    assert len(images) == text.count("<img ")
    # tomogram, learning curves, confusion matrix, examples, t-SNE, 2 clusters, average slices and isosurface, FSC
    assert len(images) == 10
    assert all(min(_png_size(img)) > 10 for img in images)


def test_report_sections_and_numbers(demo):
    _, text = demo
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    assert "Not available" not in text
    figures = text.split('<section id="figures">')[1].split("</section>")[0]
    for number in ("0.6667", "0.8125", "0.9375", "0.9123", "0.8012", "0.7654", "23.5", "31.25", "0.75", "0.0612",
                   "0.8333", "0.4321", "demo headline"):
        assert f">{number}<" in figures, number
    assert "lr=0.002" in figures and "batch_size=8" in figures  # run parameters beside the evaluation numbers
    assert "iterations=3" in figures  # averaging parameters beside the resolution


def test_report_escapes_names(demo):
    _, text = demo
    assert EVIL not in text and "alert(" in text
    assert escape(EVIL) in text
    assert "&lt;script&gt;" in text


def test_sections_say_not_available_for_a_run_folder(tmp_path):
    root = make_demo_folder(tmp_path / "demo")
    text = build_report(root / "run", tmp_path / "run.html").read_text()
    assert "Not available" in text
    for anchor in ("tomogram", "examples", "discovery", "average"):
        body = text.split(f'<section id="{anchor}">')[1].split("</section>")[0]
        assert "Not available" in body and "<img" not in body, anchor
    training = text.split('<section id="training">')[1].split("</section>")[0]
    assert "<img" in training and ">0.7<" in training  # val accuracy of the best (last flagged) epoch
    assert len(_images(text)) == 2  # learning curves and confusion matrix


def test_unreadable_input_degrades_one_section(tmp_path):
    root = make_demo_folder(tmp_path / "demo")
    ev = json.loads((root / "run" / "evaluation.json").read_text())
    ev["confusion_matrix"] = [[1, 2], [3, 4]]  # 2x2 for 3 class names
    (root / "run" / "evaluation.json").write_text(json.dumps(ev))
    (root / "average" / "fsc.csv").write_text("not,an\nfsc,file\n")
    text = build_report(root).read_text()
    cls = text.split('<section id="classification">')[1].split("</section>")[0]
    assert "Not available" in cls and "does not match 3 class names" in cls
    avg = text.split('<section id="average">')[1].split("</section>")[0]
    assert "Not available" in avg and "frequency_a_inv" in avg
    assert "<img" in text.split('<section id="tomogram">')[1].split("</section>")[0]


def test_find_inputs_recognises_files_by_content(tmp_path):
    root = make_demo_folder(tmp_path / "demo")
    (root / "run" / "evaluation.json").rename(root / "run" / "eval_on_test.json")
    found = find_inputs(root)
    assert found.evaluation is not None and found.evaluation.path.name == "eval_on_test.json"
    assert found.run_dir == root / "run" and found.predict_dir == root / "predict"
    assert found.discover_dir == root / "discover" and found.average_dir == root / "average"
    assert found.truth_star == root / "tomogram.star" and found.picks_star == root / "picks.star"
    assert found.demo_summary is not None and found.demo_config is not None
    with pytest.raises(InputError, match="not found"):
        find_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="nothing to report"):
        build_report(tmp_path / "empty")


def test_tomogram_figure_draws_exactly_the_picks_that_cut_the_slice():
    rng = np.random.default_rng(3)
    shape = (20, 30, 50)
    xyz = rng.uniform([0, 0, 0], [50, 30, 20], size=(60, 3))
    radius = 3.0
    fig = tomogram_picks_figure(np.zeros(shape, np.float32), Points(xyz), None, radius_vox=radius)
    ax_xy, ax_xz = fig.axes[:2]
    (coll_xy,) = [c for c in ax_xy.collections if isinstance(c, PatchCollection)]
    (coll_xz,) = [c for c in ax_xz.collections if isinstance(c, PatchCollection)]
    assert len(coll_xy.get_paths()) == int((np.abs(xyz[:, 2] - shape[0] // 2) < radius).sum())
    assert len(coll_xz.get_paths()) == int((np.abs(xyz[:, 1] - shape[1] // 2) < radius).sum())
    with pytest.raises(InputError):
        tomogram_picks_figure(np.zeros((4, 4)), None)


def test_table_escapes_every_cell():
    html = table(["a<b", "n"], [[EVIL, 0.123456], [None, 3]])
    assert EVIL not in html and escape(EVIL) in html
    assert ">0.1235<" in html and ">n/a<" in html and ">3<" in html


def test_cli_report(tmp_path, capsys):
    root = make_demo_folder(tmp_path / "demo")
    assert main(["report", str(root)]) == 0
    assert (root / "report.html").stat().st_size > 10_000
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(root / "average"), "--out", str(out)]) == 0
    assert out.is_file() and "Subtomogram average" in out.read_text()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "nope").exists()
