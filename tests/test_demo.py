"""The demo runs end to end into a folder and refuses to overwrite it without --force."""

from __future__ import annotations

import json

from cryomine.cli import main
from cryomine.demo import DemoConfig, run_demo
from cryomine.io import read_mrc, read_particles


def test_demo_small_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    cfg = DemoConfig(structures=("3qm1", "1s3x"), per_class=1, tomogram_shape_zyx=(32, 64, 64), tomogram_particles=6)
    summary = run_demo(out, cfg)
    for name in ("structures.png", "subtomograms.h5", "subtomograms.png", "tomogram.mrc", "tomogram.star", "summary.json"):
        assert (out / name).is_file(), name
    assert summary["subtomograms"] == 2 and summary["tomogram_particles"] == 6
    assert read_mrc(out / "tomogram.mrc").data.shape == (32, 64, 64)
    assert len(read_particles(out / "tomogram.star").particles) == 6
    assert json.loads((out / "summary.json").read_text())["config"]["structures"] == ["3qm1", "1s3x"]
    # a second run into the same folder is refused without --force, and nothing is removed
    assert main(["demo", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "tomogram.mrc").is_file()
