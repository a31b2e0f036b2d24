"""The standing bad-input audit (issue 17, item 5): every command against generated broken inputs of every kind
it reads, and every numeric option of every command against nonsense values.

Each case must give exit 2, exactly one line ``error: ...`` naming the broken file or the option, no traceback,
and leave the output folder as it was. The broken files come from :mod:`broken_inputs` (the kinds of the audit
report, not only its instances); the options are found by walking the CLI, so a new command or option is
audited without editing this file.
"""

from __future__ import annotations

import shutil
import typing
from pathlib import Path

import pytest
import typer

from broken_inputs import make_h5_files, make_model_files, make_mrc_files, make_star_files, make_zarr_files, tree_snapshot
from cryomine.cli import app, main


def _run(argv: list[str]) -> None:
    assert main(argv) == 0, argv


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """Small valid inputs (built with the commands themselves) and broken ones derived from them."""
    d = tmp_path_factory.mktemp("fx")
    _run(["simulate", "tomogram", str(d / "tomo.mrc"), "--shape", "24,40,40", "--particles", "3",
          "--structures", "1bxn,3gl1", "--seed", "1", "--snr", "1"])  # fmt: skip
    _run(["simulate", "subtomograms", str(d / "tr.h5"), "--per-class", "10", "--size", "16", "--structures", "1bxn,3gl1", "--seed", "2"])
    _run(["train", str(d / "tr.h5"), "--out", str(d / "run"), "--epochs", "1", "--batch-size", "4",
          "--base-channels", "4", "--fc-units", "16", "--no-bf16"])  # fmt: skip
    _run(["structures", "show", "1bxn", "--out", str(d / "1bxn.mrc")])
    (d / "project").mkdir()  # a folder-of-tomograms project ('cryomine run')
    for name in ("tomo.mrc", "tomo.json"):
        shutil.copy(d / name, d / "project" / name)
    bad = d / "bad"
    files = {**make_mrc_files(bad, d / "tomo.mrc"), **make_model_files(bad), **make_star_files(bad, d / "tomo.star"),
             **make_h5_files(bad, d / "tr.h5"), **make_zarr_files(bad)}
    return d, files


MRC_KINDS = ("nan_sub.mrc", "inf_sub.mrc", "trunc_sub.mrc", "2d_sub.mrc", "stack4d.mrc", "hugehdr.mrc", "neghdr.mrc",
             "random.mrc", "complex.mrc", "sparse_huge.mrc")
MODEL_KINDS = ("empty.pdb", "noatoms.pdb", "badcoord.pdb", "wide.pdb", "random.pdb", "corrupt.pdb.gz", "hugecoord.cif")
H5_KINDS = ("nokey_subtomos.h5", "nokey_mask.h5", "nokey_density.h5", "wrongshape.h5", "nocube.h5", "strdata.h5",
            "nan.h5", "inf.h5", "nan_trainrow.h5", "badattr_nwritten.h5", "negattr_nwritten.h5")
STAR_KINDS = ("norows.star", "nan.star", "trunc.star", "random.star")
ZARR_KINDS = ("aniso.zarr", "nounit.zarr", "nan.zarr", "chunk.zarr", "attrs.zarr")
# readers that memory-map a tomogram process a valid huge one slab by slab instead of refusing it; the atlas
# reads only the tomogram's grid, so NaN voxels do not concern it
MAPPED_KINDS = tuple(k for k in MRC_KINDS if k != "sparse_huge.mrc")
GRID_KINDS = tuple(k for k in MRC_KINDS if k not in ("nan_sub.mrc", "inf_sub.mrc"))

