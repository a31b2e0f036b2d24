"""The search loop of template matching: tile by tile over the tomogram, the statistics of every score, the
search region, and the threshold those statistics give (driven by :func:`cryomine.pick.template.match_template`)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from tqdm import tqdm

from cryomine.errors import InputError
from cryomine.pick.correlate import _Correlator
from cryomine.pick.job import TileProgress
from cryomine.pick.tiles import read_window
from cryomine.resources import release_pages

__all__ = ["false_positive_threshold", "check_search_mask", "run_tiles"]


def false_positive_threshold(search: dict[str, float], false_positives: float) -> float:
    """The score above which ``false_positives`` noise peaks are expected in the whole search (Rickgauer et al.
    2017; pytom-match-pick's ``--number-of-false-positives``): scores of a search of ``n`` (voxel, orientation)
    pairs, Gaussian of ``mean`` and ``std`` under noise, exceed ``mean + std * sqrt(2) * erfcinv(2 F / n)`` with
    probability ``F / n``. Neighbouring scores are correlated, so the expected count is an upper bound."""
    n = float(search["n"])
    if not 0 < false_positives < n / 2:
        raise InputError(f"expected false positives must be in (0, {n / 2:g}) for this search, got {false_positives:g}",
                         "--false-positives")  # fmt: skip
    return float(search["mean"] + search["std"] * math.sqrt(2.0) * special.erfcinv(2.0 * false_positives / n))


def check_search_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The search region as a bool array of the tomogram's shape (> 0.5 inside), or None."""
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise InputError(f"tomogram mask shape {arr.shape} differs from the tomogram's {tuple(shape)}", "--tomogram-mask")
    if not np.isfinite(arr).all():
        raise InputError("tomogram mask contains NaN or infinite voxels", "--tomogram-mask")
    inside = arr > 0.5
    if not inside.any():
        raise InputError("tomogram mask has no voxel above 0.5: nothing to search", "--tomogram-mask")
    return inside


def run_tiles(volume: np.ndarray, tiles: list, corr: _Correlator, mean: float, std: float, scores: np.ndarray,
               index: np.ndarray, total: int, progress: bool, workers: int, within: np.ndarray | None,
               state: TileProgress) -> dict[str, float]:  # fmt: skip
    """Correlate every tile not yet in ``state.done`` (skipping those wholly outside ``within``); fill ``scores`` /
    ``index`` cores (0 outside ``within``; with a phase-randomised template, ``scores`` holds the difference
    ``raw - noise``); return the search statistics (``n``, ``mean``, ``std`` of every score of every orientation
    at every searched voxel, and ``noise_mean``, the mean maximum score of the phase-randomised template over the
    searched voxels, with one)."""
    sums, n = np.zeros(4), int(state.n)
    sums[: len(state.sums)] = state.sums  # [sum, sum of squares, noise maxima's sum, their count]
    with tqdm(total=total, desc="template matching", unit="angle", disable=not progress, miniters=max(1, total // 200)) as bar:
        bar.update(len(state.done) * corr.mats.shape[0])
        for ti, tile in enumerate(tiles):
            if ti in state.done:
                continue
            part_mask = None if within is None else within[tile.core]
            if part_mask is not None and not part_mask.any():
                scores[tile.core], index[tile.core] = 0.0, 0
                bar.update(corr.mats.shape[0])
            else:
                n += _tile(volume, tile, corr, mean, std, scores, index, bar, workers, part_mask, sums)
            release_pages(volume)  # the tile's input window: read once
            if state.on_tile is not None:
                release_pages(scores, index)
                state.on_tile(ti, sums, n)
    if n == 0:
        raise InputError("nothing was searched", "--tomogram-mask")
    mean_s = sums[0] / n
    search = {"n": float(n), "mean": float(mean_s), "std": float(math.sqrt(max(sums[1] / n - mean_s**2, 0.0)))}
    if corr.noise is not None:
        search["noise_mean"] = float(sums[2] / max(sums[3], 1.0))
    return search


def _tile(volume: np.ndarray, tile, corr: _Correlator, mean: float, std: float, scores: np.ndarray, index: np.ndarray,
          bar: tqdm, workers: int, part_mask: np.ndarray | None, sums: np.ndarray) -> int:  # fmt: skip
    """Correlate one tile, write its core, add to ``sums`` (in place); return the number of scores counted."""
    window = read_window(volume, tile.window_start_zyx, tile.window_shape_zyx, mean, std)
    lead = tuple(r.start - w for r, w in zip(tile.region, tile.window_start_zyx))
    core = tile.core_in_region
    res = corr.run(window, tile.region_shape, lead, bar, workers, core, None if part_mask is None or part_mask.all() else part_mask)
    best = res.best[core]
    if res.noise is not None:
        noise = res.noise[core]
        counted = noise if part_mask is None else noise[part_mask]
        sums[2:] += [counted.sum(dtype=np.float64), counted.size]
        best = best - noise
    if part_mask is not None:
        best = np.where(part_mask, best, 0.0)
    scores[tile.core] = best
    index[tile.core] = res.index[core]
    sums[:2] += res.sums
    return (int(part_mask.sum()) if part_mask is not None else best.size) * corr.mats.shape[0]
