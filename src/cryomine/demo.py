"""The main job behind ``make demo`` / ``cryomine demo``: runs what cryomine can do end to end.

It currently renders bundled structures from atoms and maps, writes them as MRC and a PNG montage. Later
stages (simulation, DSM-Net, picking, discovery, averaging) join as they land.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from cryomine import __version__
from cryomine.errors import InputError
from cryomine.io import write_mrc
from cryomine.io.atomic import atomic_output
from cryomine.report import save_slice_montage
from cryomine.structures import list_structures, load_structure


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs. ``structures`` are bundled ids; ``voxel_size_a`` in Å."""

    structures: tuple[str, ...] = ("1bxn", "3j9i", "4v4r_30S", "6pxm")
    voxel_size_a: float = 10.0
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)

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


def run_demo(out: Path, config: DemoConfig, force: bool = False) -> dict[str, object]:
    """Run the demo into ``out``; returns a summary (also written as ``summary.json``)."""
    out = prepare_output_dir(Path(out), force)
    known = {info.id: info for info in list_structures()}
    maps_dir = out / "structures"
    volumes = {}
    for sid in tqdm(config.structures, desc="structures", unit="map"):
        volume = load_structure(sid, voxel_size_a=config.voxel_size_a)
        write_mrc(maps_dir / f"{sid}.mrc", volume.data, volume.voxel_size_a)
        volumes[f"{sid} ({known[sid].source})" if sid in known else sid] = volume.data
    save_slice_montage(volumes, out / "structures.png", title=f"Central slices at {config.voxel_size_a:g} Å/voxel")
    summary = {
        "cryomine_version": __version__,
        "config": asdict(config),
        "outputs": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
    }
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
