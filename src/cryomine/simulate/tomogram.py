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
from cryomine.devices import resolve_device
from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix, matrix_to_euler_zyz, random_eulers_zyz, rotate_volumes
from cryomine.io import OpticsGroup, make_particles, write_mrc, write_particles
from cryomine.io.atomic import atomic_output, check_writable
from cryomine.resources import check_disk, check_memory
from cryomine.simulate.imaging import ImagingConfig, image_tilt_series, simulate_tilt_series
from cryomine.simulate.membranes import MEMBRANE_LABEL, Membrane, MembraneConfig, draw_membranes, normal_frame, render_membranes
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
    membranes: MembraneConfig = field(default_factory=MembraneConfig)
    membrane_structures: tuple[str, ...] = ()
    membrane_particles: int = 0

    def __post_init__(self) -> None:
        if self.membrane_particles and not self.membrane_structures:
            raise InputError("membrane particles need --membrane-structures", "--membrane-particles")
        if self.membrane_particles and not self.membranes.active:
            raise InputError("membrane particles need membranes (--vesicles or --sheets)", "--membrane-particles")
        if self.membrane_particles < 0:
            raise InputError(f"membrane particle count must be >= 0, got {self.membrane_particles}", "--membrane-particles")
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 16:
            raise InputError(f"tomogram shape must be 3 sizes >= 16 voxels (Z,Y,X), got {self.shape_zyx}", "--shape")
        if self.particles < 0:
            raise InputError(f"particle count must be >= 0, got {self.particles}", "--particles")
        if not self.structures:
            raise InputError("need at least one structure", "--structures")
        if len(self.structures) + len(self.membrane_structures) > 126:  # the int8 class map holds 0..127
            raise InputError(f"at most 126 structures, got {len(self.structures) + len(self.membrane_structures)}", "--structures")
        if not self.voxel_size_a > 0:
            raise InputError(f"voxel size must be > 0 Å, got {self.voxel_size_a:g}", "--voxel-size")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {self.seed!r}", "--seed")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["imaging"]["snr"] = str(self.imaging.snr) if not np.isfinite(self.imaging.snr) else self.imaging.snr
        return d


@dataclass
class PlacedParticles:
    """Ground truth of a packed tomogram: ``coords_zyx`` (n, 3) voxel centres, ``eulers_zyz`` (n, 3) degrees,
    ``class_ids`` (n,) (soluble structures first, then membrane structures), ``in_membrane`` (n,) bool, the
    volume fraction occupied by particles, the membranes and their ``(d, h, w)`` uint8 mask (0 = none), and the
    ``(d, h, w)`` int8 ``class_map``: 0 background, ``class_id + 1`` inside a particle's mask, ``n_classes + 1``
    in a membrane (under no particle), with ``n_classes`` soluble plus membrane structures."""

    coords_zyx: np.ndarray
    eulers_zyz: np.ndarray
    class_ids: np.ndarray
    volume_fraction: float
    in_membrane: np.ndarray | None = None
    membranes: list[Membrane] = field(default_factory=list)
    membrane_mask: np.ndarray | None = None
    class_map: np.ndarray | None = None


class _Packer:
    """Places rotated templates into the tomogram without overlaps (particles never overlap each other; soluble
    ones also keep out of the membranes)."""

    def __init__(self, config: TomogramConfig, keep_out: np.ndarray, density: np.ndarray) -> None:
        self.config, self.keep_out, self.density = config, keep_out, density
        self.occupied = np.zeros(config.shape_zyx, dtype=bool)
        self.labels = np.zeros(config.shape_zyx, dtype=np.int8)  # the class map (PlacedParticles.class_map)
        self.coords: list[np.ndarray] = []
        self.eulers: list[np.ndarray] = []
        self.classes: list[int] = []
        self.membrane: list[bool] = []
        self.n_membrane = 0  # sum(self.membrane), kept so that the packing loops do not recount every attempt

    def place(self, t, k: int, centre: np.ndarray, ang: np.ndarray, in_membrane: bool) -> bool:
        whole = np.round(centre).astype(int)
        cube = rotate_volumes(
            torch.from_numpy(t.density)[None],
            torch.from_numpy(euler_zyz_to_matrix(ang).astype(np.float32))[None],
            torch.from_numpy((centre - whole).astype(np.float32))[None],
        )[0].numpy()
        mask = cube > t.mask_level
        region = overlap_slices(self.config.shape_zyx, cube.shape[0], whole)
        if region is None:
            return False
        blocked = self.occupied[region[0]] if in_membrane else self.occupied[region[0]] | self.keep_out[region[0]]
        if (blocked & mask[region[1]]).any():
            return False
        self.occupied[region[0]] |= mask[region[1]]
        self.labels[region[0]][mask[region[1]]] = k + 1
        self.density[region[0]] += np.clip(cube[region[1]], 0.0, None)
        self.coords.append(centre)
        self.eulers.append(ang)
        self.classes.append(k)
        self.membrane.append(in_membrane)
        self.n_membrane += int(in_membrane)
        return True


