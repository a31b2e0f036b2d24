"""Summary of a subtomogram dataset (what ``cryomine dataset info`` prints) and its acquisition metadata."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cryomine.acquisition import Acquisition
from cryomine.data.snr import snr_by_definition
from cryomine.errors import InputError
from cryomine.io.subtomo_h5 import DatasetHeader, read_header, read_rows
from cryomine.simulate.tilt import TiltSeriesConfig


def dataset_positions(path: str | os.PathLike[str], header: DatasetHeader, rows: np.ndarray
                      ) -> tuple[np.ndarray | None, str | None]:
    """Where the boxes of ``rows`` sit in their tomogram: ``(n, 3)`` float64 x y z voxels (``coords_xyz``, written
    by ``cryomine extract`` and the simulator's tomogram crops) or None, and the tomogram's name (the config's
    ``tomo_name``, else the stem of its ``tomogram``) or None."""
    cfg = header.config if isinstance(header.config, dict) else {}
    name = cfg.get("tomo_name") or (Path(str(cfg["tomogram"])).stem if cfg.get("tomogram") else None)
    if not header.has_coords:
        return None, name
    return np.asarray(read_rows(path, ("coords_xyz",), np.asarray(rows))["coords_xyz"], np.float64), name


def dataset_acquisition(header: DatasetHeader) -> Acquisition:
    """How a dataset's boxes were recorded: the ``acquisition`` its config stores (``cryomine extract``), else the
    simulator's imaging config (protein bright), else nothing known. A simulated dataset whose imaging varied per
    batch has no single tilt range or defocus (each row records its own): those stay unknown here."""
    cfg = header.config if isinstance(header.config, dict) else {}
    if isinstance(cfg.get("acquisition"), dict):
        try:
            return Acquisition.from_dict(cfg["acquisition"])
        except InputError as exc:
            raise InputError(f"dataset's acquisition metadata is invalid ({exc})") from None
    imaging = cfg.get("imaging")
    if not isinstance(imaging, dict):
        return Acquisition(voxel_size_a=header.voxel_size_a, sources=("dataset header",))
    varied = isinstance(cfg.get("variation"), dict) and any(v is not None for v in cfg["variation"].values())
    tilt, mic = imaging.get("tilt") or {}, imaging.get("microscope") or {}
    angles = None if varied or not tilt else tuple(TiltSeriesConfig(**tilt).angles_deg)
    defocus = None if varied or "defocus_um" not in mic else (mic["defocus_um"],)
    return Acquisition(voxel_size_a=header.voxel_size_a, tilt_angles_deg=angles, defocus_um=defocus,
                       voltage_kv=mic.get("voltage_kv"), cs_mm=mic.get("cs_mm"), amplitude_contrast=mic.get("amplitude_contrast"),
                       polarity="bright", sources=("dataset simulation config" + (" (imaging varied per batch: each row records its own "
                                                                                  "tilt range and defocus)" if varied else ""),))


def dataset_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts per class, shape ``[n, d, h, w]``, voxel size, SNR requested and measured, and parameters.

    The measured SNR is the per-subtomogram value recorded at simulation time,
    var(noise-free) / var(noisy - noise-free) inside the box, summarised over all written subtomograms;
    ``snr_by_definition`` gives it again from the stored noise model beside the in-band SNR (below half Nyquist,
    :mod:`cryomine.data.snr`) for comparison with published numbers (None without a noise model).
    """
    header = read_header(path)
    n = header.n_written
    fields = ("class_id", "snr_measured", "volume_fraction") if header.has_ground_truth else ("class_id",)
    rows = read_rows(path, fields)
    counts = np.bincount(rows["class_id"][rows["class_id"] >= 0], minlength=len(header.class_names))
    info: dict[str, Any] = {
        "path": str(path),
        "n_planned": header.n_planned,
        "n_written": n,
        "complete": n == header.n_planned,
        "shape": [n, header.size, header.size, header.size],
        "voxel_size_a": header.voxel_size_a,
        "acquisition": dataset_acquisition(header).to_dict(),
        "class_names": header.class_names,
        "counts_per_class": {name: int(c) for name, c in zip(header.class_names, counts)},
        "has_ground_truth": header.has_ground_truth,
        "snr_requested": header.config.get("imaging", {}).get("snr"),
        "snr_measured": None,
        "cryomine_version": header.cryomine_version,
        "parameters": header.config,
    }
    if header.has_ground_truth and n:
        snr = rows["snr_measured"].astype(np.float64)
        finite = snr[np.isfinite(snr)]
        info["snr_measured"] = (
            {"mean": float(finite.mean()), "min": float(finite.min()), "max": float(finite.max()), "n": int(finite.size)}
            if finite.size
            else "inf"
        )
        vf = rows["volume_fraction"]
        info["volume_fraction"] = {"mean": float(vf.mean()), "min": float(vf.min()), "max": float(vf.max())}
    info["snr_by_definition"] = snr_by_definition(path, header)
    return info