# command templates: X = the broken file, OUT = the output folder, FX = the fixtures folder
READERS: list[tuple[str, tuple[str, ...], list[str]]] = [
    ("show", MRC_KINDS + MODEL_KINDS, ["structures", "show", "X", "--out", "OUT/x.mrc"]),
    ("simulate", MRC_KINDS + MODEL_KINDS, ["simulate", "subtomograms", "OUT/d.h5", "--per-class", "1", "--size", "16", "--structures", "X"]),
    ("fsc", MRC_KINDS, ["fsc", "X", "FX/1bxn.mrc", "--out", "OUT/f.csv"]),
    ("pick", MRC_KINDS + ("vs0_tomo.mrc",) + ZARR_KINDS, ["pick", "X", "--method", "dog", "--radius", "40", "--out", "OUT/p.star"]),
    ("extract", MAPPED_KINDS + ("vs0_tomo.mrc",) + ZARR_KINDS, ["extract", "X", "FX/tomo.star", "--size", "16", "--out", "OUT/e.h5"]),
    ("extract-star", STAR_KINDS, ["extract", "FX/tomo.mrc", "X", "--size", "16", "--out", "OUT/e.h5"]),
    ("atlas", GRID_KINDS, ["atlas", "X", "FX/tomo.star", "--out", "OUT/a.mrc"]),
    ("atlas-star", STAR_KINDS, ["atlas", "FX/tomo.mrc", "X", "--out", "OUT/a.mrc"]),
    ("average-star", STAR_KINDS, ["average", "X", "--tomogram", "FX/tomo.mrc", "--box", "16", "--iterations", "1",
                                  "--angular-step", "45", "-q", "--out", "OUT/avg"]),
    ("evaluate-picks", STAR_KINDS, ["evaluate-picks", "X", "FX/tomo.star"]),
    ("info", H5_KINDS[:6] + H5_KINDS[9:], ["dataset", "info", "X"]),
    ("train", H5_KINDS, ["train", "X", "--out", "OUT/run", "--epochs", "1", "--base-channels", "4", "--fc-units", "16"]),
    ("evaluate", H5_KINDS, ["evaluate", "FX/run", "X", "--split", "all"]),
    ("predict", H5_KINDS, ["predict", "FX/run", "X", "--out", "OUT/pred"]),
    ("discover", H5_KINDS, ["discover", "FX/run", "X", "--out", "OUT/disc"]),
    ("average", H5_KINDS, ["average", "X", "--iterations", "1", "--angular-step", "45", "-q", "--out", "OUT/avg"]),
]
CASES = [pytest.param(argv, kind, id=f"{name}-{kind}") for name, kinds, argv in READERS for kind in kinds]


def _argv(template: list[str], d: Path, out: Path, x: str) -> list[str]:
    return [a.replace("OUT", str(out)).replace("FX", str(d)).replace("X", x) if a != "-q" else a for a in template]


def _refused(argv: list[str], out: Path, capsys, needle: str) -> None:
    out.mkdir(exist_ok=True)
    before = tree_snapshot(out)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, code, err)
    assert err.startswith("error: ") and err.count("\n") == 0 and "Traceback" not in err, err
    assert needle in err, (needle, err)
    assert tree_snapshot(out) == before, "the output folder changed"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("template, kind", CASES)
def test_every_reader_refuses_every_broken_file(fx, tmp_path, capsys, template, kind):
    d, files = fx
    x = files[kind]
    _refused(_argv(template, d, tmp_path / "out", str(x)), tmp_path / "out", capsys, x.name)


def _commands() -> list[tuple[tuple[str, ...], object]]:
    def walk(c, path=()):
        subs = getattr(c, "commands", None)
        if subs:
            for n, sub in subs.items():
                yield from walk(sub, (*path, n))
        else:
            yield path, c

    return list(walk(typer.main.get_command(app)))


def _is(annotation, kind) -> bool:
    return annotation is kind or kind in typing.get_args(annotation)


