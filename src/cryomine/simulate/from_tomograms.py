"""Datasets made the way the DSM-Net paper made them: boxes extracted from whole simulated tomograms.

``simulate subtomograms --from-tomograms`` packs whole tomograms at a number density (the paper's: 10,000
molecules in 600 x 600 x 300 voxels at 1 nm; :class:`FromTomogramsConfig`), images each with the full model
(tilt series, CTF, noise on the projections, WBP; :func:`cryomine.simulate.imaging.image_scene`, noise calibrated
over the whole tomogram), and cuts a ``size``³ box at every true particle position (voxel ``size // 2`` on the
particle's nearest voxel; :func:`cryomine.geometry.cut_boxes`), until the dataset's ``total`` boxes are written.
Ground truth per box: the particle's class and pose (``shifts_zyx``: its sub-voxel offset from the box centre),
its own mask and clean density (its rotated template, placed in the box), the classes of the particles whose
centres fall inside the box (``neighbour_classes``), the fraction of the box inside any particle's mask
(``volume_fraction``), the noise model (noise-free and unit-noise boxes of the tomogram, the tomogram's sigma) and
the SNR measured in the box. ``coords_xyz`` gives each box's position in its tomogram (number ``noise_group``).
Tomograms are simulated one at a time (seeds ``[seed, 6, t]``); an interrupted run resumes at a tomogram's
first box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix, rotate_volumes
from cryomine.geometry.boxes import cut_boxes, place_in_box
from cryomine.simulate.imaging import image_scene
from cryomine.simulate.templates import Template
from cryomine.simulate.tomogram import TomogramConfig, pack_tomogram

__all__ = ["PAPER_NUMBER_DENSITY", "FromTomogramsConfig", "tomogram_rows"]

PAPER_NUMBER_DENSITY = 10_000 / (600 * 600 * 300)  # molecules per voxel (1 nm voxels)


@dataclass(frozen=True)
class FromTomogramsConfig:
    """Tomograms of ``shape_zyx`` voxels, each packed with ``particles`` molecules (default: the paper's number
    density in the paper's shape: 10,000 in 300 x 600 x 600)."""

    shape_zyx: tuple[int, int, int] = (300, 600, 600)
    particles: int = 10_000

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape_zyx)
        if len(shape) != 3 or min(shape) < 16 or np.prod(shape) > 2**31:
            raise InputError(f"tomogram shape must be 3 sizes >= 16 voxels with at most 2^31 voxels, got {self.shape_zyx}",
                             "--tomogram-shape")  # fmt: skip
        if isinstance(self.particles, bool) or not isinstance(self.particles, int) or not 1 <= self.particles <= 1_000_000:
            raise InputError(f"particles per tomogram must be an integer in [1, 1000000], got {self.particles!r}",
                             "--tomogram-particles")  # fmt: skip
        object.__setattr__(self, "shape_zyx", shape)

    def to_dict(self) -> dict:
        return {"shape_zyx": list(self.shape_zyx), "particles": self.particles}


