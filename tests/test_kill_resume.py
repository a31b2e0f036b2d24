"""Real kills (SIGKILL: nothing can clean up) of the long commands, then ``--resume``: the result equals an
uninterrupted run and no temporary file survives (issue 17, item 4). The in-process interruption tests of each
command (Ctrl-C at a chosen call) are in their own test files; these run ``cryomine`` as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cryomine.io import read_mrc
from cryomine.io.subtomo_h5 import read_rows

CLI = [sys.executable, "-c", "import sys; from cryomine.cli import main; sys.exit(main(sys.argv[1:]))"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HDF5_USE_FILE_LOCKING": "FALSE"}


def _run(args: list[str], cwd: Path) -> None:
    p = subprocess.run([*CLI, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


def _kill_when(args: list[str], cwd: Path, ready, timeout: float = 240.0) -> None:
    """Start ``cryomine ARGS``, SIGKILL it as soon as ``ready()`` holds (polled); fail if it finished first."""
    proc = subprocess.Popen([*CLI, *args], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while not ready():
            assert proc.poll() is None, "the command finished before it could be killed: make the job longer"
            assert time.monotonic() - t0 < timeout
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def _no_temp_files(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".creating")]
    assert left == [], left


@pytest.mark.timeout(600)
def test_simulate_killed_while_writing_resumes_to_the_uninterrupted_dataset(tmp_path):
    args = ["--per-class", "12", "--size", "16", "--structures", "1bxn,3gl1", "--batch-size", "2", "--seed", "4"]
    _run(["simulate", "subtomograms", "whole.h5", *args], tmp_path)

    def some_rows() -> bool:
        try:
            import h5py

            with h5py.File(tmp_path / "part.h5", "r", locking=False) as f:
                return 4 <= int(f.attrs["n_written"]) < 20
        except (OSError, KeyError):
            return False

    _kill_when(["simulate", "subtomograms", "part.h5", *args], tmp_path, some_rows)
    _run(["simulate", "subtomograms", "part.h5", *args, "--resume"], tmp_path)
    fields = ("subtomograms", "target_mask", "class_id", "eulers_zyz")
    a, b = read_rows(tmp_path / "whole.h5", fields), read_rows(tmp_path / "part.h5", fields)
    for name in fields:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    _no_temp_files(tmp_path)


@pytest.mark.timeout(600)
def test_train_killed_in_an_epoch_resumes_to_the_uninterrupted_weights(blob_dataset_factory, tmp_path):
    ds = blob_dataset_factory("kill16", n_per_class=24, size=16, n_classes=3)
    args = ["--base-channels", "4", "--fc-units", "16", "--batch-size", "4", "--seed", "3", "--no-bf16", "--num-threads", "1"]
    _run(["train", str(ds), "--out", "whole", "--epochs", "3", *args], tmp_path)
    _kill_when(["train", str(ds), "--out", "part", "--epochs", "3", *args], tmp_path,
               lambda: (tmp_path / "part" / "last.pt").exists())  # killed in epoch 2 (or writing epoch 1's record)
    _run(["train", str(ds), "--out", "part", "--epochs", "3", "--resume"], tmp_path)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model_state"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _no_temp_files(tmp_path / "part")


@pytest.mark.timeout(600)
def test_average_killed_between_iterations_resumes_to_the_uninterrupted_map(blob_dataset_factory, tmp_path):
    ds = blob_dataset_factory("killavg", n_per_class=10, size=16, n_classes=1)
    args = ["--iterations", "4", "--angular-step", "30", "-q", "--seed", "2"]
    _run(["average", str(ds), "--out", "whole", *args], tmp_path)
    _kill_when(["average", str(ds), "--out", "part", *args], tmp_path, lambda: (tmp_path / "part" / "checkpoint.npz").exists())
    _run(["average", str(ds), "--out", "part", *args, "--resume"], tmp_path)
    np.testing.assert_array_equal(read_mrc(tmp_path / "whole" / "average.mrc").data, read_mrc(tmp_path / "part" / "average.mrc").data)
    _no_temp_files(tmp_path / "part")
