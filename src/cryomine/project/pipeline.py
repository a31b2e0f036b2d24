"""One tomogram through the whole pipeline: pick -> extract -> classify/segment/recover -> atlas -> discover -> average.

:func:`run_tomogram` writes into ``<out>/`` (the tomogram's folder of a project run)::

    picks.star            picks (RELION STAR, voxel coordinates, rlnTomoName = the tomogram's name, scores)
    picks.h5              the boxes cut around them, with the tomogram's acquisition metadata
    predict/              DSM-Net's class, mask and recovered density per pick (predictions.star/.csv, masks/, recovered/)
    atlas.mrc/.png        each pick's predicted structure placed at its position (atlas_labels.mrc: class labels)
    segmentation_labels.mrc  DSM-Net's segmentation masks pasted back at the picks, labelled by predicted class
    discover/             k-means on DSM-Net features of the picks (assignments, t-SNE, cluster means)
    average_<class>/      subtomogram average of each of the most frequent predicted classes (maps, FSC)
    particles.star        every pick with its predicted class and, where averaged (cmAveraged 1), the orientation and
                          shift the averaging refined (rlnAngle*, rlnOrigin*Angst; 0 for the others)
    summary.json          counts per class, averages' resolutions, seconds per step; written last

``summary.json`` marks the tomogram finished: a folder without it is an interrupted run and is cleared before the
tomogram is done again (:func:`is_finished`, :func:`clear_unfinished`). Every step is the library function the single
command (``cryomine pick``, ``extract``, ...) calls, with the tomogram's acquisition (voxel size, polarity, tilt range,
CTF) resolved once from its metadata and the project's flags.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryomine.acquisition import tomogram_acquisition
from cryomine.average import build_average_config, load_particles, result_summary, run_average, write_results
from cryomine.discover import DiscoverConfig, discover
from cryomine.errors import CryomineWarning, InputError
from cryomine.evaluate.predict import predict
from cryomine.geometry.boxes import paste_mask
from cryomine.io.atomic import write_json
from cryomine.io.mrc import read_mrc, write_mrc
from cryomine.io.star import coordinates_xyz_voxels, read_particles, write_particles
from cryomine.io.volume import open_volume
from cryomine.models import ModelConfig
from cryomine.pick.atlas import make_atlas
from cryomine.pick.config import DogConfig, LearnedPickConfig
from cryomine.pick.dog import pick_dog_file
from cryomine.pick.extract import extract_subtomograms
from cryomine.pick.learned import pick_learned_file
from cryomine.project.config import ProjectConfig
from cryomine.project.sources import ProjectTomogram
from cryomine.structures import bundled_radius_a
from cryomine.train.runfolder import read_run_config, resolve_run

__all__ = ["SUMMARY", "clear_unfinished", "is_finished", "model_box", "run_tomogram"]

SUMMARY = "summary.json"
MIN_CLUSTER_SIZE = 5  # discovery asks for at most one cluster per this many picks


def is_finished(folder: Path) -> bool:
    """Whether ``folder`` holds a finished tomogram (its ``summary.json``)."""
    return (Path(folder) / SUMMARY).is_file()


def clear_unfinished(folder: Path) -> bool:
    """Remove an interrupted tomogram's folder (one without ``summary.json``); returns whether one was removed."""
    folder = Path(folder)
    if folder.is_dir() and not is_finished(folder):
        shutil.rmtree(folder)
        return True
    return False


def model_box(model: str) -> tuple[int, list[str]]:
    """The DSM-Net run's input edge (voxels) and class names, from its config (the weights are loaded by the steps)."""
    config = read_run_config(resolve_run(model))
    size = config.get("dataset", {}).get("size")
    return int(size if size is not None else ModelConfig.from_dict(config["model"]).input_zyx[0]), list(config["classes"]["class_names"])


def _dog_radius_a(config: ProjectConfig, class_names: list[str]) -> float:
    if config.radius_a is not None:
        return float(config.radius_a)
    radii = [r for r in (bundled_radius_a(n) for n in class_names) if r is not None]
    if not radii:
        raise InputError("the model's classes are not bundled structures: give the DoG particle radius (Å)", "--radius")
    return float(np.median(radii))