def _own(t: Template, ang: np.ndarray, offset_zyx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The particle's clean density and mask in its box (the packer's rotation and sub-voxel shift)."""
    cube = rotate_volumes(torch.from_numpy(t.density)[None], torch.from_numpy(euler_zyz_to_matrix(ang).astype(np.float32))[None],
                          torch.from_numpy(offset_zyx.astype(np.float32))[None])[0].numpy()  # fmt: skip
    return place_in_box(np.clip(cube, 0.0, None), (size,) * 3), place_in_box((cube > t.mask_level).astype(np.float32), (size,) * 3)


def tomogram_rows(config, templates: list[Template], tomogram: int, first: int, count: int,
                  device: torch.device | None = None) -> dict[str, np.ndarray]:
    """Rows ``[first, first + count)`` of the dataset: the first ``count`` particles of tomogram ``tomogram``
    (``config``: a :class:`~cryomine.simulate.config.SubtomogramDatasetConfig` with ``from_tomograms``)."""
    ft: FromTomogramsConfig = config.from_tomograms
    size = config.size
    tcfg = TomogramConfig(shape_zyx=ft.shape_zyx, particles=ft.particles, structures=config.structures,
                          voxel_size_a=config.voxel_size_a, seed=int(np.random.default_rng([config.seed, 6, tomogram]).integers(2**31)),
                          margin=size // 2, mask_threshold=config.mask_threshold, imaging=config.imaging)  # fmt: skip
    try:
        density, placed = pack_tomogram(tcfg, progress=False)
    except InputError as exc:  # the tomogram packer names its own options; here they are --tomogram-*
        raise InputError(str(exc).removeprefix("--particles: "), "--tomogram-particles/--tomogram-shape") from None
    if len(placed.class_ids) < count:
        raise InputError(f"tomogram {tomogram} holds only {len(placed.class_ids)} particles, {count} boxes needed: "
                         "lower --tomogram-particles or enlarge --tomogram-shape", "--from-tomograms")  # fmt: skip
    imaging = image_scene(density, config.voxel_size_a, config.imaging, np.random.default_rng([config.seed, 7, tomogram]),
                          chunk_rows=32, keep_unit_noise=True, device=device)  # fmt: skip
    centres = placed.coords_zyx[:count]
    mean = float(imaging.noisy.mean())
    boxes = {"subtomograms": cut_boxes(imaging.noisy, centres, size, mean),
             "noise_free": cut_boxes(imaging.noise_free, centres, size, 0.0),
             "noise_unit": cut_boxes(imaging.unit_noise, centres, size, 0.0),
             "scene": cut_boxes(density, centres, size, 0.0)}  # fmt: skip
    own = [_own(templates[k], a, c - np.rint(c), size) for k, a, c in zip(placed.class_ids[:count], placed.eulers_zyz[:count], centres)]
    reach = np.linalg.norm(np.full(3, size / 2.0))
    neighbours = np.full((count, 16), -1, np.int16)
    for j, c in enumerate(centres):
        inside = np.flatnonzero((np.abs(placed.coords_zyx - c) < size / 2).all(axis=1) & (np.linalg.norm(placed.coords_zyx - c, axis=1) < reach))
        others = placed.class_ids[inside[inside != j]][:16]
        neighbours[j, : len(others)] = others
    sigma = float(imaging.noise_sigma)
    noise = sigma * boxes["noise_unit"]
    snr = boxes["noise_free"].reshape(count, -1).var(1) / np.maximum(noise.reshape(count, -1).var(1), 1e-30)
    return {
        "subtomograms": boxes["subtomograms"],
        "target_density": np.stack([o[0] for o in own]).astype(np.float32),
        "target_mask": np.stack([o[1] > 0.5 for o in own]).astype(np.uint8),
        "class_id": placed.class_ids[:count].astype(np.int32),
        "eulers_zyz": placed.eulers_zyz[:count].astype(np.float64),
        "shifts_zyx": (centres - np.rint(centres)).astype(np.float64),
        "neighbour_classes": neighbours,
        "volume_fraction": (boxes["scene"] > 0.05).reshape(count, -1).mean(1).astype(np.float32),
        "snr_measured": (snr if sigma > 0 else np.full(count, np.inf)).astype(np.float32),
        "noise_free": boxes["noise_free"],
        "noise_unit": boxes["noise_unit"],
        "noise_sigma": np.full(count, sigma, np.float32),
        "noise_group": np.full(count, tomogram, np.int32),
        "tilt_range_deg": np.tile(np.float32([config.imaging.tilt.min_deg, config.imaging.tilt.max_deg]), (count, 1)),
        "defocus_um": np.full(count, config.imaging.microscope.defocus_um, np.float32),
        "coords_xyz": centres[:, ::-1].astype(np.float32),
    }
