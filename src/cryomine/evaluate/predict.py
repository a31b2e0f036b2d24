"""Predict with a trained run: class, segmentation mask and recovered structure per subtomogram.

Inputs: MRC / ``.em`` files, folders of them (``*.mrc``, ``*.map``, ``*.em``, sorted by name), or cryomine HDF5
datasets (every written row). Every subtomogram must have the model's box size and, within 2%, the voxel size it
was trained at (else an :class:`InputError` says so: re-extract from a tomogram binned to that voxel size); an
MRC whose header holds no voxel size needs ``voxel_size_a`` (``--voxel-size``). Each is normalised like the
training data (zero mean, unit std per box).

Outputs in ``out_dir``:

* ``predictions.star``: RELION STAR with one row per subtomogram. When every input row knows where it sits in its
  tomogram (datasets made by ``cryomine extract``): ``rlnCoordinateX/Y/Z`` (voxels of the tomogram),
  ``rlnTomoName`` and a ``data_optics`` block with the pixel size, so the predictions join back onto the picks by
  position. Columns: ``rlnImageName`` (the input MRC path; only when every input is an MRC file),
  ``rlnClassNumber`` (1-based predicted class, models with a classifier), ``rlnClassName``, and cryomine's own
  columns, prefixed ``cm`` as RELION does not define them:
  ``cmName`` (output file stem), ``cmSource`` (input file), ``cmRow`` (dataset row, -1 for MRC inputs),
  ``cmClassName``, ``cmClassProbability`` (softmax probability of the predicted class), ``cmMaskFile``,
  ``cmMaskFraction`` (fraction of the box segmented as target), ``cmRecoveredFile``.
* ``predictions.csv``: the same, with plain column names, plus ``p_<class name>`` for every class.
* ``masks/<name>.mrc``: the segmentation (float32, 1 = target, 0 = background), for models that segment.
* ``recovered/<name>.mrc``: the recovered structure (float32, in units of the normalised clean density), for models
  that recover. MRC outputs carry the input's voxel size (MRC header, or the dataset's ``voxel_size_a``).

Names: an MRC input's file stem (``_2``, ``_3``, ... appended to repeated stems); dataset rows
``<dataset stem>_<row, 6 digits>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import starfile
import torch

from cryomine.data.info import dataset_positions
from cryomine.data.normalise import normalise
from cryomine.devices import default_device, resolve_bf16
from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import write_mrc
from cryomine.io.star import make_particles, write_particles
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.io.volume import read_volume
from cryomine.models import infer
from cryomine.train.runfolder import load_run

MRC_SUFFIXES = (".mrc", ".map", ".em")
VOXEL_TOLERANCE = 0.02


@dataclass(frozen=True)
class InputItem:
    """One subtomogram to predict: output name, source file and dataset row (None for an MRC file)."""

    name: str
    source: Path
    row: int | None = None


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` wrote."""

    out_dir: Path
    n: int
    star: Path
    csv: Path


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[InputItem]:
    """Expand files / folders / datasets into :class:`InputItem` s with unique names (InputError if none)."""
    if not inputs:
        raise InputError("predict: no input given")
    items: list[InputItem] = []
    used: dict[str, int] = {}

    def unique(stem: str) -> str:
        used[stem] = used.get(stem, 0) + 1
        return stem if used[stem] == 1 else f"{stem}_{used[stem]}"

    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in MRC_SUFFIXES)
            if not files:
                raise InputError(f"folder holds no {'/'.join(MRC_SUFFIXES)} files", p)
            items += [InputItem(unique(f.stem), f) for f in files]
        elif p.is_file() and h5py.is_hdf5(p):
            header = read_header(p)
            if header.n_written == 0:
                raise InputError("dataset is empty (n_written = 0)", p)
            items += [InputItem(unique(f"{p.stem}_{r:06d}"), p, r) for r in range(header.n_written)]
        elif p.is_file():
            items.append(InputItem(unique(p.stem), p))
        else:
            raise InputError("input not found", p)
    return items


def _load(batch: list[InputItem], zyx: tuple[int, int, int], voxel_size_a: float | None
          ) -> tuple[np.ndarray, list[float]]:
    """``(b, d, h, w)`` raw volumes and their voxel sizes (Å); InputError on a wrong box size."""
    vols, sizes = [], []
    by_source: dict[Path, list[int]] = {}
    for item in batch:
        if item.row is not None:
            by_source.setdefault(item.source, []).append(item.row)
    rows = {src: dict(zip(r, read_rows(src, ("subtomograms",), np.asarray(r))["subtomograms"])) for src, r in by_source.items()}
    dataset_voxel = {src: read_header(src).voxel_size_a for src in by_source}
    for item in batch:
        if item.row is None:
            vol = read_volume(item.source, voxel_size_a, option="--voxel-size")
            data, vs = vol.data, vol.voxel_size_a
        else:
            data, vs = rows[item.source][item.row], dataset_voxel[item.source]
        where = item.source if item.row is None else f"{item.source} (row {item.row})"
        if tuple(data.shape) != zyx:
            raise InputError(f"box size {'x'.join(map(str, data.shape))} does not match the model's input size "
                             f"{'x'.join(map(str, zyx))}", where)
        if not np.isfinite(data).all():
            raise InputError(f"holds {int((~np.isfinite(data)).sum())} NaN or infinite voxels", where)
        vols.append(np.asarray(data, np.float32))
        sizes.append(vs)
    return np.stack(vols), sizes


