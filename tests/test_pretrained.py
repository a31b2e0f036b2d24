"""Contract of the shipped DSM-Net models (``cryomine/pretrained/NAME/``, used as ``pretrained:NAME``).

Each one loads (weights only), records how it was trained, and on boxes simulated here with a fresh seed at the SNR
it was trained for reproduces the test accuracy its ``training.json`` records, within binomial error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cryomine.errors import InputError
from cryomine.evaluate.evaluate import evaluate_run
from cryomine.simulate.config import DSMNET_CLASSES, build_dataset_config
from cryomine.simulate.subtomograms import simulate_subtomograms
from cryomine.train import resolve_run, shipped_pretrained

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dsmnet_models() -> list[str]:
    names = []
    for name in shipped_pretrained():
        cfg = json.loads((resolve_run(f"pretrained:{name}") / "config.json").read_text())
        if cfg.get("format") == "cryomine-run":
            names.append(name)
    return names


def test_dsmnet_a_and_the_picker_are_shipped_and_unknown_names_list_them() -> None:
    assert {"dsmnet-a", "picker"} <= set(shipped_pretrained())
    assert "dsmnet-a" in _dsmnet_models() and "picker" not in _dsmnet_models()
    with pytest.raises(InputError, match=r"unknown pretrained model 'nope' \(shipped: .*dsmnet-a"):
        resolve_run("pretrained:nope")


@pytest.mark.parametrize("name", _dsmnet_models())
def test_shipped_model_reproduces_its_recorded_test_accuracy_on_fresh_data(name: str, tmp_path: Path) -> None:
    folder = resolve_run(f"pretrained:{name}")
    record = json.loads((folder / "training.json").read_text())
    split = json.loads((folder / "split.json").read_text())
    assert record["split"]["test"] == len(split["test"]) > 0
    snr = float(record["data"]["imaging"]["snr"])
    cfg = build_dataset_config(preset="dsmnet-a", snr=snr, per_class=2, seed=987_001)
    data = simulate_subtomograms(tmp_path / "fresh.h5", cfg, progress=False)
    result = evaluate_run(f"pretrained:{name}", data, split="all")
    assert result["class_names"] == list(DSMNET_CLASSES)
    n = result["n_subtomograms"]
    assert n == 2 * len(DSMNET_CLASSES)
    expected = float(record["test_metrics"]["object_accuracy"])
    tolerance = 3 * math.sqrt(expected * (1 - expected) / n)
    assert abs(result["object_accuracy"] - expected) <= tolerance, (result["object_accuracy"], expected)
    assert abs(result["miou"] - float(record["test_metrics"]["miou"])) <= 0.05
