"""Robustness measurement: fresh-seed data per imaging condition, evaluated like ``cryomine evaluate``; the report
draws it from the run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cryomine.errors import InputError
from cryomine.evaluate.evaluate import evaluate_run
from cryomine.evaluate.robustness import Condition, measure_robustness, write_robustness
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.report.build import build_report
from cryomine.simulate.config import build_dataset_config
from cryomine.simulate.subtomograms import simulate_subtomograms
from cryomine.train import train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust")
    cfg = build_dataset_config(structures=("1bxn", "4v4r"), per_class=10, size=16, snr=0.5, seed=4)
    data = simulate_subtomograms(root / "d.h5", cfg, progress=False)
    train_run(data, root / "run", model="dsmnet", model_options={"base_channels": 4, "fc_units": 16},
              train={"max_epochs": 1, "batch_size": 8, "bf16": False})
    return root / "run"


def test_rows_match_evaluate_and_the_data_has_the_condition(tiny_run: Path, tmp_path: Path) -> None:
    conds = (Condition("clean", math.inf), Condition("lamella", 0.2, defocus_um=3.0, tilt_min_deg=-54, tilt_max_deg=42),
             Condition("isolated", 0.2, crowding=0.0))
    rows = measure_robustness(tiny_run, tmp_path / "w", conditions=conds, per_class=3, seed=99)
    assert [r["kind"] for r in rows] == ["snr", "imaging", "imaging"] and rows[0]["snr"] == "inf"
    assert rows[2]["crowding"] == 0.0 and rows[0]["crowding"] is None
    files = sorted((tmp_path / "w").glob("*.h5"))
    assert len(files) == 3
    for row, path in zip(rows, [f for c in ("clean", "lamella", "isolated") for f in files if f.name.startswith(c)]):
        direct = evaluate_run(tiny_run, path, split="all")
        assert row["object_accuracy"] == direct["object_accuracy"] and row["miou"] == direct["miou"] and row["n"] == 6
    lam = [f for f in files if f.name.startswith("lamella")][0]
    header = read_header(lam)
    assert header.config["seed"] == 99 and header.config["imaging"]["tilt"]["max_deg"] == 42
    snr = read_rows(lam, ("snr_measured",))["snr_measured"]
    np.testing.assert_allclose(snr, 0.2, rtol=1e-4)
    isolated = [f for f in files if f.name.startswith("isolated")][0]
    assert read_header(isolated).config["crowding"]["volume_fraction"] == 0.0
    assert (read_rows(isolated, ("neighbour_classes",))["neighbour_classes"] == -1).all()  # the target alone
    assert (read_rows(lam, ("neighbour_classes",))["neighbour_classes"] >= 0).any()  # default crowding: neighbours
    stamp = {f: f.stat().st_mtime_ns for f in files}
    again = measure_robustness(tiny_run, tmp_path / "w", conditions=conds, per_class=3, seed=99)
    assert again == rows and stamp == {f: f.stat().st_mtime_ns for f in files}  # reused, not re-simulated
    with pytest.raises(InputError, match="per-class"):
        measure_robustness(tiny_run, tmp_path / "w", conditions=conds, per_class=0)


def test_report_draws_the_run_robustness(tiny_run: Path, tmp_path: Path) -> None:
    rows = [{"name": f"SNR {s}", "snr": s, "kind": "snr", "object_accuracy": a, "miou": 0.8, "n": 44, "seed": 1}
            for s, a in (("inf", 0.9), (0.1, 0.6), (0.01, 0.2))]
    write_robustness(tiny_run / "robustness.json", str(tiny_run), rows)
    try:
        html = build_report(tiny_run, tmp_path / "report.html").read_text()
    finally:
        (tiny_run / "robustness.json").unlink()
    assert "accuracy against SNR" in html and "Fresh-seed data per imaging condition" in html
    assert json.dumps(rows[1]["name"])[1:-1] in html
    html = build_report(tiny_run, tmp_path / "report2.html").read_text()
    assert "No robustness.json" in html
