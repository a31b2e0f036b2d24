"""The main job behind ``make demo`` / ``cryomine demo``: runs what cryomine can do end to end.

Steps so far: render bundled structures (from atoms and maps), simulate a small crowded subtomogram dataset
with ground truth, and a small crowded tomogram with its true particle list. Later stages (DSM-Net, picking,
discovery, averaging, report) join as they land. Every step's outputs stay in the output folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cryomine import __version__
from cryomine.errors import InputError
from cryomine.io import write_mrc
from cryomine.io.atomic import atomic_output
from cryomine.io.subtomo_h5 import read_rows
from cryomine.report import save_slice_montage
from cryomine.simulate.config import build_dataset_config, build_imaging_config
from cryomine.simulate.subtomograms import simulate_subtomograms
from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram
from cryomine.structures import list_structures, load_structure


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs. ``structures``: bundled ids; ``voxel_size_a`` in Å; ``snr`` of the simulations."""

    structures: tuple[str, ...] = ("1bxn", "3j9i", "4v4r", "6utj")
    voxel_size_a: float = 10.0
    per_class: int = 4
    tomogram_shape_zyx: tuple[int, int, int] = (64, 192, 192)
    tomogram_particles: int = 40
    snr: float = 0.06
    seed: int = 0

    def __post_init__(self) -> None:
        if self.voxel_size_a <= 0:
            raise InputError(f"voxel size must be > 0 Å, got {self.voxel_size_a:g}", "--voxel-size")


def prepare_output_dir(out: Path, force: bool) -> Path:
    """Create ``out``; refuse a non-empty folder unless ``force`` (then its contents are replaced)."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise InputError("output folder is not empty; use --force to overwrite it", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _structures_step(out: Path, config: DemoConfig) -> None:
    known = {info.id: info for info in list_structures()}
    volumes = {}
    for sid in tqdm(config.structures, desc="structures", unit="map"):
        volume = load_structure(sid, voxel_size_a=config.voxel_size_a)
        write_mrc(out / "structures" / f"{sid}.mrc", volume.data, volume.voxel_size_a)
        volumes[f"{sid} ({known[sid].source})" if sid in known else sid] = volume.data
    save_slice_montage(volumes, out / "structures.png", title=f"Central slices at {config.voxel_size_a:g} Å/voxel")


def _simulation_step(out: Path, config: DemoConfig) -> dict[str, object]:
    dataset_config = build_dataset_config(
        structures=config.structures, per_class=config.per_class, voxel_size_a=config.voxel_size_a,
        snr=config.snr, seed=config.seed,
    )  # fmt: skip
    path = simulate_subtomograms(out / "subtomograms.h5", dataset_config)
    rows = read_rows(path, ("subtomograms", "target_density", "target_mask", "class_id"), np.arange(len(config.structures)))
    save_slice_montage(
        {name: [rows["target_density"][i], rows["target_mask"][i].astype(np.float32), rows["subtomograms"][i]]
         for i, name in enumerate(config.structures)},
        out / "subtomograms.png", column_titles=["clean target", "target mask", f"subtomogram, SNR {config.snr:g}"],
    )  # fmt: skip
    tomo_config = TomogramConfig(
        shape_zyx=config.tomogram_shape_zyx, particles=config.tomogram_particles, structures=config.structures,
        voxel_size_a=config.voxel_size_a, seed=config.seed, imaging=build_imaging_config(snr=config.snr),
    )  # fmt: skip
    summary = simulate_tomogram(out / "tomogram.mrc", tomo_config)
    return {"subtomograms": dataset_config.n_total, "tomogram_particles": summary["particles_placed"]}


def run_demo(out: Path, config: DemoConfig, force: bool = False) -> dict[str, object]:
    """Run the demo into ``out``; returns a summary (also written as ``summary.json``)."""
    out = prepare_output_dir(Path(out), force)
    with atomic_output(out / "config.json") as tmp:
        tmp.write_text(json.dumps({"cryomine_version": __version__, **asdict(config)}, indent=2))
    _structures_step(out, config)
    counts = _simulation_step(out, config)
    summary = {
        "cryomine_version": __version__,
        "config": asdict(config),
        **counts,
        "outputs": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
    }
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
