"""Simulate a crowded tomogram with a RELION STAR of the true particles.

Particles (classes round robin over ``structures``, uniformly random orientations and positions) are packed
by rejection sampling: a particle is accepted only if its mask overlaps no mask already placed and its centre
is at least ``margin`` voxels inside the volume. Packing stops after ``particles`` are placed or after
``max_attempts`` consecutive rejections (the count reached is reported). The scene is then imaged with the
same model as subtomograms (tilt series, CTF, noise on projections, WBP), processed in chunks of ``y`` rows.
The SNR is measured over the whole tomogram.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cryomine import __version__
from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix, random_eulers_zyz, rotate_volumes
from cryomine.io import OpticsGroup, make_particles, write_mrc, write_particles
from cryomine.io.atomic import atomic_output
from cryomine.simulate.imaging import ImagingConfig, image_scene
from cryomine.simulate.scene import overlap_slices
from cryomine.simulate.templates import prepare_template


@dataclass(frozen=True)
class TomogramConfig:
    """A crowded tomogram: ``shape_zyx`` voxels, ``particles`` to place, ``structures`` (ids or files)."""

    shape_zyx: tuple[int, int, int] = (200, 512, 512)
    particles: int = 1000
    structures: tuple[str, ...] = ("1bxn", "3j9i", "4v4r", "1qvr", "3cf3")
    voxel_size_a: float = 10.0
    seed: int = 0
    margin: int = 4
    max_attempts: int = 2000
    mask_threshold: float = 0.1
    imaging: ImagingConfig = field(default_factory=lambda: ImagingConfig(snr=0.06))

    def __post_init__(self) -> None:
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 16:
            raise InputError(f"tomogram shape must be 3 sizes >= 16 voxels (Z,Y,X), got {self.shape_zyx}", "--shape")
        if self.particles < 0:
            raise InputError(f"particle count must be >= 0, got {self.particles}", "--particles")
        if not self.structures:
            raise InputError("need at least one structure", "--structures")
        if not self.voxel_size_a > 0:
            raise InputError(f"voxel size must be > 0 Å, got {self.voxel_size_a:g}", "--voxel-size")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["imaging"]["snr"] = str(self.imaging.snr) if not np.isfinite(self.imaging.snr) else self.imaging.snr
        return d


@dataclass
class PlacedParticles:
    """Ground truth of a packed tomogram: ``coords_zyx`` (n, 3) voxel centres, ``eulers_zyz`` (n, 3) degrees."""

    coords_zyx: np.ndarray
    eulers_zyz: np.ndarray
    class_ids: np.ndarray
    volume_fraction: float


def pack_tomogram(config: TomogramConfig, progress: bool = True) -> tuple[np.ndarray, PlacedParticles]:
    """Pack particles into a ``shape_zyx`` density volume; returns the density and the ground truth."""
    templates = [prepare_template(s, config.voxel_size_a, config.mask_threshold) for s in config.structures]
    rng = np.random.default_rng([config.seed, 3])
    shape = np.array(config.shape_zyx)
    density = np.zeros(config.shape_zyx, dtype=np.float32)
    occupied = np.zeros(config.shape_zyx, dtype=bool)
    coords, eulers, classes = [], [], []
    failures = 0
    with tqdm(total=config.particles, desc="packing particles", unit="particle", disable=not progress) as bar:
        while len(coords) < config.particles and failures < config.max_attempts:
            k = len(coords) % len(templates)
            t = templates[k]
            centre = np.array([rng.uniform(config.margin, n - 1 - config.margin) for n in shape])
            ang = random_eulers_zyz(1, rng)[0]
            whole = np.round(centre).astype(int)
            cube = rotate_volumes(
                torch.from_numpy(t.density)[None],
                torch.from_numpy(euler_zyz_to_matrix(ang).astype(np.float32))[None],
                torch.from_numpy((centre - whole).astype(np.float32))[None],
            )[0].numpy()
            mask = cube > t.mask_level
            region = overlap_slices(config.shape_zyx, cube.shape[0], whole)
            if region is None or (occupied[region[0]] & mask[region[1]]).any():
                failures += 1
                continue
            failures = 0
            occupied[region[0]] |= mask[region[1]]
            density[region[0]] += np.clip(cube[region[1]], 0.0, None)
            coords.append(centre)
            eulers.append(ang)
            classes.append(k)
            bar.update(1)
    placed = PlacedParticles(
        coords_zyx=np.array(coords, dtype=np.float64).reshape(-1, 3),
        eulers_zyz=np.array(eulers, dtype=np.float64).reshape(-1, 3),
        class_ids=np.array(classes, dtype=np.int64),
        volume_fraction=float(occupied.mean()),
    )
    return density, placed


def _optics(config: TomogramConfig) -> OpticsGroup:
    """The STAR optics group: the tilt series is simulated at the tomogram's voxel size (binning 1)."""
    mic = config.imaging.microscope
    return OpticsGroup(pixel_size_a=config.voxel_size_a, tilt_series_pixel_size_a=config.voxel_size_a,
                       voltage_kv=mic.voltage_kv, cs_mm=mic.cs_mm, amplitude_contrast=mic.amplitude_contrast)  # fmt: skip


def simulate_tomogram(out: str | Path, config: TomogramConfig, *, progress: bool = True) -> dict:
    """Write ``out`` (MRC, voxel size in the header), ``<stem>.star`` (true particles) and ``<stem>.json``.

    The STAR has ``rlnCoordinateX/Y/Z`` (0-based voxels), ``rlnAngleRot/Tilt/Psi``, ``rlnClassNumber``
    (1-based), ``rlnClassName``, ``rlnTomoName`` and an optics block (pixel sizes, voltage, Cs, amplitude
    contrast of the simulation). Returns a summary (also in the JSON: config, particles placed,
    measured SNR, volume fraction).
    """
    out = Path(out)
    density, placed = pack_tomogram(config, progress)
    rng = np.random.default_rng([config.seed, 4])
    if progress:
        print(f"imaging {config.shape_zyx} tomogram ({config.imaging.tilt.n_tilts} tilts, WBP in y-row chunks)...", flush=True)
    result = image_scene(density, config.voxel_size_a, config.imaging, rng, chunk_rows=32)
    names = [Path(s).name.split(".")[0] for s in config.structures]
    stem = out.with_suffix("")
    table = make_particles(
        placed.coords_zyx[:, ::-1],
        placed.eulers_zyz,
        tomo_name=stem.name,
        class_number=placed.class_ids + 1,
        extra={"rlnClassName": np.array([names[k] for k in placed.class_ids], dtype=object)},
        optics=_optics(config),
    )
    summary = {
        "cryomine_version": __version__,
        "config": config.to_dict(),
        "particles_requested": config.particles,
        "particles_placed": int(len(placed.class_ids)),
        "volume_fraction": placed.volume_fraction,
        "snr_measured": float(result.measured_snr),
        "class_names": names,
        "acquisition": config.imaging.acquisition(config.voxel_size_a, f"cryomine simulate tomogram {out.name}").to_dict(),
    }
    write_particles(stem.with_suffix(".star"), table)
    with atomic_output(stem.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    write_mrc(out, result.noisy, config.voxel_size_a)
    return summary