def _pick(tomo: ProjectTomogram, out: Path, config: ProjectConfig, voxel_size_a: float, dark: bool, class_names: list[str]) -> int:
    picks = out / "picks.star"
    if config.pick_method == "learned":
        found, _ = pick_learned_file(tomo.path, picks, config.picker, LearnedPickConfig(invert=dark), voxel_size_a=voxel_size_a)
        n = len(found)
    else:
        dog = DogConfig(radius_vox=_dog_radius_a(config, class_names) / voxel_size_a, invert=dark)
        if config.top_n is not None:
            dog = replace(dog, peaks=replace(dog.peaks, top_n=config.top_n))
        result, _ = pick_dog_file(tomo.path, picks, dog, voxel_size_a=voxel_size_a)
        n = len(result.picks)
    table = read_particles(picks)  # the picks carry the project's name for the tomogram (joins predictions, averages)
    if config.pick_method == "learned" and config.top_n is not None and len(table.particles) > config.top_n:
        order = np.argsort(-table.particles["rlnAutopickFigureOfMerit"].to_numpy(float), kind="stable")[: config.top_n]
        table = replace(table, particles=table.particles.iloc[np.sort(order)].reset_index(drop=True))
        n = config.top_n
    table.particles["rlnTomoName"] = tomo.name
    write_particles(picks, table, pixel_size_a=voxel_size_a)
    return n


def _class_subset(predictions: Path, name: str, out: Path) -> int:
    table = read_particles(predictions)
    sel = table.particles["rlnClassName"].astype(str).to_numpy() == name
    write_particles(out, replace(table, particles=table.particles[sel].reset_index(drop=True)))
    return int(sel.sum())


def _segmentation(out: Path, shape_zyx: list[int], voxel_size_a: float, classes: list[str]) -> Path:
    """``segmentation_labels.mrc``: every pick's DSM-Net mask pasted at its position with its class's label
    (``k + 1`` = ``classes[k]``; later picks overwrite earlier ones where masks overlap)."""
    table = read_particles(out / "predict" / "predictions.star")
    labels = np.zeros(shape_zyx, np.int16)
    centres = coordinates_xyz_voxels(table)[:, ::-1]
    for centre, mask_file, name in zip(centres, table.particles["cmMaskFile"], table.particles["rlnClassName"].astype(str)):
        paste_mask(labels, centre, read_mrc(out / "predict" / str(mask_file)).data, classes.index(name) + 1)
    return write_mrc(out / "segmentation_labels.mrc", labels.astype(np.float32), voxel_size_a)


POSE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")


def _refined_particles(out: Path, voxel_size_a: float, averages: dict[str, Any]) -> Path:
    """``particles.star``: the predictions with the poses the averages refined (module docstring), joined by position."""
    table = read_particles(out / "predict" / "predictions.star")
    frame = table.particles.copy()
    for column in POSE_COLUMNS:
        frame[column] = 0.0
    frame["cmAveraged"] = 0
    where = {tuple(np.round(xyz, 3)): i for i, xyz in enumerate(coordinates_xyz_voxels(table))}
    for entry in averages.values():
        refined = read_particles(out / entry["folder"] / "particles.star")
        rows = [where[tuple(np.round(xyz, 3))] for xyz in coordinates_xyz_voxels(refined)]
        frame.loc[rows, list(POSE_COLUMNS)] = refined.particles[list(POSE_COLUMNS)].to_numpy(np.float64)
        frame.loc[rows, "cmAveraged"] = 1
    return write_particles(out / "particles.star", replace(table, particles=frame), pixel_size_a=voxel_size_a)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _average(tomo: ProjectTomogram, out: Path, config: ProjectConfig, counts: Counter, box: int) -> dict[str, Any]:
    done: dict[str, Any] = {}
    flags = config.acquisition_flags()
    for name, n in counts.most_common(config.average_classes):
        if n < config.average_min_particles:
            break
        folder = out / f"average_{name}"
        star = folder / "input_particles.star"
        _class_subset(out / "predict" / "predictions.star", name, star)
        data = load_particles(star, tomo.path, box, None, flags, tomo.files, tomo.name)
        avg_config = build_average_config(iterations=config.average_iterations, seed=config.seed)
        t0 = time.perf_counter()
        result = run_average(data, avg_config, out_dir=folder, progress=False)
        summary = result_summary(result, avg_config, data, time.perf_counter() - t0)
        write_results(folder, result, data, summary)
        fsc = result.fsc[0]
        done[name] = {"particles": n, "folder": folder.name, "resolution_fsc0143_a": _finite(fsc.resolution(0.143)),
                      "resolution_fsc05_a": _finite(fsc.resolution(0.5))}  # fmt: skip
    return done


