"""Learned picking: label every voxel with a trained :class:`~cryomine.models.picker.PickerUNet`, in tiles, and
turn each class's connected regions into picks.

Labelling (:func:`label_tomogram`): the tomogram is standardised (zero mean, unit variance, negated for protein
dark), padded at its far faces to a multiple of the network's ``2 ** depth`` and cut into cubic windows whose
starts are multiples of it too (so that every window sees the same down-sampling grid as the whole tomogram);
windows overlap by ``overlap_vox`` and each keeps the part of its output nearest its centre. Windows at the
tomogram's faces end there, as the whole tomogram does. With ``overlap_vox`` at least the receptive radius the
result is exactly that of the whole tomogram in one piece. Output: the ``(d, h, w)`` int8 label map (0
background) and the float32 probability of each voxel's label.

Picks (:func:`picks_from_labels`): per class, the connected regions (6-connected) of voxels whose label is the
class with probability >= ``min_probability``; regions below ``min_size_fraction`` of the class's expected
volume are dropped, regions ``k >= 2`` times it are split into ``k`` particles by k-means on their voxels
(touching particles of one class merge into one region); each pick is a region's centroid, its score the
region's mean probability.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.cluster import KMeans
from tqdm import tqdm

from cryomine import __version__
from cryomine.devices import resolve_bf16, resolve_device
from cryomine.errors import InputError
from cryomine.geometry.validate import volume_stats
from cryomine.io.atomic import atomic_output, check_writable
from cryomine.io.mrc import write_mrc
from cryomine.io.star import write_particles
from cryomine.io.volume import open_volume
from cryomine.models.flops import infer
from cryomine.models.picker import PickerUNet
from cryomine.pick.config import LearnedPickConfig
from cryomine.pick.contrast import tomogram_contrast, warn_if_dark
from cryomine.pick.peaks import Picks
from cryomine.resources import MEMORY_FRACTION, available_memory_bytes, check_memory
from cryomine.simulate.membranes import MEMBRANE_LABEL
from cryomine.train.picker import load_picker
from cryomine.train.runfolder import resolve_run

__all__ = ["DEFAULT_PICKER", "axis_windows", "choose_tile", "label_tomogram", "picks_from_labels", "pick_learned_file", "window_bytes"]

DEFAULT_PICKER = "pretrained:picker"  # shipped in cryomine/pretrained/picker (training.json says how it was trained)


def _tile_edge(n: int, tile: int, multiple: int) -> int:
    """A window's edge along an axis of ``n`` voxels: ``tile`` rounded up to ``multiple``, at most the padded axis."""
    return min(-(-tile // multiple) * multiple, -(-n // multiple) * multiple)


def axis_windows(n: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int, int]]:
    """Windows along one axis of ``n`` voxels (padded to ``n_pad``, a multiple of ``multiple``): ``(start, keep_lo,
    keep_hi)`` with windows ``[start, start + tile)`` (``tile`` rounded up to the multiple, at most ``n_pad``),
    starts multiples of ``multiple``, and kept parts that partition ``[0, n)``, each at least ``overlap`` from
    its window's ends except at the tomogram's faces."""
    n_pad = -(-n // multiple) * multiple
    tile = _tile_edge(n, tile, multiple)
    step = (tile - 2 * overlap) // multiple * multiple
    if tile < n_pad and step <= 0:
        raise InputError(f"tiles of {tile} voxels leave nothing between overlaps of {overlap}", "--overlap")
    starts = [0] if tile >= n_pad else list(range(0, n_pad - tile, step)) + [n_pad - tile]
    out, lo = [], 0
    for i, s in enumerate(starts):
        hi = n if i == len(starts) - 1 else min(n, (s + tile - overlap + starts[i + 1] + overlap) // 2)
        if hi > lo:
            out.append((s, lo, hi))
        lo = max(lo, hi)
    return out


#: Peak memory of a window's forward pass per window voxel and per base channel (bytes): measured 7.8 GB peak RSS
#: (about 0.9 GB of it the process, the tomogram and the outputs) labelling 200 x 512 x 512 in 200 x 288 x 288 windows
#: with the shipped picker (16 base channels, 23 classes, bf16 on CPU), 2026-12-02. In float32 (an AVX2 CPU without
#: native bf16, 2026-12-03) the whole 200 x 512 x 512 command (4 windows of 280) peaked at 7.5 GB once the previous
#: window's logits and softmax were freed before the next forward pass (10.6 GB before).
BYTES_PER_VOXEL_CHANNEL = 26.0


def window_bytes(window_zyx: Sequence[int], base_channels: int) -> float:
    """Estimated peak memory (bytes) of one window's forward pass (:data:`BYTES_PER_VOXEL_CHANNEL`)."""
    return float(np.prod(np.asarray(window_zyx, np.float64))) * base_channels * BYTES_PER_VOXEL_CHANNEL


def choose_tile(shape_zyx: Sequence[int], overlap: int, multiple: int, memory_gb: float, base_channels: int) -> int:
    """The tile edge (a multiple of ``multiple``, 2 x ``overlap`` + ``multiple`` .. 512) computing the fewest voxels
    over a ``shape_zyx`` tomogram (every window's voxels, overlaps included) among those whose window fits
    ``memory_gb``; ties go to the smaller tile. :class:`InputError` when not even the smallest fits."""
    best: tuple[float, int] | None = None
    lo = -(-(2 * overlap + 1) // multiple) * multiple
    for tile in range(max(lo, multiple), 513, multiple):
        edges = [_tile_edge(n, tile, multiple) for n in shape_zyx]
        if window_bytes(edges, base_channels) > memory_gb * 1e9:
            continue
        cost = float(np.prod([len(axis_windows(n, tile, overlap, multiple)) * e for n, e in zip(shape_zyx, edges)]))
        if best is None or cost < best[0]:
            best = (cost, tile)
    if best is None:
        need = window_bytes([min(n, lo) for n in shape_zyx], base_channels) / 1e9
        raise InputError(f"the smallest tile ({lo} voxels) needs about {need:.1f} GB: give more --memory-gb or less --overlap", "--memory-gb")
    return best[1]


def _standardised(volume: np.ndarray, config: LearnedPickConfig) -> tuple[float, float]:
    mean, std = volume_stats(volume)
    return mean, (-std if config.invert else std)


@torch.no_grad()
def label_tomogram(volume: np.ndarray, model: PickerUNet, config: LearnedPickConfig = LearnedPickConfig(), *,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Label a ``(d, h, w)`` tomogram (any array-like, e.g. a memory map; protein bright unless
    ``config.invert``) with ``model``: ``(labels int8, probability float32)``, both ``(d, h, w)``."""
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise InputError(f"tomogram must be 3-D, got shape {shape}")
    device = resolve_device(config.device)
    mult = model.config.multiple
    mean, std = _standardised(volume, config)
    budget_gb = min(config.memory_gb, MEMORY_FRACTION * available_memory_bytes() / 1e9)  # never more than the machine has
    edge = config.tile_vox or choose_tile(shape, config.overlap_vox, mult, budget_gb, model.config.base_channels)
    check_memory(window_bytes([_tile_edge(n, edge, mult) for n in shape], model.config.base_channels),
                 f"labelling in windows of {edge} voxels", "--tile-size")  # fmt: skip
    per_axis = [axis_windows(n, edge, config.overlap_vox, mult) for n in shape]
    tile = [_tile_edge(n, edge, mult) for n in shape]
    labels = np.zeros(shape, np.int8)
    prob = np.zeros(shape, np.float32)
    model = model.to(device).eval()
    bf16 = resolve_bf16(config.bf16, device)
    jobs = [(a, b, c) for a in per_axis[0] for b in per_axis[1] for c in per_axis[2]]
    with tqdm(total=len(jobs), desc="labelling", unit="tile", disable=not progress) as bar:
        for k in range(0, len(jobs), config.batch):
            chunk = jobs[k : k + config.batch]
            x = np.zeros((len(chunk), 1, *tile), np.float32)
            for j, win in enumerate(chunk):
                src = tuple(slice(s, min(s + t, n)) for (s, _, _), t, n in zip(win, tile, shape))
                block = np.asarray(volume[src], np.float32)  # beyond the far faces the window stays 0 (padding)
                x[j, 0][tuple(slice(0, b) for b in block.shape)] = (block - mean) / std
            logits = infer(model, torch.from_numpy(x).to(device), bf16=bf16, channels_last=device.type == "cpu")
            p = torch.softmax(logits, dim=1)
            best, lab = p.max(dim=1)
            best, lab = best.cpu().numpy(), lab.cpu().numpy().astype(np.int8)
            for j, win in enumerate(chunk):
                dst = tuple(slice(lo, hi) for _, lo, hi in win)
                src = tuple(slice(lo - s, hi - s) for s, lo, hi in win)
                labels[dst], prob[dst] = lab[j][src], best[j][src]
            del logits, p, best, lab  # else this window's logits and softmax stay alive through the next forward pass
            bar.update(len(chunk))
    return labels, prob


def _split(points: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` clusters of ``(n, 3)`` voxel indices (k-means, seeded)."""
    assign = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(points.astype(np.float64))
    return [points[assign == i] for i in range(k)]


def picks_from_labels(labels: np.ndarray, prob: np.ndarray, class_names: Sequence[str], config: LearnedPickConfig = LearnedPickConfig(),
                      expected_voxels: Mapping[str, float] | None = None) -> Picks:  # fmt: skip
    """Picks of every class (label ``i + 1`` = ``class_names[i]``) from a label map and its probabilities (module
    docstring); ``expected_voxels``: each class's typical region size (voxels), for the size check and the
    split of merged neighbours. Picks are ordered by score, best first; ``class_name`` holds each one's class.
    Segmented structures that are not particles (:data:`~cryomine.simulate.membranes.MEMBRANE_LABEL`) stay in the
    label map and give no picks."""
    if labels.shape != prob.shape:
        raise InputError(f"label map {labels.shape} and probability map {prob.shape} differ in shape")
    coords, scores, names = [], [], []
    sure = prob >= config.min_probability
    for c, name in enumerate(class_names, start=1):
        if name == MEMBRANE_LABEL:
            continue
        regions, n = ndimage.label((labels == c) & sure)
        if n == 0:
            continue
        expected = None if expected_voxels is None else expected_voxels.get(name)
        smallest = config.min_size_vox if expected is None else max(1.0, config.min_size_fraction * float(expected))
        for i, sl in enumerate(ndimage.find_objects(regions), start=1):
            inside = regions[sl] == i
            size = int(inside.sum())
            if size < smallest:
                continue
            pts = np.argwhere(inside) + [s.start for s in sl]
            k = 1 if expected is None else max(1, int(round(size / float(expected))))
            for part in (_split(pts, k, c * 1000 + i) if k > 1 else [pts]):
                coords.append(part.mean(axis=0))
                scores.append(float(prob[tuple(part.T)].mean()))
                names.append(name)
    order = np.argsort(-np.asarray(scores), kind="stable")
    return Picks(np.asarray(coords, np.float64).reshape(-1, 3)[order], np.asarray(scores, np.float32)[order], None,
                 np.asarray(names, dtype=object)[order])  # fmt: skip


def pick_learned_file(tomogram: str | os.PathLike[str], out: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                      config: LearnedPickConfig = LearnedPickConfig(), *, voxel_size_a: float | None = None,
                      progress: bool = False) -> tuple[Picks, list[Path]]:  # fmt: skip
    """Pick a tomogram with the trained picker of run folder ``model_dir`` (``cryomine train-picker``). Writes
    ``out`` (RELION STAR: ``rlnCoordinateX/Y/Z``, ``rlnClassName``, ``rlnAutopickFigureOfMerit`` = the region's
    mean probability, ``rlnTomoName``), ``<stem>_labels.mrc`` (int8 label map, the JSON's ``labels`` name them),
    ``<stem>_probability.mrc`` and ``<stem>.json`` (parameters, model, timing). ``voxel_size_a`` overrides the
    header's; an unset header without it is an :class:`InputError`."""
    t0 = time.perf_counter()
    out = Path(out)
    stem = out.with_suffix("")
    paths = [out, Path(f"{stem}_labels.mrc"), Path(f"{stem}_probability.mrc"), Path(f"{stem}.json")]
    check_writable(*paths)
    run = resolve_run(model_dir)
    picker = load_picker(run)
    with open_volume(tomogram, voxel_size_a, option="--voxel-size") as vol:
        if picker.voxel_size_a is not None and abs(vol.voxel_size_a / picker.voxel_size_a - 1.0) > 0.02:
            raise InputError(f"voxel size {vol.voxel_size_a:g} Å, but the picker was trained at {picker.voxel_size_a:g} Å: "
                             "bin the tomogram to it (or give the right --voxel-size)", tomogram)  # fmt: skip
        warn_if_dark(tomogram_contrast(vol.data, config.invert), tomogram, "--invert", config.invert)
        labels, prob = label_tomogram(vol.data, picker.model, config, progress=progress)
        vs, origin = vol.voxel_size_a, vol.origin_zyx_a
    t_label = time.perf_counter() - t0
    picks = picks_from_labels(labels, prob, picker.config.class_names, config, picker.expected_voxels)
    write_particles(out, picks.to_table(Path(tomogram).stem), pixel_size_a=vs)
    write_mrc(paths[1], labels, vs, origin, mrc_mode=0)
    write_mrc(paths[2], prob, vs, origin)
    counts = {n: int((picks.class_name == n).sum()) for n in picker.config.class_names} if len(picks) else {}
    summary = {
        "method": "learned", "tomogram": str(tomogram), "model": str(run.resolve()), "voxel_size_a": vs,
        "labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(picker.config.class_names)}},
        "n_picks": len(picks), "picks_per_class": counts, "expected_voxels": picker.expected_voxels,
        "seconds_labelling": round(t_label, 2), "seconds": round(time.perf_counter() - t0, 2), "config": asdict(config),
        "cryomine_version": __version__,
    }  # fmt: skip
    with atomic_output(paths[3]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return picks, paths
