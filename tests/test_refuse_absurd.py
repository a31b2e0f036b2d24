"""Absurd or impossible jobs are refused before anything is written: one line naming the option, with the
estimate, exit 2, and an untouched output folder (issue 17, item 1)."""

from __future__ import annotations

import pytest

from cryomine.cli import main
from cryomine.resources import check_disk, check_memory, format_bytes
from faults import interrupted_on_call

BAD_PDB = "ATOM      1  CA  ALA A   1         nan   2.000   3.000  1.00  0.00           C\nEND\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["simulate", "subtomograms", "OUT/d.h5", "--per-class", "1000000000000", "--size", "24"], "--per-class/--total/--size: "),
        (["simulate", "subtomograms", "OUT/d.h5", "--per-class", "2", "--size", "2000"], "--size/--batch-size: "),
        (["simulate", "subtomograms", "OUT/d.h5", "--per-class", "2", "--size", "24", "--voxel-size", "1e-6"], "--voxel-size: "),
        (["simulate", "subtomograms", "OUT/d.h5", "--per-class", "2", "--size", "24", "--seed", "-1"], "--seed: "),
        (["simulate", "subtomograms", "OUT/d.h5", "--per-class", "2", "--size", "24", "--structures", "1bxn,BAD"], "bad.pdb: "),
        (["simulate", "tomogram", "OUT/t.mrc", "--shape", "2000,2000,2000"], "--shape: "),
        (["simulate", "tomogram", "OUT/t.mrc", "--shape", "20,30,40", "--seed", "-3"], "--seed: "),
        (["structures", "show", "BAD", "--out", "OUT/x.mrc"], "bad.pdb: "),
        (["structures", "show", "1bxn", "--voxel-size", "1e6", "--out", "OUT/x.mrc"], "--voxel-size: "),  # hung before
        (["pick", "TOMO", "--radius", "1e6", "--out", "OUT/p.star"], "--radius: "),  # hung before
        (["pick", "TOMO", "--template", "3gl1", "--tile-size", "1", "--no-ctf", "--tilt-min", "-60", "--tilt-max", "60",
          "--out", "OUT/p.star"], "--tile-size: "),
        (["pick", "TOMO", "--template", "3gl1", "--random-phase-correction", "--random-phase-seed", "-2", "--no-ctf", "--tilt-min", "-60",
          "--tilt-max", "60", "--out", "OUT/p.star"], "--random-phase-seed: "),
        (["pick", "TOMO", "--template", "3gl1", "--memory-gb", "0.05", "--no-ctf", "--tilt-min", "-60", "--tilt-max", "60",
          "--out", "OUT/p.star"], "--memory-gb: 0.05 GB cannot hold this search"),  # the whole run, not one tile
        (["pick", "TOMO", "--radius", "40", "--random-phase-correction", "--out", "OUT/p.star"], "are for template matching"),
        (["dataset", "info", "FIFO"], "fifo: not a regular file"),
        # outputs refused before the work, not after it (half-written siblings before):
        (["simulate", "tomogram", "TDIR", "--shape", "32,64,64", "--particles", "4", "--structures", "1bxn"], "is a folder, not a file"),
        (["pick", "TOMO", "--radius", "40", "--out", "PDIR"], "is a folder, not a file"),
        (["demo", "--out", "OUT/d", "--model", "OUT/zzz"], "run folder not found"),  # h5py waited on the pipe forever
        (["structures", "show", "1bxn", "--out", "AFILE/x.mrc"], "afile is a file, not a folder"),  # tracebacks before
        (["simulate", "subtomograms", "AFILE/d.h5", "--per-class", "1", "--size", "16", "--structures", "1bxn"], "afile is a file, not a folder"),
        (["structures", "show", "1bxn", "--out", "OUT"], "is a folder, not a file"),
        (["structures", "show", "CPLX", "--out", "OUT/x.mrc"], "holds complex values (MRC mode 4)"),  # imaginary part dropped before
        # accepted with exit 0 before:
        (["simulate", "subtomograms", "OUT/d.h5", "--per-class", "2", "--size", "16", "--tilt-step", "1000"], "--tilt-step: "),
        (["simulate", "tomogram", "OUT/t.mrc", "--particles", "4", "--shape", ""], "--shape: "),
        (["simulate", "subtomograms", "OUT/d.h5", "--per-class", "1", "--size", "16", "--tomogram-shape", ""], "--tomogram-shape: "),
        (["simulate", "tomogram", "OUT/t.mrc", "--particles", "1000000000", "--shape", "32,64,64", "--structures", "1bxn"], "--particles: "),
    ],
)
def test_refused_before_anything_is_written(tmp_path, capsys, args, needle):
    import numpy as np

    from cryomine.io import write_mrc

    (tmp_path / "bad.pdb").write_text(BAD_PDB)
    write_mrc(tmp_path / "tomo.mrc", np.random.default_rng(0).normal(size=(20, 24, 22)).astype(np.float32), 10.0)
    import os

    os.mkfifo(tmp_path / "fifo")
    out = tmp_path / "out"
    out.mkdir()
    import mrcfile

    (tmp_path / "afile").write_text("not a folder")
    with mrcfile.new(tmp_path / "cplx.mrc") as mrc:
        mrc.set_data(np.full((8, 9, 10), 1 + 2j, np.complex64))
    dirs = tmp_path / "dirs"
    (dirs / "t.mrc").mkdir(parents=True)
    (dirs / "p.star").mkdir()
    names = {"TDIR": dirs / "t.mrc", "PDIR": dirs / "p.star",
             "CPLX": tmp_path / "cplx.mrc", "AFILE": tmp_path / "afile", "FIFO": tmp_path / "fifo", "OUT": out,
             "BAD": tmp_path / "bad.pdb", "TOMO": tmp_path / "tomo.mrc"}
    argv = []
    for a in args:
        for key, value in names.items():
            a = a.replace(key, str(value))
        argv.append(a)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and needle in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in dirs.iterdir()) == ["p.star", "t.mrc"]  # no sibling outputs either