def _chunks(items: list[InputItem], size: int) -> Iterator[list[InputItem]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _check_voxel(sizes: list[float], model_a: float | None, items: list[InputItem]) -> None:
    if model_a is None:
        return
    for vs, item in zip(sizes, items):
        if abs(vs / model_a - 1.0) > VOXEL_TOLERANCE:
            raise InputError(f"voxel size {vs:g} Å, but the model was trained at {model_a:g} Å: extract the boxes from a "
                             f"tomogram at {model_a:g} Å/voxel (or give the right --voxel-size)", item.source)  # fmt: skip


def _positions(items: list[InputItem]) -> tuple[np.ndarray, list[str]] | None:
    """``(n, 3)`` x y z voxels and tomogram names of every item, or None unless every item is a dataset row that
    records its position."""
    if any(i.row is None for i in items):
        return None
    coords, names = np.zeros((len(items), 3)), []
    by_source: dict[Path, list[int]] = {}
    for k, item in enumerate(items):
        by_source.setdefault(item.source, []).append(k)
    names = [""] * len(items)
    for src, ks in by_source.items():
        xyz, tomo = dataset_positions(src, read_header(src), np.array([items[k].row for k in ks]))
        if xyz is None:
            return None
        coords[ks] = xyz
        for k in ks:
            names[k] = tomo or src.stem
    return coords, names


def predict(run_dir: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
            *, batch_size: int = 32, device: torch.device | None = None, voxel_size_a: float | None = None) -> PredictResult:
    """Predict every subtomogram of ``inputs`` with the run's best weights; write the files described above.
    ``voxel_size_a`` (Å) overrides the header of MRC inputs."""
    device = device or default_device()
    run = load_run(run_dir, device=device)
    mc = run.model_config
    model_voxel = run.config["dataset"].get("voxel_size_a")
    items = collect_inputs(inputs)
    out = Path(out_dir)  # created by the first write (atomic_output), so refused input leaves nothing behind
    bf16 = resolve_bf16(run.config["train"].get("bf16"), device)
    names = run.class_names
    records: list[dict[str, object]] = []
    for chunk in _chunks(items, batch_size):  # every input checked (size, finite, voxel size) before anything is written
        _check_voxel(_load(chunk, mc.input_zyx, voxel_size_a)[1], model_voxel, chunk)
    for chunk in _chunks(items, batch_size):
        raw, voxel_sizes = _load(chunk, mc.input_zyx, voxel_size_a)
        _check_voxel(voxel_sizes, model_voxel, chunk)
        x = torch.from_numpy(normalise(raw)[:, None]).to(device)
        res = infer(run.model, x, bf16=bf16)
        proba = res.class_proba().cpu().numpy() if mc.has_cls else None
        masks = res.seg_logits.argmax(1).cpu().numpy().astype(np.float32) if mc.has_seg else None
        recon = res.recon[:, 0].cpu().numpy() if mc.has_rec else None
        for i, item in enumerate(chunk):
            rec: dict[str, object] = {"name": item.name, "source": str(item.source),
                                      "row": -1 if item.row is None else item.row}
            if proba is not None:
                k = int(proba[i].argmax())
                rec.update(class_number=k + 1, class_name=names[k], probability=float(proba[i, k]),
                           **{f"p_{n}": float(proba[i, j]) for j, n in enumerate(names)})
            if masks is not None:
                path = out / "masks" / f"{item.name}.mrc"
                write_mrc(path, masks[i], voxel_sizes[i])
                rec.update(mask_file=str(path.relative_to(out)), mask_fraction=float(masks[i].mean()))
            if recon is not None:
                path = out / "recovered" / f"{item.name}.mrc"
                write_mrc(path, recon[i], voxel_sizes[i])
                rec["recovered_file"] = str(path.relative_to(out))
            records.append(rec)
    table = pd.DataFrame.from_records(records)
    csv_path, star_path = out / "predictions.csv", out / "predictions.star"
    with atomic_output(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    star = _star_table(table, all(i.row is None for i in items))
    placed = _positions(items)
    if placed is None:
        with atomic_output(star_path) as tmp:
            starfile.write({"particles": star}, tmp, float_format="%.6g")
    else:
        extra = {c: star[c].to_numpy() for c in star.columns if c != "rlnClassNumber"}
        if "class_name" in table:
            extra["rlnClassName"] = table["class_name"].astype(str).to_numpy()
        particles = make_particles(placed[0], tomo_name=placed[1], extra=extra,
                                   class_number=star["rlnClassNumber"].to_numpy() if "rlnClassNumber" in star else None)
        write_particles(star_path, particles, pixel_size_a=float(voxel_sizes[0]))
    return PredictResult(out, len(items), star_path, csv_path)


def _star_table(table: pd.DataFrame, all_mrc: bool) -> pd.DataFrame:
    """The STAR columns (see the module docstring) from the CSV table."""
    star = pd.DataFrame(index=table.index)
    if all_mrc:
        star["rlnImageName"] = table["source"]
    mapping = {"class_number": "rlnClassNumber", "name": "cmName", "source": "cmSource", "row": "cmRow",
               "class_name": "cmClassName", "probability": "cmClassProbability", "mask_file": "cmMaskFile",
               "mask_fraction": "cmMaskFraction", "recovered_file": "cmRecoveredFile"}
    for col, label in mapping.items():
        if col in table:
            star[label] = table[col]
    return star
