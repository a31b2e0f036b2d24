"""Broken inputs of every kind a reader meets, generated from good files (issue 17, item 5).

Used by the standing audit (``tests/test_audit.py``) and by ``scripts/audit_replay.py``, which replays the cases
of the bad-input audit report. Each maker writes one broken file and returns its path; the file names are the
report's (``./bad/<name>``).

- MRC (``(d, h, w)`` float32 volumes): truncated, random bytes, NaN/inf voxels, 2-D, a stack, a header claiming
  a huge or negative size, complex values, voxel size 0, a sparse file of 32 GiB.
- Atomic models: empty, random bytes, no atoms, NaN coordinates, coordinates far apart, a corrupt gzip.
- STAR: a header with no rows.
- OME-Zarr: anisotropic or unitless scales, a NaN voxel, a corrupt chunk, attributes that are not JSON.
- Subtomogram HDF5 (``prefix`` "" from a plain dataset, "tr_" from one with ground truth): a missing array,
  boxes of the wrong rank or not cubic, strings for numbers, NaN/inf voxels, a header count the arrays do not
  hold.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import zarr

from cryomine.io.omezarr import write_omezarr

VALID_ATOM = "ATOM      1  CA  ALA A   1      {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C\n"


def _atoms(coords: list[tuple[float, float, float]]) -> str:
    return "".join(VALID_ATOM.format(x=x, y=y, z=z).replace("ATOM      1", f"ATOM  {i + 1:5d}")
                   for i, (x, y, z) in enumerate(coords)) + "END\n"


def _mrc(path: Path, data: np.ndarray, voxel_size: float = 10.0) -> Path:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.voxel_size = voxel_size
    return path


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _patch_header(path: Path, **fields: int) -> Path:
    with mrcfile.open(path, mode="r+", permissive=True) as m:
        for k, v in fields.items():
            m.header[k] = v
    return path


def make_mrc_files(out: Path, good_mrc: Path) -> dict[str, Path]:
    """Broken MRC files in ``out``, derived from ``good_mrc`` where a real file is needed."""
    out.mkdir(parents=True, exist_ok=True)
    raw = good_mrc.read_bytes()
    files: dict[str, Path] = {}
    nan = _noise((24, 24, 24))
    nan[3, 4, 5] = np.nan
    files["nan_sub.mrc"] = _mrc(out / "nan_sub.mrc", nan)
    inf = _noise((24, 24, 24), 1)
    inf[0, 0, 0] = np.inf
    files["inf_sub.mrc"] = _mrc(out / "inf_sub.mrc", inf)
    (out / "trunc_sub.mrc").write_bytes(raw[: max(1100, len(raw) // 2)])
    files["trunc_sub.mrc"] = out / "trunc_sub.mrc"
    files["2d_sub.mrc"] = _mrc(out / "2d_sub.mrc", _noise((24, 24)))
    with mrcfile.new(out / "stack4d.mrc", overwrite=True) as m:
        m.set_data(_noise((2, 12, 12, 12)))
    files["stack4d.mrc"] = out / "stack4d.mrc"
    files["hugehdr.mrc"] = _patch_header(_mrc(out / "hugehdr.mrc", _noise((8, 8, 8))), nx=100000, ny=100000, nz=100000)
    files["neghdr.mrc"] = _patch_header(_mrc(out / "neghdr.mrc", _noise((8, 8, 8))), nx=-8)
    (out / "random.mrc").write_bytes(np.random.default_rng(3).bytes(4096))
    files["random.mrc"] = out / "random.mrc"
    files["complex.mrc"] = _mrc(out / "complex.mrc", (_noise((16, 16, 16)) + 1j * _noise((16, 16, 16), 2)).astype(np.complex64))
    files["vs0_sub.mrc"] = _mrc(out / "vs0_sub.mrc", _noise((24, 24, 24)), voxel_size=0.0)
    with mrcfile.open(good_mrc, permissive=True) as m:
        tomo = np.asarray(m.data, dtype=np.float32)
    files["vs0_tomo.mrc"] = _mrc(out / "vs0_tomo.mrc", tomo, voxel_size=0.0)
    files["sparse_huge.mrc"] = sparse_huge_mrc(out / "sparse_huge.mrc")
    return files


def make_zarr_files(out: Path) -> dict[str, Path]:
    """Broken OME-Zarr images: anisotropic or unitless scales, a NaN voxel, a chunk overwritten with random
    bytes, attributes that are not JSON."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("aniso.zarr", "nounit.zarr", "nan.zarr", "chunk.zarr", "attrs.zarr"):
        files[name] = write_omezarr(out / name, _noise((20, 24, 24), 6), 10.0, levels=2, chunks=16)
    for name, edit in (("aniso.zarr", lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(scale=[20.0, 10.0, 10.0])),
                       ("nounit.zarr", lambda ms: [a.pop("unit") for a in ms["axes"]])):
        attrs = json.loads((out / name / ".zattrs").read_text())
        edit(attrs["multiscales"][0])
        (out / name / ".zattrs").write_text(json.dumps(attrs))
    zarr.open_array(str(out / "nan.zarr" / "0"), mode="r+")[3, 4, 5] = np.nan
    (out / "chunk.zarr" / "0" / "0.0.0").write_bytes(np.random.default_rng(7).bytes(500))
    (out / "attrs.zarr" / ".zattrs").write_text('{"multiscales": [')
    return files


