"""The demo runs end to end (small settings) with the shipped model, and refuses to overwrite without --force."""

from __future__ import annotations

import json

from cryomine.cli import main
from cryomine.cli.demo import DemoConfig, run_demo
from cryomine.io import read_mrc, read_particles


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
    assert 0 < len(read_particles(out / "tomogram.star").particles) <= 10
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["n_subtomograms"] == 22 and 0.0 <= evaluation["object_accuracy"] <= 1.0
    html = (out / "report.html").read_text()
    assert "<img" in html and 'src="http' not in html
    assert json.loads((out / "summary.json").read_text())["config"]["known"] == ["3j9i", "1bxn"]
    assert 0.0 <= summary["figures"]["DoG picking F1 (localisation)"] <= 1.0
    # a second run into the same folder is refused without --force, and nothing is removed
    assert main(["demo", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "tomogram.mrc").is_file()