def _membrane_site(m: Membrane, shape: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random point on the membrane's mid-surface and the normal there (both ``(z, y, x)``)."""
    if m.kind == "vesicle":
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        return np.asarray(m.centre_zyx) + m.radius_vox * u, u
    n = np.asarray(m.normal_zyx)
    a = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    span = float(shape.max())
    return np.asarray(m.centre_zyx) + rng.uniform(-span, span) * a + rng.uniform(-span, span) * b, n


def pack_tomogram(config: TomogramConfig, progress: bool = True) -> tuple[np.ndarray, PlacedParticles]:
    """Draw the membranes, put the membrane proteins in them, then pack the soluble particles into a
    ``shape_zyx`` density volume; returns the density and the ground truth."""
    templates = [prepare_template(s, config.voxel_size_a, config.mask_threshold) for s in config.structures]
    m_templates = [prepare_template(s, config.voxel_size_a, config.mask_threshold) for s in config.membrane_structures]
    used = templates[: min(config.particles, len(templates))]  # the classes placed round robin
    need = config.particles * float(np.mean([t.mask_voxels for t in used])) if used else 0.0
    if need > np.prod(np.asarray(config.shape_zyx, np.float64)):
        raise InputError(f"{config.particles} particles fill {need:.3g} voxels; the tomogram holds "
                         f"{int(np.prod(config.shape_zyx))}", "--particles")  # fmt: skip
    rng = np.random.default_rng([config.seed, 3])
    shape = np.array(config.shape_zyx)
    membranes = draw_membranes(config.shape_zyx, config.voxel_size_a, config.membranes, np.random.default_rng([config.seed, 5]))
    density, membrane_mask, keep_out = render_membranes(config.shape_zyx, config.voxel_size_a, membranes, config.membranes)
    packer = _Packer(config, keep_out, density)
    if membranes:
        n_classes = len(config.structures) + len(config.membrane_structures)
        packer.labels[membrane_mask > 0] = n_classes + 1
    total = config.particles + config.membrane_particles
    with tqdm(total=total, desc="packing particles", unit="particle", disable=not progress) as bar:
        failures = 0
        while packer.n_membrane < config.membrane_particles and failures < config.max_attempts:
            j = packer.n_membrane % len(m_templates)
            centre, normal = _membrane_site(membranes[int(rng.integers(len(membranes)))], shape, rng)
            inside = np.all(centre >= config.margin) and np.all(centre <= shape - 1 - config.margin)
            ang = matrix_to_euler_zyz(normal_frame(normal, rng.uniform(0, 2 * np.pi))[None])[0]
            if inside and packer.place(m_templates[j], len(templates) + j, centre, ang, True):
                failures = 0
                bar.update(1)
            else:
                failures += 1
        failures = 0
        while len(packer.coords) - packer.n_membrane < config.particles and failures < config.max_attempts:
            k = (len(packer.coords) - packer.n_membrane) % len(templates)
            centre = np.array([rng.uniform(config.margin, n - 1 - config.margin) for n in shape])
            if packer.place(templates[k], k, centre, random_eulers_zyz(1, rng)[0], False):
                failures = 0
                bar.update(1)
            else:
                failures += 1
    placed = PlacedParticles(
        coords_zyx=np.array(packer.coords, dtype=np.float64).reshape(-1, 3),
        eulers_zyz=np.array(packer.eulers, dtype=np.float64).reshape(-1, 3),
        class_ids=np.array(packer.classes, dtype=np.int64),
        volume_fraction=float(packer.occupied.mean()),
        in_membrane=np.array(packer.membrane, dtype=bool),
        membranes=membranes,
        membrane_mask=membrane_mask if membranes else None,
        class_map=packer.labels,
    )
    return density, placed


def _optics(config: TomogramConfig) -> OpticsGroup:
    """The STAR optics group: the tilt series is simulated at the tomogram's voxel size (binning 1)."""
    mic = config.imaging.microscope
    return OpticsGroup(pixel_size_a=config.voxel_size_a, tilt_series_pixel_size_a=config.voxel_size_a,
                       voltage_kv=mic.voltage_kv, cs_mm=mic.cs_mm, amplitude_contrast=mic.amplitude_contrast)  # fmt: skip


def simulate_tomogram(out: str | Path, config: TomogramConfig, *, progress: bool = True,
                      device: str | torch.device | None = None) -> dict:
    """Write ``out`` (MRC, voxel size in the header), ``<stem>.star`` (true particles) and ``<stem>.json``.

    The STAR has ``rlnCoordinateX/Y/Z`` (0-based voxels), ``rlnAngleRot/Tilt/Psi``, ``rlnClassNumber``
    (1-based), ``rlnClassName``, ``rlnTomoName`` and an optics block (pixel sizes, voltage, Cs, amplitude
    contrast of the simulation); membrane proteins have ``cmInMembrane`` 1. With membranes,
    ``<stem>_membranes.mrc`` holds their masks (uint8: 0 none, ``i`` membrane ``i`` of the JSON's
    ``membranes`` list). ``<stem>_classes.mrc`` (int8) is the class map: 0 background, ``rlnClassNumber`` inside
    each particle's mask, the number of classes + 1 in membranes (the JSON's ``class_map_labels``, which always names that label:
    every tomogram of a set of structures has the same table, membranes or not). Returns a
    summary (also in the JSON: config, particles placed, measured SNR, volume fraction, membranes, and ``label_maps``: the
    file names of the two label volumes, so that tools listing tomograms can skip them).
    ``device``: where it is imaged (``"auto"``/None: CUDA when present).
    """
    out = Path(out)
    stem = out.with_suffix("")
    check_writable(out, f"{stem}.star", f"{stem}.json", f"{stem}_classes.mrc", f"{stem}_membranes.mrc")  # before any work
    device = resolve_device(device)
    voxels = float(np.prod(np.asarray(config.shape_zyx, np.float64)))
    shape = "x".join(map(str, config.shape_zyx))
    check_memory(12.0 * voxels, f"a {shape} tomogram", "--shape")  # measured: 3.5 GiB for 300 x 1024 x 1024
    check_disk(out, voxels * (5 + (4 if config.membranes.active else 0)), f"a {shape} tomogram", "--shape")
    density, placed = pack_tomogram(config, progress)
    rng = np.random.default_rng([config.seed, 4])
    if progress:
        print(f"imaging {config.shape_zyx} tomogram ({config.imaging.tilt.n_tilts} tilts, WBP in y-row chunks)...", flush=True)
    held = [simulate_tilt_series(density, config.voxel_size_a, config.imaging, device=device, chunk_rows=32)[None]]
    del density  # the density is not needed once projected, nor the images once reconstructed: hand them over
    result = image_tilt_series(held.pop(), config.imaging, config.shape_zyx[0], rng, chunk_rows=32)
    names = [Path(s).name.split(".")[0] for s in (*config.structures, *config.membrane_structures)]
    table = make_particles(
        placed.coords_zyx[:, ::-1],
        placed.eulers_zyz,
        tomo_name=stem.name,
        class_number=placed.class_ids + 1,
        extra={"rlnClassName": np.array([names[k] for k in placed.class_ids], dtype=object),
               **({"cmInMembrane": placed.in_membrane.astype(np.int64)} if config.membrane_particles else {})},
        optics=_optics(config),
    )
    summary = {
        "cryomine_version": __version__,
        "config": config.to_dict(),
        "particles_requested": config.particles,
        "particles_placed": int(len(placed.class_ids)),
        "membrane_particles_placed": int(placed.in_membrane.sum()) if placed.in_membrane is not None else 0,
        "membranes": [m.to_dict() for m in placed.membranes],
        "volume_fraction": placed.volume_fraction,
        "snr_measured": float(result.measured_snr[0]),
        "class_names": names,
        "class_map_labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(names)}, str(len(names) + 1): MEMBRANE_LABEL},
        "acquisition": config.imaging.acquisition(config.voxel_size_a, f"cryomine simulate tomogram {out.name}").to_dict(),
        # the ground-truth volumes beside the tomogram (not tomograms: a folder-of-tomograms project skips them)
        "label_maps": [f"{stem.name}_classes.mrc", *([f"{stem.name}_membranes.mrc"] if placed.membrane_mask is not None else [])],
    }
    write_particles(Path(f"{stem}.star"), table)
    with atomic_output(Path(f"{stem}.json")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    if placed.membrane_mask is not None:
        write_mrc(Path(f"{stem}_membranes.mrc"), placed.membrane_mask.astype(np.float32), config.voxel_size_a)
    write_mrc(Path(f"{stem}_classes.mrc"), placed.class_map, config.voxel_size_a, mrc_mode=0)
    write_mrc(out, result.noisy[0], config.voxel_size_a)
    return summary
