"""Property-based fuzzing of the readers (issue 17, item 5): whatever bytes or structure a file holds, a reader
returns valid data or raises :class:`InputError`, never another exception.

Each property starts from a valid file and damages it the way files are damaged (truncated, bytes overwritten,
lines dropped or edited, arrays replaced); ``derandomize`` and a fixed ``max_examples`` keep the suite
deterministic and inside its time budget.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryomine.errors import InputError
from cryomine.io import read_mrc, write_mrc
from cryomine.io.em import read_em, write_em
from cryomine.io.star import make_particles, read_particles, write_particles
from cryomine.io.subtomo_h5 import read_header, read_rows

BUDGET = settings(max_examples=200, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# (offset, new bytes) overwrites, anywhere in a file of n bytes
edits = st.lists(st.tuples(st.integers(0, 2**16), st.binary(min_size=1, max_size=16)), min_size=0, max_size=6)


def _damage(raw: bytes, cut: int | None, patches: list[tuple[int, bytes]]) -> bytes:
    b = bytearray(raw if cut is None else raw[: cut % (len(raw) + 1)])
    for off, new in patches:
        if b:
            o = off % len(b)
            b[o : o + len(new)] = new[: len(b) - o]
    return bytes(b)


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    vol = np.random.default_rng(0).normal(size=(6, 7, 5)).astype(np.float32)
    write_mrc(d / "v.mrc", vol, 4.0)
    write_em(d / "v.em", vol, 4.0)
    table = make_particles(np.random.default_rng(1).uniform(0, 50, (4, 3)), eulers_zyz=np.zeros((4, 3)),
                           tomo_name="t1", pixel_size_a=4.0)
    write_particles(d / "p.star", table)
    return d, vol


def _check_volume(v):
    assert v.data.ndim == 3 and v.data.dtype == np.float32
    assert np.isfinite(v.data).all()


def _read_damaged(good, p, reader, cut, patches, header_bytes):
    """``reader(p)`` of ``good``'s bytes damaged (cut, ``patches`` inside the first ``header_bytes``): the volume, or
    None after checking the InputError names ``p`` on one line."""
    p.write_bytes(_damage(good.read_bytes(), cut, [(o % header_bytes, b) for o, b in patches]))
    try:
        v = reader(p)
    except InputError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
        return None
    _check_volume(v)
    return v


@BUDGET
@given(cut=st.one_of(st.none(), st.integers(0, 4000)), patches=edits)
def test_mrc_reader_returns_a_finite_volume_or_input_error(good_files, tmp_path, cut, patches):
    d, vol = good_files
    v = _read_damaged(d / "v.mrc", tmp_path / "x.mrc", read_mrc, cut, patches, 1024)
    if v is not None and not patches and cut is None:
        np.testing.assert_array_equal(v.data, vol)


@BUDGET
@given(cut=st.one_of(st.none(), st.integers(0, 1500)), patches=edits)
def test_em_reader_returns_a_finite_volume_or_input_error(good_files, tmp_path, cut, patches):
    d, _ = good_files
    _read_damaged(d / "v.em", tmp_path / "x.em", lambda p: read_em(p, voxel_size_a=4.0), cut, patches, 512)


star_tokens = st.sampled_from(["nan", "inf", "-", "", "abc", "1e400", "loop_", "data_", "_rlnCoordinateX", "#", '"', "\t", "0"])


@BUDGET
@given(drops=st.lists(st.integers(0, 40), max_size=4), inserts=st.lists(st.tuples(st.integers(0, 40), star_tokens), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 2000)))
def test_star_reader_returns_finite_particles_or_input_error(good_files, tmp_path, drops, inserts, cut):
    d, _ = good_files
    lines = (d / "p.star").read_text().splitlines()
    for i in drops:
        if lines:
            del lines[i % len(lines)]
    for i, tok in inserts:  # replace a whitespace-separated field of a line by the token
        if lines:
            j = i % len(lines)
            fields = lines[j].split()
            if fields:
                fields[i % len(fields)] = tok
                lines[j] = " ".join(fields)
    text = "\n".join(lines) + "\n"
    p = tmp_path / "x.star"
    p.write_text(text if cut is None else text[: cut % (len(text) + 1)])
    try:
        t = read_particles(p)
    except InputError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
        return
    xyz = t.particles[[c for c in ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ") if c in t.particles]]
    assert np.isfinite(xyz.to_numpy(dtype=float)).all()


def _h5_edit(f: h5py.File, key: str, kind: str) -> None:
    if kind == "drop":
        del f[key]
    elif kind == "attr":
        f.attrs[key if key in f.attrs else "n_written"] = -3 if key == "size" else 10**6
    else:
        x = f[key][...]
        new = {"rank": x.reshape(x.shape[0], -1) if x.ndim > 1 else x[None],
               "rows": x[:1],
               "text": np.full(x.shape[:1], b"a", "S1"),
               "nan": np.full(x.shape, np.nan, np.float32)}[kind]
        del f[key]
        f.create_dataset(key, data=new)


h5_keys = st.sampled_from(["subtomograms", "target_mask", "target_density", "class_id", "eulers_zyz", "size", "class_names"])
h5_kinds = st.sampled_from(["drop", "attr", "rank", "rows", "text", "nan"])


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(h5_keys, h5_kinds), min_size=1, max_size=3), cut=st.one_of(st.none(), st.integers(0, 10**5)))
def test_dataset_reader_returns_consistent_rows_or_input_error(blob_dataset, tmp_path, changes, cut):
    p = tmp_path / "x.h5"
    shutil.copyfile(blob_dataset, p)
    with h5py.File(p, "r+") as f:
        for key, kind in changes:
            if kind != "attr" and key not in f:
                continue
            _h5_edit(f, key, kind)
    if cut is not None:
        raw = p.read_bytes()
        p.write_bytes(raw[: cut % (len(raw) + 1)])
    try:
        h = read_header(p)
        rows = read_rows(p, ("subtomograms", "class_id"))
    except InputError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
        return
    assert rows["subtomograms"].shape == (h.n_written, h.size, h.size, h.size)
    assert rows["class_id"].shape == (h.n_written,)
