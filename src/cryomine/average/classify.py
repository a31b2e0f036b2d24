"""Iterative alignment, averaging and multi-reference classification (``K = 1``: plain subtomogram averaging).

Each iteration (as in Dynamo's multireference alignment and EMAN2's ``e2spt_refinemulti``): every particle is
aligned to all ``K`` references (global search + local refinement, :mod:`cryomine.average.align`) and assigned to
the one it correlates with best; then every class is re-averaged with wedge weighting
(:mod:`cryomine.average.averaging`).

Gold standard: the particles are split once into two random half sets; each class has two half maps, each
half set is aligned only to its own half references, and the FSC between the half maps (under the mask) gives
the class's resolution at 0.143, at which the next iteration's references are low-pass filtered.

Starting references: the given ones (``K`` maps), else for ``K = 1`` the wedge-weighted average of the particles in
random orientations, and for ``K > 1`` ``K`` seed particles picked k-means++-style (the first at random, each
next with probability growing with its distance ``1 - CC`` to the seeds so far). Without given references the
first ``initial_iterations`` rounds align both half sets to one common reference at the initial low-pass (so
that the two halves settle in the same frame); the rounds after are gold-standard.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cryomine.average.align import Alignment, align_particles, local_refine
from cryomine.average.averaging import (
    WedgeSums,
    accumulate,
    centre_of_mass_shift,
    lowpass,
    phase_flip,
    random_rotation_average,
    shift_volume,
    soft_sphere_mask,
)
from cryomine.average.checkpoint import load_checkpoint, save_checkpoint
from cryomine.average.config import AverageConfig
from cryomine.average.particles import ParticleData
from cryomine.average.spectra import ReferenceSampler, particle_spectra
from cryomine.errors import InputError
from cryomine.evaluate.fsc import FSCResult, fsc
from cryomine.geometry.wedge import missing_wedge_mask

__all__ = ["AverageResult", "run_average", "seed_references", "assign_classes"]


@dataclass
class AverageResult:
    """Outcome of :func:`run_average`: per class the map, the two half maps, the half-map FSC and resolution (Å);
    per particle the final pose (:class:`Alignment`), class (0-based) and half set (0/1); per-iteration history."""

    maps: list[np.ndarray]
    half_maps: list[tuple[np.ndarray, np.ndarray]]
    fsc: list[FSCResult]
    resolution_a: list[float]
    alignment: Alignment
    classes: np.ndarray
    half: np.ndarray
    history: list[dict]
    mask: np.ndarray
    tilt_range_deg: tuple[float, float] = (-60.0, 60.0)
    phase_flipped: bool = False


def assign_classes(scores: np.ndarray) -> np.ndarray:
    """``(N, K)`` scores -> ``(N,)`` best class; an emptied class takes the worst-fitting particle of the largest."""
    best = np.argmax(scores, axis=1)
    k = scores.shape[1]
    for c in range(k):
        if not (best == c).any() and len(best) >= k:
            big = np.bincount(best, minlength=k).argmax()
            rows = np.flatnonzero(best == big)
            worst = rows[np.argmin(scores[rows, big])]
            best[worst] = c
    return best


def _prepare(vol: np.ndarray, cutoff: float, mask: np.ndarray, centre: bool, weights: np.ndarray | None = None) -> np.ndarray:
    """A reference for alignment: re-centred (optional), low-passed (times per-shell ``weights``), masked."""
    if centre:
        vol = shift_volume(vol, -centre_of_mass_shift(lowpass(vol, cutoff), mask))
    return lowpass(vol, cutoff, weights=weights) * mask


def fsc_weights(curve: np.ndarray) -> np.ndarray:
    """Per-shell reference weighting ``sqrt(2 FSC / (1 + FSC))`` (Rosenthal & Henderson 2003), 0 where FSC <= 0."""
    c = np.clip(np.nan_to_num(np.asarray(curve, np.float64), nan=0.0), 0.0, 1.0)
    w = np.sqrt(2.0 * c / (1.0 + c))
    w[0] = 1.0
    return w


def seed_references(
    particles: np.ndarray, k: int, config: AverageConfig, tilt: tuple[float, float], mask: np.ndarray,
    cutoff: float, voxel_size_a: float, rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` seed particles as starting references (low-passed, masked; coverage: their own sampled region)."""
    n = particles.shape[-1]
    wedge = missing_wedge_mask((n, n, n), *tilt, rfft=True).astype(np.float32)
    spectra = particle_spectra(particles, cutoff, tilt, whiten=config.align.whiten)
    seeds = [int(rng.integers(len(particles)))]
    best = np.full(len(particles), -1.0)
    while len(seeds) < k:
        ref = ReferenceSampler(_prepare(particles[seeds[-1]], cutoff, mask, False), wedge)
        best = np.maximum(best, align_particles(spectra, ref, config.align, voxel_size_a=voxel_size_a).scores)
        weight = np.clip(1.0 - best, 0.0, None) ** 2
        weight[seeds] = 0.0
        if weight.sum() <= 0:
            weight = np.ones(len(particles))
            weight[seeds] = 0.0
        seeds.append(int(rng.choice(len(particles), p=weight / weight.sum())))
    return [(particles[s].copy(), wedge) for s in seeds]


