"""The demo runs end to end (small settings) with the shipped model, and refuses to overwrite without --force."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from cryomine.cli import main
from cryomine.cli.demo import DemoConfig, run_demo
from cryomine.io import read_mrc, read_particles
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.structures import list_structures
from reference_metrics import max_matching, pick_scores, segmentation_scores, star_xyz


def test_demo_small_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    cfg = DemoConfig(known=("3j9i", "1bxn"), unseen="5gjv", per_class=1, tomogram_shape_zyx=(48, 112, 112),
                     tomogram_particles=10, average_iterations=1)  # fmt: skip
    summary = run_demo(out, cfg)
    for name in ("structures.png", "subtomograms.h5", "evaluation.json", "tomogram.mrc", "tomogram.star", "picks.star",
                 "picks_evaluation.json", "picks.h5", "predict_picks/predictions.star", "discover/summary.json",
                 "average/summary.json", "report.html", "summary.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert read_mrc(out / "tomogram.mrc").data.shape == (48, 112, 112)
    truth = read_particles(out / "tomogram.star").particles
    placed = json.loads((out / "tomogram.json").read_text())
    assert len(truth) == placed["particles_placed"] == placed["particles_requested"] == 10
    # the vesicle: one membrane, its mask written, and no particle centre inside its keep-out shell
    (vesicle,) = placed["membranes"]
    mask = read_mrc(out / "tomogram_membranes.mrc").data
    assert mask.max() == 1 and 0 < (mask > 0).mean() < 0.2
    centre = np.asarray(vesicle["centre_zyx"])
    dist = np.linalg.norm(truth[["rlnCoordinateZ", "rlnCoordinateY", "rlnCoordinateX"]].to_numpy() - centre, axis=1)
    assert (np.abs(dist - vesicle["radius_vox"]) > 2.5).all()
    html = (out / "report.html").read_text()
    assert "<img" in html and 'src="http' not in html
    assert json.loads((out / "summary.json").read_text())["config"]["known"] == ["3j9i", "1bxn"]

    # subtomogram scores recomputed from the demo's own predictions (predict/) against the dataset's truth
    evaluation = json.loads((out / "evaluation.json").read_text())
    header = read_header(out / "subtomograms.h5")
    rows = read_rows(out / "subtomograms.h5", ("class_id", "target_mask"))
    pred = pd.read_csv(out / "predict" / "predictions.csv")
    assert evaluation["n_subtomograms"] == len(pred) == header.n_written == 22
    true_names = np.asarray(header.class_names)[rows["class_id"][pred["row"]]]
    correct = int((pred["class_name"].to_numpy() == true_names).sum())
    assert evaluation["object_accuracy"] == pytest.approx(correct / 22, abs=1e-12)
    assert binom.sf(correct - 1, 22, 1 / len(header.class_names)) < 1e-3  # far above guessing among 22 classes
    masks = np.stack([read_mrc(out / "predict" / f).data for f in pred["mask_file"]])
    for key, value in segmentation_scores(masks, rows["target_mask"][pred["row"]]).items():
        assert evaluation[key] == pytest.approx(value, abs=1e-12), key
    assert summary["figures"]["subtomogram object accuracy"] == evaluation["object_accuracy"]
    assert summary["figures"]["subtomogram mIoU"] == evaluation["miou"]

    # picking scores recomputed from picks.star vs tomogram.star (hit: within half the true class's radius)
    names = truth["rlnClassName"].astype(str).to_numpy()
    diameter = {info.id: info.diameter_a for info in list_structures()}
    limit = np.array([0.5 * diameter[n] / 2 / 10.0 for n in names])
    picks, true_xyz = star_xyz(out / "picks.star"), star_xyz(out / "tomogram.star")
    loc = pick_scores(max_matching(picks, true_xyz, limit), len(picks), len(true_xyz))
    predicted = pd.read_csv(out / "predict_picks" / "predictions.csv").sort_values("row")
    assert list(predicted["row"]) == list(range(len(picks)))
    p_names = predicted["class_name"].astype(str).to_numpy()
    tp_class = sum(max_matching(picks[p_names == c], true_xyz[names == c], limit[names == c]) for c in set(names))
    loc_class = pick_scores(tp_class, len(picks), len(true_xyz))
    picks_eval = json.loads((out / "picks_evaluation.json").read_text())
    for key in ("localisation", "localisation_and_class"):
        want = loc if key == "localisation" else loc_class
        assert {k: picks_eval[key][k] for k in want} == pytest.approx(want, abs=1e-12), key
    assert summary["figures"]["DoG picking F1 (localisation)"] == pytest.approx(loc["f1"], abs=1e-12)
    assert summary["figures"]["DoG picking + DSM-Net class F1"] == pytest.approx(loc_class["f1"], abs=1e-12)
    learned = json.loads((out / "learned_picks_evaluation.json").read_text())  # the learned picker's picks, scored
    assert learned["n_picks"] == len(read_particles(out / "picks_learned.star").particles)
    assert summary["figures"]["learned picking class F1"] == learned["localisation_and_class"]["f1"]
    assert "learned multi-class picker" in (out / "report.html").read_text()
    # a second run into the same folder is refused without --force, and nothing is removed
    assert main(["demo", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "tomogram.mrc").is_file()
