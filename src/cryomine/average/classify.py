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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

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
from cryomine.average.state import Problem, State
from cryomine.errors import InputError
from cryomine.evaluate.fsc import FSCResult, fsc
from cryomine.geometry.wedge import missing_wedge_mask

__all__ = ["AverageResult", "assign_classes", "run_average", "seed_references"]


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


def seed_references(problem: Problem, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` seed particles as starting references (low-passed, masked; coverage: their own sampled region)."""
    particles, n, k, config = problem.parts, problem.n, problem.k, problem.config
    wedge = missing_wedge_mask((n, n, n), *problem.tilt, rfft=True).astype(np.float32)
    spectra = particle_spectra(particles, problem.init_cut, problem.tilt, whiten=config.align.whiten)
    seeds = [int(rng.integers(len(particles)))]
    best = np.full(len(particles), -1.0)
    while len(seeds) < k:
        ref = ReferenceSampler(_prepare(particles[seeds[-1]], problem.init_cut, problem.mask, False), wedge)
        best = np.maximum(best, align_particles(spectra, ref, config.align, voxel_size_a=problem.vs).scores)
        weight = np.clip(1.0 - best, 0.0, None) ** 2
        weight[seeds] = 0.0
        if weight.sum() <= 0:
            weight = np.ones(len(particles))
            weight[seeds] = 0.0
        seeds.append(int(rng.choice(len(particles), p=weight / weight.sum())))
    return [(particles[s].copy(), wedge) for s in seeds]


def register_halves(problem: Problem, state: State, sums: list[WedgeSums], c: int, cutoff: float) -> WedgeSums | None:
    """Align class ``c``'s second half map to its first (local search) and move that half's poses along.

    If half map 2 is half map 1 rotated by ``G`` and shifted by ``s``, each of its particles' poses becomes
    ``(A G, t + A s)``; the half's sums are recomputed and returned (None when nothing moved or a half is empty).
    """
    a, b = sums[2 * c], sums[2 * c + 1]
    if a.count == 0 or b.count == 0:
        return None
    config = problem.config
    m0, m1 = (lowpass(x.to_map(config.wiener_fraction), cutoff) * problem.mask for x in (a, b))
    spectra = particle_spectra(m1[None], cutoff, (-90.0, 90.0), whiten=False)
    start = Alignment(np.eye(3)[None], np.zeros((1, 3)), np.full(1, -np.inf))
    al = config.align
    found = local_refine(spectra, ReferenceSampler(m0), start, al.angular_step_deg / 2.0, al.local_step_deg, 1.0, al.max_shift_vox, al.chunk_mb)
    g, s_zyx = found.matrices_xyz[0], found.shifts_zyx[0]
    if np.degrees(np.arccos(np.clip((np.trace(g) - 1) / 2, -1, 1))) < 0.1 and np.abs(s_zyx).max() < 0.05:
        return None
    rows = np.flatnonzero((state.classes == c) & (state.half == 1))
    state.shifts[rows] = state.shifts[rows] + (state.mats[rows] @ s_zyx[::-1])[:, ::-1]
    state.mats[rows] = state.mats[rows] @ g
    group = np.full(len(problem.parts), -1)
    group[rows] = 0
    return accumulate(problem.parts, state.mats, state.shifts, problem.tilt, group, 1)[0]


def _meta(problem: Problem, data: ParticleData) -> dict:
    return {"config": problem.config.to_dict(), "n": len(data.particles), "box": data.box, "source": data.tomo_name,
            "n_refs": 0 if problem.references is None else len(problem.references)}


def _problem(data: ParticleData, config: AverageConfig, references: Sequence[np.ndarray] | None, mask: np.ndarray | None) -> Problem:
    """Validate the inputs of :func:`run_average` and phase-flip the particles where the optics are known."""
    parts, vs, n, k = data.particles, data.voxel_size_a, data.box, config.classes
    if parts.ndim != 4 or parts.shape[1:] != (n, n, n):
        raise InputError(f"particles must be cubes (N, n, n, n), got shape {parts.shape}")
    if len(parts) < 2 * k:
        raise InputError(f"need at least 2 particles per class ({2 * k}), got {len(parts)}")
    refs = None
    if references is not None:
        refs = [np.asarray(r, np.float32) for r in references]
        if len(refs) != k:
            raise InputError(f"give {k} references for {k} classes (or none), got {len(refs)}", "--reference")
        for r in refs:
            if r.shape != (n, n, n):
                raise InputError(f"reference has shape {r.shape}, the particles are {n}³", "--reference")
    if mask is None:
        mask = soft_sphere_mask(n, config.resolved_mask_radius_vox(n, vs), config.mask_edge_vox)
    elif mask.shape != (n, n, n):
        raise InputError(f"mask has shape {mask.shape}, the particles are {n}³", "--mask")
    tilt = config.resolved_tilt_range(data.acquisition)
    microscope = data.acquisition.microscope("average (CTF phase flip)") if config.phase_flip else None
    if microscope is not None:
        parts = phase_flip(parts, vs, microscope)
    return Problem(parts, vs, k, tilt, mask, config, refs, microscope is not None)


def _start(problem: Problem, meta: dict, out_dir: str | Path | None, resume: bool) -> State:
    saved = load_checkpoint(out_dir) if out_dir is not None else None
    if saved is not None and not resume:
        raise InputError("output folder holds an unfinished or finished run; use --resume or another --out", out_dir)
    if not (resume and saved is not None):
        return State.fresh(problem)
    arrays, old = saved
    same = {key: old.get(key) for key in meta}
    same["config"] = {**(same["config"] or {}), "iterations": problem.config.iterations}  # more iterations may be asked for
    if same != meta:
        raise InputError("checkpoint was made with other parameters or input; cannot resume", out_dir)
    return State.restored(arrays, old, problem.config.seed)


def _references(problem: Problem, state: State, sums: list[WedgeSums], it: int) -> tuple[list[list[ReferenceSampler]], np.ndarray]:
    """Per class the two half references and the cut-offs of iteration ``it``."""
    config, k, joint = problem.config, problem.k, it < problem.n_joint
    cuts = np.full(k, problem.init_cut)
    refs: list[list[ReferenceSampler]] = []
    if it == 0:
        if problem.references is not None:
            starts = [(r, None) for r in problem.references]
        elif k == 1:
            starts = [random_rotation_average(problem.parts, problem.tilt, state.rng, config.wiener_fraction)]
        else:
            starts = seed_references(problem, state.rng)
        for vol, cov in starts:
            s = ReferenceSampler(_prepare(vol, problem.init_cut, problem.mask, problem.centre()), cov)
            refs.append([s, s])
        return refs, cuts
    for c in range(k):
        if not joint:
            cuts[c] = min(problem.vs / state.res[c], problem.nyq)
        pair = [sums[2 * c] + sums[2 * c + 1]] * 2 if joint else [sums[2 * c], sums[2 * c + 1]]
        weights = fsc_weights(state.curves[c]) if (config.fsc_weighting and not joint) else None
        refs.append([ReferenceSampler(_prepare(p.to_map(config.wiener_fraction), cuts[c], problem.mask, problem.centre(), weights),
                                      p.coverage(config.wiener_fraction)) for p in pair])  # fmt: skip
    if k > 1:  # classes compete on equal terms: score every class over the same frequencies
        cuts[:] = cuts.min()
    return refs, cuts


def _align(problem: Problem, state: State, refs: list[list[ReferenceSampler]], cuts: np.ndarray, bar: tqdm) -> None:
    """Align each half set to its class references; assign classes and poses (in ``state``)."""
    k, edge = problem.k, 1.5 / problem.n
    spectra = particle_spectra(problem.parts, min(float(cuts.max()) + edge, problem.nyq), problem.tilt, whiten=problem.config.align.whiten)
    for h in (0, 1):
        rows = np.flatnonzero(state.half == h)
        per_class = []
        for c in range(k):
            sub = spectra.subset(min(cuts[c] + edge, problem.nyq), rows)
            per_class.append(align_particles(sub, refs[c][h], problem.config.align, voxel_size_a=problem.vs))
            bar.update(len(rows) // k if c < k - 1 else len(rows) - (k - 1) * (len(rows) // k))
        table = np.stack([a.scores for a in per_class], axis=1)
        best = assign_classes(table) if k > 1 else np.zeros(len(rows), np.int64)
        pick = np.arange(len(rows))
        state.classes[rows] = best
        state.mats[rows] = np.stack([a.matrices_xyz for a in per_class], 1)[pick, best]
        state.shifts[rows] = np.stack([a.shifts_zyx for a in per_class], 1)[pick, best]
        state.scores[rows] = table[pick, best]


def _measure(problem: Problem, state: State, sums: list[WedgeSums], cuts: np.ndarray, it: int) -> dict:
    """Keep the half maps in register (gold-standard rounds), measure each class's FSC; the history entry."""
    joint, config, vs = it < problem.n_joint, problem.config, problem.vs
    entry: dict = {"iteration": it + 1, "gold_standard": not joint, "seconds": 0.0, "classes": []}
    if not joint:  # keep the two half maps in register (EMAN2 aligns the odd map to the even one likewise)
        for c in range(problem.k):
            moved = register_halves(problem, state, sums, c, min(cuts[c] + 1.5 / problem.n, problem.nyq))
            if moved is not None:
                sums[2 * c + 1] = moved
    for c in range(problem.k):
        a, b = sums[2 * c], sums[2 * c + 1]
        if min(a.count, b.count) == 0:
            entry["classes"].append({"particles": a.count + b.count, "resolution_a": None})
            continue
        curve = fsc(a.to_map(config.wiener_fraction), b.to_map(config.wiener_fraction), voxel_size_a=vs, mask=problem.mask)
        state.res[c] = curve.resolution_0143_a
        state.curves[c] = np.nan_to_num(curve.fsc, nan=0.0)
        entry["classes"].append({
            "particles": a.count + b.count, "resolution_a": curve.resolution_0143_a, "lowpass_a": vs / cuts[c],
            "mean_score": float(np.mean(state.scores[state.classes == c])), "fsc": [round(float(v), 4) for v in state.curves[c]],
        })  # fmt: skip
    return entry


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
    problem = _problem(data, config, references, mask)
    meta = _meta(problem, data)
    state = _start(problem, meta, out_dir, resume)
    sums = accumulate(problem.parts, state.mats, state.shifts, problem.tilt, state.classes * 2 + state.half, 2 * problem.k) \
        if state.start > 0 else []
    n_part = len(problem.parts)
    bar = tqdm(total=config.iterations * n_part, initial=state.start * n_part, desc="averaging", unit="particle", disable=not progress)
    for it in range(state.start, config.iterations):
        t0 = time.perf_counter()
        refs, cuts = _references(problem, state, sums, it)
        _align(problem, state, refs, cuts, bar)
        sums = accumulate(problem.parts, state.mats, state.shifts, problem.tilt, state.classes * 2 + state.half, 2 * problem.k)
        entry = _measure(problem, state, sums, cuts, it)
        entry["seconds"] = time.perf_counter() - t0
        state.history.append(entry)
        if out_dir is not None:
            save_checkpoint(out_dir, state.arrays(), {**meta, "history": state.history, "iterations_done": it + 1})
    bar.close()
    return _finish(problem, state, sums)


def _finish(problem: Problem, state: State, sums: list[WedgeSums]) -> AverageResult:
    maps, halves, curves, resolution = [], [], [], []
    wiener, vs = problem.config.wiener_fraction, problem.vs
    for c in range(problem.k):
        a, b = sums[2 * c], sums[2 * c + 1]
        maps.append((a + b).to_map(wiener))
        halves.append((a.to_map(wiener), b.to_map(wiener)))
        if a.count and b.count:
            curve = fsc(halves[-1][0], halves[-1][1], voxel_size_a=vs, mask=problem.mask)
        else:  # an empty half: no FSC can be measured
            shells = maps[-1].shape[0] // 2 + 1
            curve = FSCResult(np.arange(shells) / (maps[-1].shape[0] * vs), np.full(shells, np.nan), np.zeros(shells, np.int64),
                              float("inf"), float("inf"), 0.0, vs)
        curves.append(curve)
        resolution.append(curve.resolution_0143_a)
    ali = Alignment(state.mats.copy(), state.shifts.copy(), state.scores.copy())
    return AverageResult(maps, halves, curves, resolution, ali, state.classes.copy(), state.half.copy(), state.history,
                         problem.mask, problem.tilt, problem.phase_flipped)


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