def register_halves(
    parts: np.ndarray, sums: list[WedgeSums], c: int, mats: np.ndarray, shifts: np.ndarray, classes: np.ndarray,
    half: np.ndarray, tilt: tuple[float, float], cutoff: float, mask: np.ndarray, config: AverageConfig,
) -> WedgeSums | None:
    """Align class ``c``'s second half map to its first (local search) and move that half's poses along.

    If half map 2 is half map 1 rotated by ``G`` and shifted by ``s``, each of its particles' poses becomes
    ``(A G, t + A s)``; the half's sums are recomputed and returned (None when nothing moved or a half is empty).
    """
    a, b = sums[2 * c], sums[2 * c + 1]
    if a.count == 0 or b.count == 0:
        return None
    m0, m1 = (lowpass(x.to_map(config.wiener_fraction), cutoff) * mask for x in (a, b))
    spectra = particle_spectra(m1[None], cutoff, (-90.0, 90.0), whiten=False)
    start = Alignment(np.eye(3)[None], np.zeros((1, 3)), np.full(1, -np.inf))
    al = config.align
    found = local_refine(spectra, ReferenceSampler(m0), start, al.angular_step_deg / 2.0, al.local_step_deg, 1.0, al.max_shift_vox, al.chunk_mb)
    g, s_zyx = found.matrices_xyz[0], found.shifts_zyx[0]
    if np.degrees(np.arccos(np.clip((np.trace(g) - 1) / 2, -1, 1))) < 0.1 and np.abs(s_zyx).max() < 0.05:
        return None
    rows = np.flatnonzero((classes == c) & (half == 1))
    shifts[rows] = shifts[rows] + (mats[rows] @ s_zyx[::-1])[:, ::-1]
    mats[rows] = mats[rows] @ g
    group = np.full(len(parts), -1)
    group[rows] = 0
    return accumulate(parts, mats, shifts, tilt, group, 1)[0]


def _meta(config: AverageConfig, data: ParticleData, n_refs: int) -> dict:
    return {"config": config.to_dict(), "n": len(data.particles), "box": data.box, "source": data.tomo_name, "n_refs": n_refs}


