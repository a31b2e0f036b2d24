"""CLI of the foundation: version, help everywhere, structures list/show, and bad input -> one line, exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryomine.cli import main
from cryomine.cli.app import app
from cryomine.io import read_mrc

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _commands(group, prefix=()):
    """Every command path of the typer app, e.g. ('structures', 'show')."""
    import typer.main

    cmd = typer.main.get_command(group)
    stack = [(prefix, cmd)]
    while stack:
        path, c = stack.pop()
        yield path
        for name, sub in getattr(c, "commands", {}).items():
            stack.append((path + (name,), sub))


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cryomine ") and out.strip().split()[1][0].isdigit()


def test_help_on_every_subcommand(capsys):
    paths = list(_commands(app))
    assert ("structures", "show") in paths and ("structures", "list") in paths
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        assert "Usage" in capsys.readouterr().out


def test_structures_list_json(capsys):
    assert main(["structures", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ids = {r["id"] for r in rows}
    assert {"1bxn", "3j9i", "4v4r"} <= ids
    assert {r["source"] for r in rows} == {"pdb", "map"}
    # the printed metadata is the library's, and that of a fresh computation from the shipped data
    from cryomine.structures import list_structures
    from cryomine.structures.library import compute_info

    assert rows == [info.to_dict() for info in list_structures()]
    by_id = {r["id"]: r for r in rows}
    for sid in ("1f4a", "3qm1"):  # one map, one atomic model
        assert by_id[sid] == compute_info(sid).to_dict()


def test_structures_show_writes_centred_map(tmp_path):
    out = tmp_path / "3qm1.mrc"
    assert main(["structures", "show", "3qm1", "--voxel-size", "12", "--out", str(out)]) == 0
    vol = read_mrc(out)
    assert vol.voxel_size_a == pytest.approx(12.0)
    d = vol.data
    com = np.array([(d.sum(axis=tuple(j for j in range(3) if j != i)) * np.arange(d.shape[i])).sum() for i in range(3)]) / d.sum()
    assert np.allclose(com, np.array(d.shape) // 2, atol=0.6)


def test_structures_show_accepts_a_file(tmp_path):
    src = tmp_path / "in.mrc"
    data = np.zeros((20, 24, 22), np.float32)
    data[8:12, 10:14, 9:13] = 1.0
    with mrcfile.new(src) as m:
        m.set_data(data)
        m.voxel_size = 10.0
    out = tmp_path / "out.mrc"
    assert main(["structures", "show", str(src), "--voxel-size", "10", "--out", str(out)]) == 0
    assert read_mrc(out).data.sum() == pytest.approx(data.sum(), rel=0.05)


def _bad_files(tmp: Path) -> dict[str, Path]:
    good = tmp / "good.mrc"
    with mrcfile.new(good) as m:
        m.set_data(np.random.default_rng(0).random((16, 16, 16), dtype=np.float32))
        m.voxel_size = 10.0
    truncated = tmp / "truncated.mrc"
    truncated.write_bytes(good.read_bytes()[:3000])
    garbage = tmp / "garbage.mrc"
    garbage.write_bytes(b"this is not an MRC file" * 100)
    nan = tmp / "nan.mrc"
    arr = np.ones((16, 16, 16), np.float32)
    arr[3, 4, 5] = np.nan
    with mrcfile.new(nan) as m:
        m.set_data(arr)
    flat = tmp / "flat.mrc"
    with mrcfile.new(flat) as m:
        m.set_data(np.ones((16, 16), np.float32))
    empty_pdb = tmp / "empty.pdb"
    empty_pdb.write_text("HEADER    NOTHING HERE\nEND\n")
    corrupt_cif = tmp / "corrupt.cif"
    corrupt_cif.write_text("data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1 2 3 4 5\n'unterminated\n")
    return {
        "missing": tmp / "missing.mrc",
        "truncated": truncated,
        "garbage": garbage,
        "nan": nan,
        "2-D": flat,
        "no atoms": empty_pdb,
        "corrupt mmCIF": corrupt_cif,
    }


@pytest.mark.parametrize("case", ["missing", "truncated", "garbage", "nan", "2-D", "no atoms", "corrupt mmCIF"])
def test_bad_structure_files_one_line_exit_2(tmp_path, capsys, case):
    bad = _bad_files(tmp_path)[case]
    out = tmp_path / "out" / "x.mrc"
    assert main(["structures", "show", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and bad.name in err, err
    assert "Traceback" not in err
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["structures", "show", "1bxn", "--voxel-size", "0"], "voxel size"),
        (["structures", "show", "no_such_id", "--voxel-size", "10"], "unknown structure id 'no_such_id'"),
    ],
)
def test_bad_parameters_one_line_exit_2(tmp_path, capsys, args, needle):
    out = tmp_path / "x.mrc"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err, err
    assert not out.exists()


def test_console_script_exit_code_and_no_traceback(tmp_path):
    """The installed entry point (not just main()) prints one line and exits 2."""
    exe = Path(sys.executable).parent / "cryomine"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    proc = subprocess.run([str(exe), "structures", "show", str(tmp_path / "nope.pdb"), "--out", str(tmp_path / "o.mrc")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.pdb" in proc.stderr and "Traceback" not in proc.stderr


def test_real_relion5_stack_shows_through_cli(tmp_path, capsys):
    """A real WarpTools/RELION 5 particle file read through the same MRC path the CLI uses."""
    stack = SHARED / "realdata/relion5_warptools/warptools_test_4-tomos_10-ptcls_box-32_angpix-12/Unt_050/Unt_050_12.00A_000001.mrcs"
    if not stack.exists():
        pytest.skip("../shared/realdata not present")
    vol = read_mrc(stack, allow_stack=True)
    assert vol.data.shape[1:] == (32, 32) and vol.voxel_size_a == pytest.approx(12.0)
    copy = tmp_path / "stack.mrc"
    shutil.copy(stack, copy)
    assert main(["structures", "show", str(copy), "--voxel-size", "12", "--out", str(tmp_path / "o.mrc")]) == 0
