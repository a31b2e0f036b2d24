"""Template-free picking: Difference of Gaussians (DoG) tuned to the expected particle radius.

``DoG = G(sigma_1) * v - G(sigma_2) * v`` with ``sigma_1 < sigma_2`` around ``sigma = radius / sqrt(3)`` (see
:class:`~cryomine.pick.config.DogConfig`) is a band-pass that responds most to bright blobs of that radius. The
response is standardised (``(r - median) / (1.4826 MAD)``) so scores read as robust standard deviations above
background, and peaks are extracted with :func:`cryomine.pick.peaks.find_peaks` (exclusion radius defaulting to
the particle radius, face exclusion by default half of it). The tomogram is expected protein-bright (as
cryomine's simulator writes it); ``DogConfig.invert`` negates a protein-dark one first.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from cryomine import __version__
from cryomine.errors import InputError
from cryomine.geometry.validate import check_volume
from cryomine.io.atomic import atomic_output, check_writable
from cryomine.io.mrc import Volume, write_mrc
from cryomine.io.star import write_particles
from cryomine.io.volume import open_volume
from cryomine.pick.config import DogConfig
from cryomine.pick.contrast import tomogram_contrast, warn_if_dark
from cryomine.pick.peaks import MAD_TO_SIGMA, Picks, find_peaks, robust_threshold
from cryomine.resources import check_memory

__all__ = ["DogResult", "dog_response", "pick_dog", "pick_dog_file"]


@dataclass(frozen=True)
class DogResult:
    """``scores``: ``(d, h, w)`` standardised DoG response; ``picks``: the peaks; ``threshold`` applied (or None)."""

    scores: np.ndarray
    picks: Picks
    threshold: float | None


def dog_response(volume: np.ndarray, config: DogConfig) -> np.ndarray:
    """Standardised DoG response of a ``(d, h, w)`` volume (float32, same shape; 0 = median background)."""
    vol = check_volume(volume, name="tomogram")
    s1, s2 = config.sigmas_vox
    out = ndimage.gaussian_filter(vol, s1, mode="reflect")
    out -= ndimage.gaussian_filter(vol, s2, mode="reflect")
    sample = out[::2, ::2, ::2]
    med = float(np.median(sample))
    mad = float(np.median(np.abs(sample - med))) * MAD_TO_SIGMA
    if not mad > 0:
        raise InputError("tomogram has no structure at the particle scale (DoG response is constant)", "--radius")
    out -= med
    out /= mad
    return out.astype(np.float32, copy=False)


def pick_dog(volume: np.ndarray, config: DogConfig, class_name: str | None = None) -> DogResult:
    """Pick bright blobs of ``config.radius_vox`` in a ``(d, h, w)`` tomogram (negated first with
    ``config.invert``); scores are the standardised DoG."""
    vol = check_volume(volume, name="tomogram")
    if 2 * float(config.radius_vox) > min(vol.shape):
        raise InputError(f"particle radius {float(config.radius_vox):.4g} voxels is more than half the tomogram's smallest side "
                         f"({min(vol.shape)} voxels)", "--radius")  # fmt: skip
    scores = dog_response(-vol if config.invert else vol, config)
    peaks = config.peaks
    threshold = peaks.threshold
    if threshold is None and peaks.top_n is None:
        threshold = robust_threshold(scores[::2, ::2, ::2], peaks.auto_sigma)
    found = find_peaks(scores, replace(peaks, threshold=threshold), float(config.radius_vox))
    picks = Picks(found.coords_zyx.astype(np.float64), found.scores, None, class_name)
    return DogResult(scores, picks, threshold)


def pick_dog_file(
    tomogram: str | os.PathLike[str], out: str | os.PathLike[str], config: DogConfig, class_name: str | None = None,
    *, voxel_size_a: float | None = None,
) -> tuple[DogResult, list[Path]]:
    """DoG-pick a tomogram MRC; write ``out`` (RELION STAR with ``rlnAutopickFigureOfMerit`` = score,
    ``rlnTomoName``), ``<stem>_scores.mrc`` (the standardised DoG response, with the tomogram's voxel size and
    origin) and ``<stem>.json`` (parameters). ``voxel_size_a`` overrides the header's voxel size (Å); an unset
    (0) header without it is an :class:`InputError`. A tomogram that looks protein-dark (after ``config.invert``)
    gives a :class:`~cryomine.pick.contrast.ContrastWarning`."""
    t0 = time.perf_counter()
    stem = Path(out).with_suffix("")
    check_writable(out, f"{stem}_scores.mrc", f"{stem}.json")  # before any work
    with open_volume(tomogram, voxel_size_a, option="--voxel-size") as mapped:
        # the tomogram, two band-pass copies and the score map, float32
        check_memory(4.0 * 4 * mapped.data.size, f"DoG picking of a {'x'.join(map(str, mapped.data.shape))} tomogram", tomogram)
        vol = Volume(check_volume(np.array(mapped.data, dtype=np.float32), tomogram), mapped.voxel_size_a, mapped.origin_zyx_a)
    warn_if_dark(tomogram_contrast(vol.data, config.invert), tomogram, "--invert", config.invert)
    result = pick_dog(vol.data, config, class_name)
    out = Path(out)
    stem = out.with_suffix("")
    paths = [out, Path(f"{stem}_scores.mrc"), Path(f"{stem}.json")]
    write_particles(out, result.picks.to_table(Path(tomogram).stem), pixel_size_a=vol.voxel_size_a)
    write_mrc(paths[1], result.scores, vol.voxel_size_a, vol.origin_zyx_a)
    summary = {
        "method": "dog", "tomogram": str(tomogram), "voxel_size_a": vol.voxel_size_a, "origin_zyx_a": list(vol.origin_zyx_a),
        "radius_vox": config.radius_vox, "border_vox": config.peaks.border_for(config.radius_vox),
        "sigmas_vox": list(config.sigmas_vox), "threshold": result.threshold, "n_picks": len(result.picks),
        "seconds": round(time.perf_counter() - t0, 2), "config": asdict(config), "cryomine_version": __version__,
    }  # fmt: skip
    with atomic_output(paths[2]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return result, paths