class _Laps:
    """Seconds per step: ``lap("pick")`` records the time since the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._last, 2)
        self._last = now


def _after_picking(tomo: ProjectTomogram, out: Path, config: ProjectConfig, box: int, shape_zyx: list[int], voxel_size_a: float,
                   n_picks: int, n_classes: int, lap: _Laps) -> dict[str, Any]:  # fmt: skip
    """Extract -> DSM-Net -> atlas + segmentation -> discover -> average -> ``particles.star``; the summary's parts."""
    extract_subtomograms(tomo.path, out / "picks.star", out / "picks.h5", box, overrides=config.acquisition_flags(), files=tomo.files,
                         tomo_name=tomo.name)  # fmt: skip
    lap("extract")
    predict(config.model, [out / "picks.h5"], out / "predict")
    counts = Counter(read_particles(out / "predict" / "predictions.star").particles["rlnClassName"].astype(str))
    lap("predict")
    atlas, _ = make_atlas(tomo.path, out / "picks.star", out / "atlas.mrc", out / "predict" / "predictions.star")
    _segmentation(out, shape_zyx, voxel_size_a, list(atlas.class_names))
    lap("atlas")
    discovered = None
    k = min(config.k or n_classes + 1, n_picks // MIN_CLUSTER_SIZE)  # clusters of a few picks at least
    if k >= 2:
        result = discover(config.model, out / "picks.h5", out / "discover", DiscoverConfig(k=k, seed=config.seed, baseline=False))
        discovered = {"k": result.k, "n": result.n}
    lap("discover")
    averages = _average(tomo, out, config, counts, box)
    _refined_particles(out, voxel_size_a, averages)
    lap("average")
    # atlas_labels.mrc and segmentation_labels.mrc: label k + 1 = atlas_classes[k]
    return {"class_counts": dict(sorted(counts.items())), "atlas_classes": list(atlas.class_names), "discover": discovered,
            "averages": averages}  # fmt: skip


def run_tomogram(tomo: ProjectTomogram, out: str | Path, config: ProjectConfig, *, threads: int | None = None) -> dict[str, Any]:
    """Run the pipeline on ``tomo`` into the folder ``out`` (module docstring); returns its summary.

    ``threads``: torch threads for this tomogram (None: as they are). A folder holding a finished run is refused;
    an unfinished one is cleared first. What the steps warn about (an assumed tilt range or microscope, a voxel size
    the header and the metadata disagree on: :class:`~cryomine.errors.CryomineWarning`) is kept, once each, in the
    summary's ``warnings`` instead of being printed by whichever process ran the tomogram.
    """
    out = Path(out)
    if is_finished(out):
        raise InputError("holds a finished tomogram run", out)
    clear_unfinished(out)
    if threads is not None:
        torch.set_num_threads(int(threads))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CryomineWarning)
        summary = _run_steps(tomo, out, config)
    notes = []
    for w in caught:
        if issubclass(w.category, CryomineWarning):
            notes.append(" ".join(str(w.message).split()))
        else:  # other libraries' warnings are shown as they would have been
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    summary["warnings"] = list(dict.fromkeys(notes))
    write_json(out / SUMMARY, summary, default=float)  # last: marks the tomogram finished
    return summary


def _run_steps(tomo: ProjectTomogram, out: Path, config: ProjectConfig) -> dict[str, Any]:
    lap = _Laps()
    model_edge, class_names = model_box(config.model)
    box = config.box_vox or model_edge
    acq = tomogram_acquisition(tomo.path, config.acquisition_flags(), tomo.files, tomo_name=tomo.name)
    voxel_size_a, dark = float(acq.voxel_size_a), acq.polarity == "dark"
    with open_volume(tomo.path) as volume:
        shape_zyx = [int(n) for n in volume.data.shape]
    out.mkdir(parents=True, exist_ok=True)
    n_picks = _pick(tomo, out, config, voxel_size_a, dark, class_names)
    lap("pick")
    parts = (_after_picking(tomo, out, config, box, shape_zyx, voxel_size_a, n_picks, len(class_names), lap) if n_picks
             else {"class_counts": {}, "atlas_classes": [], "discover": None, "averages": {}})  # fmt: skip
    return {"tomogram": tomo.to_dict(), "shape_zyx": shape_zyx, "voxel_size_a": voxel_size_a, "acquisition": acq.to_dict(),
            "picks": n_picks, **parts, "seconds": lap.seconds}  # fmt: skip