def test_estimates_are_stated_in_binary_units(tmp_path):
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(3.6 * 2**50) == "3.6 PiB" and format_bytes(12) == "12 B"
    with pytest.raises(Exception, match=r"--x: a job needs 1\.0 ZiB of memory"):
        check_memory(2.0**70, "a job", "--x")
    with pytest.raises(Exception, match=r"--y: a file needs 1\.0 EiB of disk"):
        check_disk(tmp_path / "deep" / "er" / "f.h5", 2.0**60, "a file", "--y")
    check_memory(1024, "a small job")  # fits: no error


@pytest.mark.parametrize(
    "args, needle",
    [
        (["simulate", "subtomograms", "x.h5", "--per-class", "abc"], "'--per-class'"),
        (["pick"], "Missing argument"),
        (["nosuch"], "No such command"),
        (["simulate", "subtomograms", "x.h5", "--bogus", "3"], "--bogus"),
    ],
)
def test_typers_own_errors_are_one_line_exit_2(capsys, args, needle):
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and needle in err, err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    import numpy as np

    import cryomine.pick.dog as dog
    from cryomine.io import write_mrc

    write_mrc(tmp_path / "t.mrc", np.random.default_rng(0).normal(size=(16, 20, 18)).astype(np.float32), 10.0)

    monkeypatch.setattr(dog, "pick_dog_file", interrupted_on_call(dog.pick_dog_file, 1))
    capsys.readouterr()
    assert main(["pick", str(tmp_path / "t.mrc"), "--radius", "50", "--out", str(tmp_path / "p.star")]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted: ") and err.count("\n") == 0, err


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from cryomine.simulate.config import build_dataset_config
    from cryomine.simulate.subtomograms import simulate_subtomograms

    path = tmp_path_factory.mktemp("ds") / "d.h5"
    return simulate_subtomograms(path, build_dataset_config(structures=("1bxn", "3gl1"), per_class=10, size=16, seed=1), progress=False)


def _copy(src, dst, edit):
    import shutil

    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def test_nan_rows_and_inflated_headers_are_refused(small_dataset, tmp_path, capsys):
    import numpy as np

    def poison(f):
        for name in ("subtomograms", "noise_free"):  # what plain and fresh-noise training read
            f[name][4, 3, 3, 3] = np.nan

    def inflate(f):
        f.attrs["n_written"] = 999
        f.attrs["n_planned"] = 999

    nan = _copy(small_dataset, tmp_path / "nan.h5", poison)
    big = _copy(small_dataset, tmp_path / "big.h5", inflate)
    capsys.readouterr()
    assert main(["train", str(nan), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nan.h5: " in err and "holds NaN or infinite voxels in 1 row(s), e.g. row(s) 4" in err and err.count("\n") == 0, err
    assert not (tmp_path / "run" / "best.pt").exists()
    assert main(["dataset", "info", str(big)]) == 2
    err = capsys.readouterr().err.strip()
    assert "big.h5: header says 999 rows are written but the file holds 20" in err, err


def test_report_says_what_it_could_not_read_and_draws_truth_without_picks(tmp_path, capsys):
    from cryomine.simulate.config import build_imaging_config
    from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram

    simulate_tomogram(tmp_path / "tomogram.mrc", TomogramConfig(shape_zyx=(24, 40, 40), particles=3, structures=("3gl1",),
                                                                imaging=build_imaging_config(snr=1.0)), progress=False)  # fmt: skip
    (tmp_path / "summary.json").write_text('{"figures": ')  # truncated
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0  # no picks: the truth alone is drawn (this crashed before)
    err = capsys.readouterr().err
    assert "warning: report: " in err and "summary.json: unreadable JSON" in err, err
    assert "Traceback" not in err and (tmp_path / "report.html").exists()


def test_memory_limits_of_ulimit_and_cgroup_count(monkeypatch):
    import resource

    from cryomine import resources

    mapped = open("/proc/self/status").read()
    vm = next(int(ln.split()[1]) * 1024 for ln in mapped.splitlines() if ln.startswith("VmSize:"))
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (vm + 2 * 2**30, resource.RLIM_INFINITY))
    assert 1.5 * 2**30 < resources.available_memory_bytes() <= 2 * 2**30  # ulimit -v minus what is mapped already
    monkeypatch.setattr(resources, "_address_space_available", lambda: None)
    monkeypatch.setattr(resources, "_cgroup_available", lambda: 123 * 2**20)
    assert resources.available_memory_bytes() == 123 * 2**20
    with pytest.raises(Exception, match=r"--box: averaging needs 1\.0 GiB of memory; 123\.0 MiB is available"):
        check_memory(2**30, "averaging", "--box")


def test_a_partial_dataset_is_named_by_its_readers(small_dataset, tmp_path):
    from cryomine.io.subtomo_h5 import read_header

    def cut(f):
        f.attrs["n_written"] = 7

    part = _copy(small_dataset, tmp_path / "part.h5", cut)
    with pytest.warns(Warning, match=r"part\.h5: partial dataset: 7 of 20 rows written"):
        assert read_header(part).n_written == 7


def test_a_diverging_training_stops_and_keeps_finished_epochs(small_dataset, tmp_path, monkeypatch):
    import torch

    import cryomine.train.loop as loop
    from cryomine.errors import InputError
    from cryomine.train.loop import load_checkpoint
    from cryomine.train.run import train_run

    calls = {"n": 0}
    original = loop.weighted_total

    def nan_in_epoch_2(terms, weights):  # the loss of a diverged step: NaN from the 6th step (epoch 2) on
        calls["n"] += 1
        total = original(terms, weights)
        return total * float("nan") if calls["n"] > 5 else total

    monkeypatch.setattr(loop, "weighted_total", nan_in_epoch_2)
    tiny = {"base_channels": 4, "fc_units": 16}
    with pytest.raises(InputError, match=r"training diverged \(epoch 2/3, step \d+: loss nan\)"):
        train_run(small_dataset, tmp_path / "run", model_options=tiny, train={"max_epochs": 3, "batch_size": 4, "bf16": False})
    kept = load_checkpoint(tmp_path / "run" / "last.pt")
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model_state"].values() if v.is_floating_point())
