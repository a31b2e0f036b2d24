"""Template matching: FFT fast local correlation (Roseman 2003) over a uniform angular grid, in torch.

For every orientation ``A`` of :func:`cryomine.geometry.angular_sampling` (RELION ZYZ, the template rotated by
``A`` with :func:`cryomine.geometry.rotate_volumes` is the particle in orientation ``A``), as in PyTom / STOPGAP:

1. rotate the template (trilinear) in its ``(m, m, m)`` box about voxel ``m // 2``;
2. weight it in Fourier space by the tomogram's transfer: the missing-wedge mask of the tilt range
   (:func:`cryomine.geometry.missing_wedge_mask`, in the tomogram frame, so after the rotation) times
   ``-CTF * envelope * MTF`` (:func:`cryomine.acquisition.ctf.transfer_function`; the minus because tomograms here
   have protein bright, i.e. the reconstruction was sign-flipped after the physical CTF);
3. normalise it under the mask ``M`` (``N = sum M`` voxels) to zero mean and unit variance, zero outside ``M``;
4. correlate with the standardised tomogram ``v`` by FFT and divide by the local standard deviation of ``v``
   under the mask at every position (the "fast local correlation function"; ``c = m // 2``)::

       score(p) = sum_x t'(x) v(p + x - c) / (N * sigma_M(p)),   sigma_M(p)^2 = <v^2>_M(p) - <v>_M(p)^2

   a Pearson correlation in [-1, 1]. A spherical mask is rotation invariant, so ``sigma_M`` is computed once
   per tile; a custom mask is rotated with the template and ``sigma_M`` is computed per orientation.

Per voxel the maximum score over orientations and the index of the best orientation are kept. Implementation:
orientations in batches of ``angle_batch``; real FFTs (``rfft``); the template's forward transform skips the
zero padding axis by axis (only ``m`` of ``L`` planes are non-zero); the template is flipped so the product of
spectra needs no conjugate. On CUDA every step is torch; on CPU the tile-size transforms use ``scipy.fft``
(faster than torch's CPU FFT here) and the orientations are shared among ``threads`` worker threads. The
tomogram is standardised, zero-padded at its faces (no wrap-around) and processed in overlapping tiles
(:mod:`cryomine.pick.tiles`) when it does not fit ``memory_gb``; it is read through memory maps, so it never
needs to fit in memory as a whole. With ``config.invert`` the standardised tomogram is negated (for protein-dark
reconstructions): the scores of an inverted protein-dark copy are those of the protein-bright original.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cryomine import __version__
from cryomine.acquisition import Acquisition
from cryomine.acquisition.ctf import transfer_function
from cryomine.devices import resolve_device
from cryomine.errors import InputError
from cryomine.geometry import angular_sampling, euler_zyz_to_matrix, missing_wedge_mask, reduce_by_symmetry
from cryomine.io.atomic import atomic_output, check_writable
from cryomine.io.mrc import set_geometry, set_header_stats
from cryomine.io.star import write_particles
from cryomine.io.volume import open_volume
from cryomine.pick.background import add_background_mean, phase_randomized
from cryomine.pick.config import PeakConfig, TemplateMatchConfig
from cryomine.pick.contrast import template_contrast, tomogram_contrast, warn_if_dark
from cryomine.pick.correlate import _Correlator
from cryomine.pick.job import SearchJob, TileProgress
from cryomine.pick.peaks import Candidates, Picks, candidate_floor, map_candidates, population_split, select_peaks
from cryomine.pick.search import check_search_mask, false_positive_threshold, run_tiles
from cryomine.pick.template_input import load_match_template
from cryomine.pick.tiles import plan_tiles, tile_bytes, volume_stats
from cryomine.pick.weighting import per_tilt_weight
from cryomine.resources import format_bytes, process_rss_bytes

__all__ = ["MatchResult", "extract_picks", "false_positive_threshold", "match_template",
           "match_template_file", "template_weight", "spherical_mask", "template_radius_vox"]



@dataclass(frozen=True)
class MatchResult:
    """Output of :func:`match_template`.

    ``scores``: ``(d, h, w)`` float32 maximum score over orientations. ``angle_index``: ``(d, h, w)`` index of the
    best orientation into ``angles_zyz`` (``(n, 3)`` RELION rot, tilt, psi degrees). ``picks``: the extracted
    peaks with their orientations. ``threshold``: the score threshold applied (None if only top-N).
    ``search``: the statistics of every score of the search (each voxel, each orientation): ``n`` (the search
    space), ``mean`` and ``std``; the automatic threshold comes from them (:func:`false_positive_threshold`).
    ``threshold_rule``: ``"given"``, ``"top-n"``, ``"false positives"`` or ``"population split"``
    (:attr:`~cryomine.pick.config.PeakConfig.split_populations`).
    """

    scores: np.ndarray
    angle_index: np.ndarray
    angles_zyz: np.ndarray
    picks: Picks
    threshold: float | None
    n_tiles: int
    search: dict[str, float]
    threshold_rule: str = "given"


def template_radius_vox(template: np.ndarray, level: float = 0.1) -> float:
    """Largest distance (voxels) from the box centre ``m // 2`` of a voxel above ``level`` x the maximum, + 1."""
    t = np.asarray(template, np.float32)
    c = np.array([s // 2 for s in t.shape], np.float64)
    idx = np.argwhere(t > level * float(t.max()))
    if len(idx) == 0:
        raise InputError("template has no positive density", "--template")
    return float(np.sqrt(((idx - c) ** 2).sum(axis=1)).max()) + 1.0


def spherical_mask(size: int, radius_vox: float) -> np.ndarray:
    """``(size, size, size)`` float32 ball of ``radius_vox`` (voxels) centred on voxel ``size // 2``."""
    r = np.arange(size, dtype=np.float64) - size // 2
    d2 = r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2
    return (d2 <= float(radius_vox) ** 2).astype(np.float32)


def template_weight(size: int, voxel_size_a: float, config: TemplateMatchConfig) -> np.ndarray:
    """Fourier weight of an ``(m, m, m)`` template box, ``(m, m, m // 2 + 1)`` float32 (``rfftn`` layout).

    Missing-wedge mask of the tilt range (if ``config.wedge``) times ``-transfer_function(|k|)`` (if
    ``config.microscope``), ``|k|`` in 1/Å from the voxel size; with ``config.tilt_weighting``, the per-tilt
    weight of :func:`cryomine.pick.weighting.per_tilt_weight` instead.
    """
    if config.tilt_weighting is not None:
        return per_tilt_weight(size, voxel_size_a, config.tilt_weighting, config.microscope)
    weight = np.ones((size, size, size // 2 + 1), np.float64)
    if config.wedge:
        weight *= missing_wedge_mask((size, size, size), config.tilt_min_deg, config.tilt_max_deg, rfft=True)
    if config.microscope is not None:
        kz = np.fft.fftfreq(size)[:, None, None]
        ky = np.fft.fftfreq(size)[None, :, None]
        kx = np.fft.rfftfreq(size)[None, None, :]
        k = np.sqrt(kz**2 + ky**2 + kx**2) / float(voxel_size_a)
        weight *= -transfer_function(k, config.microscope, voxel_size_a)
    return weight.astype(np.float32)


def _check_template(template: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    t = np.asarray(template)
    if t.ndim != 3 or len(set(t.shape)) != 1:
        raise InputError(f"template must be a cubic (m, m, m) volume, got shape {t.shape}", "--template")
    t = t.astype(np.float32)
    if not np.isfinite(t).all() or not float(t.max()) > 0:
        raise InputError("template must be finite with positive (protein) density", "--template")
    if mask is not None:
        mk = np.asarray(mask, np.float32)
        if mk.shape != t.shape:
            raise InputError(f"mask shape {mk.shape} differs from the template's {t.shape}", "--mask")
        mk = (mk > 0.5).astype(np.float32)
        if mk.sum() < 8:
            raise InputError("mask has fewer than 8 voxels above 0.5", "--mask")
        return t, mk
    return t, None


RUN_RESERVE_BYTES = 256 * 2**20  # besides the tiles: peak extraction's slabs, candidates, header statistics


def _plan_within_memory(shape: tuple[int, int, int], m: int, config: TemplateMatchConfig, workers: int, held: int) -> list:
    """Tiles whose working memory (:func:`~cryomine.pick.tiles.tile_bytes`), with what this process already
    holds, ``held`` more bytes to come and :data:`RUN_RESERVE_BYTES`, stays within ``config.memory_gb`` (the
    whole run's peak memory); raises :class:`InputError` naming ``--memory-gb`` when even the smallest tiles
    cannot."""
    noise = config.random_phase_correction
    base = process_rss_bytes() + held + RUN_RESERVE_BYTES
    budget = int(config.memory_gb * 1e9) - base  # GB, as the option says
    tiles = plan_tiles(shape, m, config.tile_vox, max(budget, 1), config.angle_batch, pad_edges=config.pad_edges,
                       workers=workers, noise=noise)  # fmt: skip
    need = max(tile_bytes(int(np.prod(tl.window_shape_zyx)), config.angle_batch, workers, noise) for tl in tiles)
    if need > budget:
        raise InputError(f"{config.memory_gb:g} GB cannot hold this search: the program holds {format_bytes(base)} and its "
                         f"{'smallest ' if config.tile_vox is None else ''}tiles need {format_bytes(need)} "
                         f"({workers} thread(s), --angle-batch {config.angle_batch}); give at least "
                         f"{(base + need) / 1e9:.2g}", "--memory-gb")  # fmt: skip
    return tiles


def match_template(
    volume: np.ndarray,
    template: np.ndarray,
    voxel_size_a: float,
    config: TemplateMatchConfig = TemplateMatchConfig(),
    *,
    mask: np.ndarray | None = None,
    radius_vox: float | None = None,
    class_name: str | None = None,
    scores_out: np.ndarray | None = None,
    angles_out: np.ndarray | None = None,
    progress: bool = False,
    search_mask: np.ndarray | None = None,
    tiles_done: TileProgress | None = None,
    corrected_out: np.ndarray | None = None,
) -> MatchResult:
    """Match ``template`` against ``volume`` over all orientations of ``config`` and extract peaks.

    Args:
        volume: ``(d, h, w)`` tomogram (protein bright), any array-like incl. memory maps; read per tile.
        template: ``(m, m, m)`` density (protein positive), particle centre at voxel ``m // 2``.
        voxel_size_a: the tomogram's voxel size (Å), for CTF weighting.
        config: see :class:`~cryomine.pick.config.TemplateMatchConfig`.
        mask: optional ``(m, m, m)`` custom mask (binarised at 0.5, rotated with the template); default a ball of
            ``config.mask_radius_vox`` or of the template's radius.
        radius_vox: the particle radius (voxels) for the default exclusion radius, mask and face exclusion
            (:meth:`~cryomine.pick.config.PeakConfig.border_for`); default from the template's extent
            (:func:`template_radius_vox`).
        class_name: stored with the picks (``rlnClassName``).
        scores_out, angles_out: optional preallocated ``(d, h, w)`` outputs (e.g. memory maps of the result MRCs).
        progress: show a progress bar.
        search_mask: optional ``(d, h, w)`` region to search (e.g. the lamella; > 0.5 = inside, like
            pytom-match-pick's ``--tomogram-mask``): tiles wholly outside are skipped, scores outside are 0, no
            pick lies outside, and the search statistics count only voxels inside.
        tiles_done: a resumed search's progress (:class:`~cryomine.pick.job.TileProgress`): its finished tiles
            are skipped (their scores must already be in ``scores_out`` / ``angles_out``) and its callback is told
            of every tile finished.
        corrected_out: with ``config.random_phase_correction``, where the corrected scores go (``scores_out``
            then keeps ``raw - noise``, so that a resumed search can redo the correction); default in place.

    Returns:
        :class:`MatchResult`. Raises :class:`InputError` for a template larger than the tomogram, a bad mask,
        or a tomogram with NaN/inf or zero variance.
    """
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise InputError(f"tomogram must be 3-D, got shape {shape}")
    t, custom = _check_template(template, mask)
    m = t.shape[0]
    if any(m > s for s in shape):
        raise InputError(f"template box ({m} voxels) is larger than the tomogram {'x'.join(map(str, shape))}", "--template")
    radius = float(radius_vox) if radius_vox is not None else template_radius_vox(t)
    if custom is None:
        mask_r = min(config.mask_radius_vox if config.mask_radius_vox is not None else radius, m / 2.0)
        mk = spherical_mask(m, mask_r)
    else:
        mk = custom
    angles = reduce_by_symmetry(angular_sampling(config.angular_step_deg), config.angular_step_deg, config.symmetry)
    mats = euler_zyz_to_matrix(angles)
    device = resolve_device(config.device)
    within = check_search_mask(search_mask, shape)
    mean, std = volume_stats(volume)
    if config.invert:
        std = -std  # read_window computes (v - mean) / std: the standardised tomogram, negated
    threads = torch.get_num_threads()
    workers = (config.threads or threads) if device.type == "cpu" else 1
    held = 0 if scores_out is not None else 8 * int(np.prod(shape))  # in-memory score and angle maps
    tiles = _plan_within_memory(shape, m, config, workers, held)
    noise = phase_randomized(t, config.random_phase_seed) if config.random_phase_correction else None
    corr = _Correlator(t, mk, custom is None, template_weight(m, voxel_size_a, config), mats, config.angle_batch, device, noise)
    scores = scores_out if scores_out is not None else np.zeros(shape, np.float32)
    index = angles_out if angles_out is not None else np.zeros(shape, np.int32)
    total = len(tiles) * len(angles)
    if device.type == "cpu":
        torch.set_num_threads(1)  # parallel over orientations instead (one thread per worker)
    try:
        search = run_tiles(volume, tiles, corr, mean, std, scores, index, total, progress, workers, within,
                            tiles_done or TileProgress())  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    if noise is not None:  # raw - noise + mean(noise), written once every tile is done
        out = corrected_out if corrected_out is not None else scores
        add_background_mean(scores, out, search["noise_mean"], within)
        scores = out
    found, threshold, rule = extract_picks(scores, search, config.peaks, radius, within)
    idx = np.asarray([index[tuple(c)] for c in found.coords_zyx], np.int64)
    picks = Picks(found.coords_zyx.astype(np.float64), found.scores, angles[idx] if len(idx) else np.zeros((0, 3)), class_name)
    return MatchResult(scores, index, angles, picks, threshold, len(tiles), search, rule)


def extract_picks(scores: np.ndarray, search: dict[str, float], peaks: PeakConfig, radius_vox: float,
                  within: np.ndarray | None = None) -> tuple[Candidates, float | None, str]:  # fmt: skip
    """Picks of a ``(d, h, w)`` score map (any array-like, e.g. a memory map; read in slabs) by ``peaks`` and the
    search statistics ``search`` (:class:`MatchResult`): a given threshold, top-N, or the false-positive threshold
    raised to the population gap (:class:`~cryomine.pick.config.PeakConfig`); exclusion radius and face border
    default from ``radius_vox``; none outside the bool region ``within``. Returns the picks (best first), the
    threshold applied (None for top-N alone) and the rule (:attr:`MatchResult.threshold_rule`)."""
    threshold = peaks.threshold
    if threshold is None and peaks.top_n is None:
        threshold = false_positive_threshold(search, peaks.false_positives)
    dist = peaks.min_distance_vox if peaks.min_distance_vox is not None else radius_vox
    floor = candidate_floor(threshold) if threshold is not None else 0.0  # peaks must correlate positively
    cands = map_candidates(scores, floor, top_n=peaks.top_n, min_distance_vox=dist)  # bounded memory
    if within is not None:  # no pick outside the searched region
        inside = within[tuple(cands.coords_zyx.T)] if len(cands) else np.zeros(0, bool)
        cands = Candidates(cands.coords_zyx[inside], cands.scores[inside])
    found = select_peaks(cands, dist, peaks.top_n, threshold, tuple(scores.shape), peaks.border_for(radius_vox))  # type: ignore[arg-type]
    rule = "given" if peaks.threshold is not None else "top-n" if peaks.top_n is not None else "false positives"
    if rule == "false positives" and peaks.split_populations:
        split = population_split(found.scores)
        if split is not None and split > threshold:  # greedy suppression above a higher threshold keeps a prefix
            threshold, rule = split, "population split"
            found = Candidates(found.coords_zyx[found.scores >= split], found.scores[found.scores >= split])
    return found, threshold, rule


def match_template_file(
    tomogram: str | os.PathLike[str],
    template: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TemplateMatchConfig = TemplateMatchConfig(),
    *,
    mask: str | os.PathLike[str] | None = None,
    voxel_size_a: float | None = None,
    progress: bool = False,
    template_voxel_size_a: float | None = None,
    acquisition: Acquisition | None = None,
    class_name: str | None = None,
    tomogram_mask: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> tuple[MatchResult, list[Path]]:
    """Template-match a tomogram MRC and write the results beside the picks STAR ``out``.

    ``template`` is a bundled structure id or a PDB/mmCIF/MRC file and ``mask`` an optional MRC in the
    template's box, loaded at the tomogram's voxel size by :func:`~cryomine.pick.template_input.load_match_template`
    (an MRC template keeps its own box and centre unless ``config.recenter_template``). ``voxel_size_a``
    overrides the tomogram header's voxel size (Å); an unset (0) header without it is an :class:`InputError`.
    A tomogram or MRC template that looks protein-dark after ``config.invert`` / ``config.invert_template``
    gives a :class:`~cryomine.pick.contrast.ContrastWarning`. Writes ``out`` (RELION STAR: ``rlnCoordinateX/Y/Z``,
    ``rlnAngleRot/Tilt/Psi``, ``rlnAutopickFigureOfMerit`` = score, ``rlnClassName`` = template name,
    ``rlnTomoName``), ``<stem>_scores.mrc`` (maximum score per voxel), ``<stem>_angles.mrc`` (best orientation
    index per voxel, stored as float32, exact up to 2^24 orientations), both with the tomogram's voxel size and
    origin, ``<stem>_angles.csv`` (index, rot, tilt, psi) and ``<stem>.json`` (parameters and summary). Score
    and angle maps are written through memory maps (the returned result's ``scores`` and ``angle_index`` are
    memory maps of the written files). ``acquisition``: the tomogram's metadata, recorded in the JSON (the
    config's tilt range and optics are what the matching used). ``class_name`` names the picks' class
    (``rlnClassName``; default the template's name: a bundled id or the file's stem). ``tomogram_mask``: an MRC
    (or ``.em``) of the tomogram's shape, the region to search (``search_mask`` of :func:`match_template`).
    The search can be resumed after an interruption (``resume``; :mod:`cryomine.pick.job`).
    """
    if class_name is not None and (not str(class_name).strip() or any(c.isspace() for c in str(class_name))):
        raise InputError(f"class name must be one word without spaces, got {class_name!r}", "--class-name")
    t0 = time.perf_counter()
    out = Path(out)
    stem = out.with_suffix("")
    paths = [out, Path(f"{stem}_scores.mrc"), Path(f"{stem}_angles.mrc"), Path(f"{stem}_angles.csv"), Path(f"{stem}.json")]
    check_writable(*paths)  # before the search, not after it
    with open_volume(tomogram, voxel_size_a, option="--voxel-size") as tomo:
        vol, vs = tomo.data, tomo.voxel_size_a
        tmpl = load_match_template(template, vs, config, mask, template_voxel_size_a)
        if tmpl.kind != "structure":
            warn_if_dark(template_contrast(tmpl.density, tmpl.mask), template, "--invert-template", config.invert_template)
        warn_if_dark(tomogram_contrast(vol, config.invert), tomogram, "--invert", config.invert)
        shape = tuple(int(s) for s in vol.shape)
        search_mask = None
        if tomogram_mask is not None:
            with open_volume(tomogram_mask, vs, option="--tomogram-mask") as region:
                search_mask = check_search_mask(np.asarray(region.data), shape)
        key = SearchJob.key_of({"tomogram": tomogram, "template": template, "mask": mask, "tomogram_mask": tomogram_mask},
                               {"config": asdict(config), "voxel_size_a": vs, "template_voxel_size_a": template_voxel_size_a,
                                "class_name": class_name})  # fmt: skip
        job = SearchJob(stem, key, shape)
        job.start(resume)
        try:
            with job.maps(config.random_phase_correction) as (ms, ma, mc):
                result = match_template(vol, tmpl.density, vs, config, mask=tmpl.mask, radius_vox=tmpl.radius_vox,
                                        class_name=class_name or tmpl.name, scores_out=ms.data, angles_out=ma.data, progress=progress,
                                        search_mask=search_mask, tiles_done=job.progress,
                                        corrected_out=None if mc is None else mc.data)  # fmt: skip
                for mrc in (ms if mc is None else mc, ma):
                    set_geometry(mrc, vs, tomo.origin_zyx_a)
                    set_header_stats(mrc, mrc.data)  # in slabs: no full-size temporary
        except InputError:
            if not job.progress.done:  # refused before any work: leave nothing behind
                job.discard()
            raise
        job.finish(paths[1], paths[2])
    write_particles(out, result.picks.to_table(Path(tomogram).stem), pixel_size_a=vs)
    with atomic_output(paths[3]) as tmp:
        idx = np.arange(len(result.angles_zyz))
        np.savetxt(tmp, np.column_stack([idx, result.angles_zyz]), fmt=["%d", "%.6g", "%.6g", "%.6g"], delimiter=",",
                   header="index,rlnAngleRot,rlnAngleTilt,rlnAnglePsi", comments="")  # fmt: skip
    radius = tmpl.radius_vox if tmpl.radius_vox is not None else template_radius_vox(tmpl.density)
    summary = {
        "method": "template", "tomogram": str(tomogram), "template": str(template), "voxel_size_a": vs,
        "origin_zyx_a": list(tomo.origin_zyx_a), "template_kind": tmpl.kind, "template_box_vox": int(tmpl.density.shape[0]),
        "template_voxel_size_a": tmpl.source_voxel_size_a, "template_rescaled_to_a": tmpl.voxel_size_a if tmpl.rescaled else None,
        "radius_vox": radius, "border_vox": config.peaks.border_for(radius), "n_orientations": len(result.angles_zyz),
        "n_tiles": result.n_tiles, "threshold": result.threshold, "n_picks": len(result.picks), "search_space": result.search,
        "threshold_rule": {"given": "--threshold", "top-n": "--top-n (no threshold)",
                           "false positives": f"{config.peaks.false_positives:g} expected false positive(s) over the search space",
                           "population split": "the gap above the other peaks' population (above the false-positive threshold)",
                           }[result.threshold_rule],
        "seconds": round(time.perf_counter() - t0, 2), "config": asdict(config), "cryomine_version": __version__,
        "acquisition": acquisition.to_dict() if acquisition is not None else None,
        "tomogram_mask": None if tomogram_mask is None else str(tomogram_mask),
    }  # fmt: skip
    with atomic_output(paths[4]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return result, paths