def sparse_huge_mrc(path: Path, edge: int = 2048) -> Path:
    """A valid MRC header claiming ``edge``³ float32 voxels (32 GiB at 2048) over a sparse file: no disk used."""
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.zeros((1, 1, 1), np.float32))
        m.header.nx = m.header.ny = m.header.nz = edge
        m.header.mx = m.header.my = m.header.mz = edge
        m.voxel_size = 10.0
    with open(path, "r+b") as fh:
        fh.truncate(1024 + 4 * edge**3)
    return path


def make_model_files(out: Path) -> dict[str, Path]:
    """Broken atomic models (PDB, mmCIF, gzip)."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "empty.pdb": "",
        "noatoms.pdb": "REMARK   1 NOTHING HERE\nEND\n",
        "badcoord.pdb": VALID_ATOM.format(x=1.0, y=2.0, z=3.0).replace("   1.000", "     nan", 1) + "END\n",
        "hugecoord.pdb": _atoms([(0.0, 0.0, 0.0), (9999.0, 9999.0, 9999.0)]),
        "wide.pdb": _atoms([(-9999.0, 0.0, 0.0), (9999.0, 0.0, 0.0), (0.0, 9999.0, 0.0), (0.0, 0.0, -9999.0)]),
    }
    files = {}
    for name, text in texts.items():
        (out / name).write_text(text)
        files[name] = out / name
    (out / "random.pdb").write_bytes(np.random.default_rng(4).bytes(3000))
    files["random.pdb"] = out / "random.pdb"
    (out / "corrupt.pdb.gz").write_bytes(gzip.compress(texts["hugecoord.pdb"].encode())[:40])
    files["corrupt.pdb.gz"] = out / "corrupt.pdb.gz"
    cif = ("data_huge\nloop_\n_atom_site.group_PDB\n_atom_site.id\n_atom_site.type_symbol\n_atom_site.label_atom_id\n"
           "_atom_site.label_comp_id\n_atom_site.label_asym_id\n_atom_site.label_seq_id\n_atom_site.Cartn_x\n"
           "_atom_site.Cartn_y\n_atom_site.Cartn_z\n_atom_site.occupancy\n_atom_site.B_iso_or_equiv\n"
           "ATOM 1 C CA ALA A 1 0.0 0.0 0.0 1.0 0.0\nATOM 2 C CA ALA A 2 1.0e8 1.0e8 1.0e8 1.0 0.0\n")
    (out / "hugecoord.cif").write_text(cif)
    files["hugecoord.cif"] = out / "hugecoord.cif"
    return files


def make_star_files(out: Path, good_star: Path | None = None) -> dict[str, Path]:
    """Broken particle STAR files: no rows, a NaN coordinate, random bytes; with ``good_star``, it cut mid-row."""
    out.mkdir(parents=True, exist_ok=True)
    head = "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
    (out / "norows.star").write_text(head + "_rlnAngleRot #4\n_rlnAngleTilt #5\n_rlnAnglePsi #6\n")
    (out / "nan.star").write_text(head + "10 12 8\nnan 12 8\n")
    (out / "random.star").write_bytes(np.random.default_rng(5).bytes(2000))
    names = ["norows.star", "nan.star", "random.star"]
    if good_star is not None:
        text = good_star.read_text().rstrip()
        (out / "trunc.star").write_text(text[: len(text) - len(text.splitlines()[-1]) // 2])  # mid-row
        names.append("trunc.star")
    return {n: out / n for n in names}


def _replace(f: h5py.File, key: str, value: np.ndarray) -> None:
    del f[key]
    f.create_dataset(key, data=value)


H5Edit = Callable[[h5py.File], None]


def _h5_edits() -> dict[str, H5Edit]:
    def nan(f: h5py.File) -> None:
        x = f["subtomograms"][...]
        x[1, 2, 3, 4] = np.nan
        _replace(f, "subtomograms", x)

    def inf(f: h5py.File) -> None:
        x = f["subtomograms"][...]
        x[0, 0, 0, 0] = np.inf
        _replace(f, "subtomograms", x)

    def nan_trainrow(f: h5py.File) -> None:  # the first row: in the training split of any seeded split of 20
        x = f["subtomograms"][...]
        x[:, 5, 5, 5] = np.where(np.arange(len(x)) == 0, np.nan, x[:, 5, 5, 5])
        _replace(f, "subtomograms", x)

    def setattr_(value: int) -> H5Edit:
        def edit(f: h5py.File) -> None:
            f.attrs["n_written"] = value
        return edit

    def drop(key: str) -> H5Edit:
        def edit(f: h5py.File) -> None:
            del f[key]
        return edit

    return {
        "nokey_subtomos": drop("subtomograms"),
        "nokey_mask": drop("target_mask"),
        "nokey_density": drop("target_density"),
        "wrongshape": lambda f: _replace(f, "subtomograms", f["subtomograms"][:, 0]),
        "nocube": lambda f: _replace(f, "subtomograms", f["subtomograms"][..., :-4]),
        "strdata": lambda f: _replace(f, "subtomograms", np.full(f["subtomograms"].shape[:2], b"a", "S1")),
        "nan": nan,
        "inf": inf,
        "nan_trainrow": nan_trainrow,
        "badattr_nwritten": setattr_(999),
        "negattr_nwritten": setattr_(-5),
    }


def make_h5_files(out: Path, good_h5: Path, prefix: str = "") -> dict[str, Path]:
    """Broken subtomogram datasets ``<prefix><kind>.h5`` derived from ``good_h5`` (keys it lacks are skipped)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    with h5py.File(good_h5, "r") as f:
        keys = set(f.keys())
    for kind, edit in _h5_edits().items():
        if kind.startswith("nokey_") and {"nokey_mask": "target_mask", "nokey_density": "target_density"}.get(kind, "subtomograms") not in keys:
            continue
        dst = out / f"{prefix}{kind}.h5"
        shutil.copyfile(good_h5, dst)
        with h5py.File(dst, "r+") as f:
            edit(f)
        files[dst.name] = dst
    return files


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file and folder under ``root`` (symlinks not followed)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            snap[str(p.relative_to(root))] = (st.st_size if not p.is_dir() else 0, st.st_mtime_ns if not p.is_dir() else 0)
    return snap