def run_average(
    data: ParticleData,
    config: AverageConfig,
    *,
    references: Sequence[np.ndarray] | None = None,
    mask: np.ndarray | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> AverageResult:
    """Iteratively align and average ``data`` (``K = config.classes`` classes); see the module docstring.

    ``references``: ``K`` ``(n, n, n)`` starting maps or None (reference-free). ``mask``: ``(n, n, n)`` real-space
    mask (default: the config's soft sphere). ``out_dir``: where the checkpoint is saved after every iteration;
    ``resume`` continues from it (same config and input required).
    """
    from tqdm import tqdm

    parts, vs, n, k = data.particles, data.voxel_size_a, data.box, config.classes
    if parts.ndim != 4 or parts.shape[1:] != (n, n, n):
        raise InputError(f"particles must be cubes (N, n, n, n), got shape {parts.shape}")
    if len(parts) < 2 * k:
        raise InputError(f"need at least 2 particles per class ({2 * k}), got {len(parts)}")
    tilt = config.resolved_tilt_range(data.acquisition)
    if references is not None:
        references = [np.asarray(r, np.float32) for r in references]
        if len(references) != k:
            raise InputError(f"give {k} references for {k} classes (or none), got {len(references)}", "--reference")
        for r in references:
            if r.shape != (n, n, n):
                raise InputError(f"reference has shape {r.shape}, the particles are {n}³", "--reference")
    if mask is None:
        mask = soft_sphere_mask(n, config.resolved_mask_radius_vox(n, vs), config.mask_edge_vox)
    elif mask.shape != (n, n, n):
        raise InputError(f"mask has shape {mask.shape}, the particles are {n}³", "--mask")
    microscope = data.acquisition.microscope("average (CTF phase flip)") if config.phase_flip else None
    if microscope is not None:
        parts = phase_flip(parts, vs, microscope)
    free = references is None
    n_joint = min(config.initial_iterations, config.iterations - 1) if free else 0
    nyq = 0.5 - 1.0 / n
    init_cut = min(vs / config.resolved_initial_lowpass_a(vs), nyq)
    rng = np.random.default_rng(config.seed)
    n_part = len(parts)
    half = np.ones(n_part, np.int64)
    half[rng.permutation(n_part)[: n_part // 2]] = 0
    mats = np.tile(np.eye(3), (n_part, 1, 1))
    shifts, scores, classes = np.zeros((n_part, 3)), np.full(n_part, np.nan), np.zeros(n_part, np.int64)
    res = np.full(k, vs / init_cut)
    curves = np.ones((k, n // 2 + 1))
    history: list[dict] = []
    start = 0
    meta = _meta(config, data, 0 if references is None else len(references))
    saved = load_checkpoint(out_dir) if out_dir is not None else None
    if saved is not None and not resume:
        raise InputError("output folder holds an unfinished or finished run; use --resume or another --out", out_dir)
    if resume and saved is not None:
        state, old = saved
        same = {key: old.get(key) for key in meta}
        same["config"] = {**(same["config"] or {}), "iterations": config.iterations}  # more iterations may be asked for
        if same != meta:
            raise InputError("checkpoint was made with other parameters or input; cannot resume", out_dir)
        mats, shifts, scores = state["matrices_xyz"], state["shifts_zyx"], state["scores"]
        classes, half, res, curves = state["classes"], state["half"], state["resolution_a"], state["fsc_curves"]
        history, start = old["history"], int(old["iterations_done"])
        rng = np.random.default_rng([config.seed, start])
    sums: list[WedgeSums] = []
    if start > 0:
        sums = accumulate(parts, mats, shifts, tilt, classes * 2 + half, 2 * k)
    bar = tqdm(total=config.iterations * n_part, initial=start * n_part, desc="averaging", unit="particle", disable=not progress)
    for it in range(start, config.iterations):
        t0 = time.perf_counter()
        joint = it < n_joint
        refs: list[list[ReferenceSampler]] = []
        cuts = np.full(k, init_cut)
        if it == 0:
            if references is not None:
                starts = [(r, None) for r in references]
            elif k == 1:
                starts = [random_rotation_average(parts, tilt, rng, config.wiener_fraction)]
            else:
                starts = seed_references(parts, k, config, tilt, mask, init_cut, vs, rng)
            for vol, cov in starts:
                s = ReferenceSampler(_prepare(vol, init_cut, mask, free and config.center_reference), cov)
                refs.append([s, s])
        else:
            for c in range(k):
                if not joint:
                    cuts[c] = min(vs / res[c], nyq)
                pair = [sums[2 * c] + sums[2 * c + 1]] * 2 if joint else [sums[2 * c], sums[2 * c + 1]]
                weights = fsc_weights(curves[c]) if (config.fsc_weighting and not joint) else None
                refs.append([
                    ReferenceSampler(
                        _prepare(p.to_map(config.wiener_fraction), cuts[c], mask, free and config.center_reference, weights),
                        p.coverage(config.wiener_fraction),
                    )
                    for p in pair
                ])  # fmt: skip
        if k > 1:  # classes compete on equal terms: score every class over the same frequencies
            cuts[:] = cuts.min()
        edge = 1.5 / n
        spectra = particle_spectra(parts, min(float(cuts.max()) + edge, nyq), tilt, whiten=config.align.whiten)
        for h in (0, 1):
            rows = np.flatnonzero(half == h)
            per_class = []
            for c in range(k):
                sub = spectra.subset(min(cuts[c] + edge, nyq), rows)
                per_class.append(align_particles(sub, refs[c][h], config.align, voxel_size_a=vs))
                bar.update(len(rows) // k if c < k - 1 else len(rows) - (k - 1) * (len(rows) // k))
            table = np.stack([a.scores for a in per_class], axis=1)
            best = assign_classes(table) if k > 1 else np.zeros(len(rows), np.int64)
            pick = np.arange(len(rows))
            classes[rows] = best
            mats[rows] = np.stack([a.matrices_xyz for a in per_class], 1)[pick, best]
            shifts[rows] = np.stack([a.shifts_zyx for a in per_class], 1)[pick, best]
            scores[rows] = table[pick, best]
        sums = accumulate(parts, mats, shifts, tilt, classes * 2 + half, 2 * k)
        entry: dict = {"iteration": it + 1, "gold_standard": not joint, "seconds": 0.0, "classes": []}
        if not joint:  # keep the two half maps in register (EMAN2 aligns the odd map to the even one likewise)
            for c in range(k):
                moved = register_halves(parts, sums, c, mats, shifts, classes, half, tilt, min(cuts[c] + edge, nyq), mask, config)
                if moved is not None:
                    sums[2 * c + 1] = moved
        for c in range(k):
            if min(sums[2 * c].count, sums[2 * c + 1].count) == 0:
                entry["classes"].append({"particles": sums[2 * c].count + sums[2 * c + 1].count, "resolution_a": None})
                continue
            curve = fsc(sums[2 * c].to_map(config.wiener_fraction), sums[2 * c + 1].to_map(config.wiener_fraction), voxel_size_a=vs, mask=mask)
            res[c] = curve.resolution_0143_a
            curves[c] = np.nan_to_num(curve.fsc, nan=0.0)
            entry["classes"].append({
                "particles": sums[2 * c].count + sums[2 * c + 1].count, "resolution_a": curve.resolution_0143_a,
                "lowpass_a": vs / cuts[c], "mean_score": float(np.mean(scores[classes == c])),
                "fsc": [round(float(v), 4) for v in curves[c]],
            })  # fmt: skip
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
        if out_dir is not None:
            state = {"matrices_xyz": mats, "shifts_zyx": shifts, "scores": scores, "classes": classes, "half": half,
                     "resolution_a": res, "fsc_curves": curves}  # fmt: skip
            save_checkpoint(out_dir, state, {**meta, "history": history, "iterations_done": it + 1})
    bar.close()
    result = _finish(sums, k, vs, mask, config, mats, shifts, scores, classes, half, history)
    return replace(result, tilt_range_deg=tilt, phase_flipped=microscope is not None)


def _finish(sums, k, vs, mask, config, mats, shifts, scores, classes, half, history) -> AverageResult:
    maps, halves, curves, resolution = [], [], [], []
    for c in range(k):
        a, b = sums[2 * c], sums[2 * c + 1]
        maps.append((a + b).to_map(config.wiener_fraction))
        halves.append((a.to_map(config.wiener_fraction), b.to_map(config.wiener_fraction)))
        if a.count and b.count:
            curve = fsc(halves[-1][0], halves[-1][1], voxel_size_a=vs, mask=mask)
        else:  # an empty half: no FSC can be measured
            shells = maps[-1].shape[0] // 2 + 1
            curve = FSCResult(np.arange(shells) / (maps[-1].shape[0] * vs), np.full(shells, np.nan), np.zeros(shells, np.int64),
                              float("inf"), float("inf"), 0.0, vs)
        curves.append(curve)
        resolution.append(curve.resolution_0143_a)
    ali = Alignment(mats.copy(), shifts.copy(), scores.copy())
    return AverageResult(maps, halves, curves, resolution, ali, classes.copy(), half.copy(), history, mask)


def result_summary(result: AverageResult, config: AverageConfig, data: ParticleData, seconds: float) -> dict:
    """JSON-able summary of a run (resolutions, class sizes, history, config)."""
    return {
        "particles": len(result.classes),
        "box": data.box,
        "voxel_size_a": data.voxel_size_a,
        "tilt_range_deg": list(result.tilt_range_deg),
        "phase_flipped": result.phase_flipped,
        "acquisition": data.acquisition.to_dict(),
        "classes": [
            {"class": c + 1, "particles": int((result.classes == c).sum()), "resolution_fsc0143_a": result.fsc[c].resolution_0143_a,
             "resolution_fsc05_a": result.fsc[c].resolution_05_a, "fsc_sum": result.fsc[c].fsc_sum}
            for c in range(len(result.maps))
        ],
        "seconds": seconds,
        "history": result.history,
        "config": dataclasses.asdict(config),
    }  # fmt: skip