# a valid base command line for each command: a nonsense option value appended must be refused before any work
BASE = {
    "average": ["average", "FX/tr.h5", "--iterations", "1", "--angular-step", "45", "-q", "--out", "OUT/avg"],
    "fsc": ["fsc", "FX/1bxn.mrc", "FX/1bxn.mrc"],
    "convert": ["convert", "FX/tomo.star", "--out", "OUT/c.star"],
    "copick export": ["copick", "export", "FX/tomo.star", "--config", "FX/copick.json", "--run", "TS_001", "--voxel-size", "10"],
    "copick import": ["copick", "import", "--config", "FX/copick.json", "--run", "TS_001", "--voxel-size", "10", "--out", "OUT/c.star"],
    "demo": ["demo", "--out", "OUT/demo"],
    "discover": ["discover", "FX/run", "FX/tr.h5", "--out", "OUT/disc"],
    "evaluate": ["evaluate", "FX/run", "FX/tr.h5"],
    "predict": ["predict", "FX/run", "FX/tr.h5", "--out", "OUT/pred"],
    "pick": ["pick", "FX/tomo.mrc", "--template", "1bxn", "--angular-step", "60", "--out", "OUT/p.star"],
    "extract": ["extract", "FX/tomo.mrc", "FX/tomo.star", "--size", "16", "--out", "OUT/e.h5"],
    "atlas": ["atlas", "FX/tomo.mrc", "FX/tomo.star", "--out", "OUT/a.mrc"],
    "evaluate-picks": ["evaluate-picks", "FX/tomo.star", "FX/tomo.star"],
    "report": ["report", "FX/run", "--out", "OUT/r.html"],
    "run": ["run", "FX/project", "--out", "OUT/proj", "--workers", "0", "-q"],
    "train": ["train", "FX/tr.h5", "--out", "OUT/run", "--epochs", "1", "--base-channels", "4", "--fc-units", "16"],
    "train-picker": ["train-picker", "FX/tomo.mrc", "--out", "OUT/picker", "--epochs", "1", "--tile-vox", "16"],
    "simulate subtomograms": ["simulate", "subtomograms", "OUT/d.h5", "--per-class", "1", "--size", "16", "--structures", "1bxn"],
    "simulate tomogram": ["simulate", "tomogram", "OUT/t.mrc", "--shape", "24,40,40", "--particles", "2", "--structures", "1bxn"],
    "dataset info": ["dataset", "info", "FX/tr.h5"],
    "structures list": ["structures", "list"],
    "structures show": ["structures", "show", "1bxn", "--out", "OUT/x.mrc"],
}
# (command, option): values that are meaningful there and so not nonsense
ALLOWED = {("simulate subtomograms", "--snr", "inf"), ("simulate tomogram", "--snr", "inf")}


def _option_cases() -> list:
    cases = []
    for path, cmd in _commands():
        name = " ".join(path)
        for p in cmd.params:
            opts = getattr(p, "opts", None) or []
            if not opts or not opts[0].startswith("--"):
                continue
            ann = p.type_descriptor.annotation
            values = ("nan", "inf", "-inf") if _is(ann, float) else ("-5", "1000000000000") if _is(ann, int) else ()
            cases += [pytest.param(name, opts[0], v, id=f"{name}{opts[0]}={v}") for v in values if (name, opts[0], v) not in ALLOWED]
    return cases


OPTION_CASES = _option_cases()

# ints for which a large value is a sensible request rather than nonsense (capped elsewhere, e.g. by the data)
LARGE_OK = {"--top-n", "--max-particles", "--max-train", "--max-picks", "--patience", "--random-phase-seed", "--seed",
            "--tile-size"}


def test_every_command_has_a_base_command_line():
    assert {" ".join(p) for p, _ in _commands()} == set(BASE)
    assert len(OPTION_CASES) > 100  # the walk found the options


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command, option, value", OPTION_CASES)
def test_every_numeric_option_refuses_nonsense(fx, tmp_path, capsys, command, option, value):
    if value == "1000000000000" and option in LARGE_OK:
        pytest.skip("a large value is a sensible request here")
    d, _ = fx
    out = tmp_path / "out"
    argv = [*_argv(BASE[command], d, out, "X"), option, value]
    _refused(argv, out, capsys, option.split("/")[0])
