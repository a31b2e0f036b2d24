"""Shared test fixtures: tiny synthetic subtomogram datasets in the cryomine HDF5 layout.

``write_blob_dataset`` writes ``n_per_class`` subtomograms per class of distinct blob shapes (sphere, rod, two
spheres, flat disc, ring) in random poses and small random shifts, plus Gaussian noise. Ground truth: the mask is
the shape's voxels, the density the clean (lightly smoothed) shape, ``class_id`` the shape. Everything is seeded.
With ``noise_model`` (the default) the rows also carry the fields fresh-noise augmentation needs (noise-free box =
the density, unit noise = the white noise drawn, one noise group per 8 rows) and the config a +-60 degree tilt
series and the SNR, as simulated datasets do.

Poses follow the package convention (:mod:`cryomine.geometry.euler`): the box of row ``i`` is the unrotated shape
(:func:`reference_density`) rotated by RELION's ``A = euler_zyz_to_matrix(eulers_zyz[i])`` about the centre
``n // 2`` and shifted by ``shifts_zyx[i]``, i.e. ``rotate_volume(reference, A, shift_zyx=shifts_zyx[i])``, so
``cryomine.discover.averages.unrotate`` brings it back into the reference frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from cryomine.geometry import matrix_to_euler_zyz, zyx_to_xyz_matrix
from cryomine.io.subtomo_h5 import create_dataset, write_rows

BLOB_SHAPES = ("sphere", "rod", "two_spheres", "disc", "ring")


def _shape_mask(shape: str, size: int, rotation: np.ndarray, shift_zyx: np.ndarray) -> np.ndarray:
    """``(size, size, size)`` bool mask of ``shape`` rotated by the 3x3 ``rotation`` (acting on z, y, x) and shifted."""
    c = size // 2
    zyx = np.stack(np.meshgrid(*(np.arange(size) - c for _ in range(3)), indexing="ij"), axis=-1).astype(np.float64)
    r = (zyx - shift_zyx) @ rotation  # body-frame coordinates; axis 0 (z) is the shape's long axis
    s = size / 16.0
    along = r[..., 0]
    radial = np.hypot(r[..., 1], r[..., 2])
    norm = np.linalg.norm(r, axis=-1)
    if shape == "sphere":
        return norm <= 3.5 * s
    if shape == "rod":
        return (np.abs(along) <= 5.5 * s) & (radial <= 1.6 * s)
    if shape == "two_spheres":
        return (np.linalg.norm(r - [3.2 * s, 0, 0], axis=-1) <= 2.4 * s) | (np.linalg.norm(r + [3.2 * s, 0, 0], axis=-1) <= 2.4 * s)
    if shape == "disc":
        return (np.abs(along) <= 1.1 * s) & (radial <= 4.8 * s)
    if shape == "ring":
        return (np.abs(along) <= 1.3 * s) & (radial <= 5.0 * s) & (radial >= 3.0 * s)
    raise ValueError(shape)


def reference_density(shape: str, size: int) -> np.ndarray:
    """The clean unrotated, unshifted ``(size,) * 3`` density of ``shape`` (the rows' ``target_density`` before posing)."""
    return gaussian_filter(_shape_mask(shape, size, np.eye(3), np.zeros(3)).astype(np.float32), 0.7)


def write_blob_dataset(
    path: Path,
    *,
    n_per_class: int = 8,
    size: int = 16,
    n_classes: int = 3,
    noise: float = 0.5,
    seed: int = 0,
    voxel_size_a: float = 10.0,
    n_written: int | None = None,
    noise_model: bool = True,
) -> Path:
    """Write a seeded blob dataset (classes interleaved: row ``i`` has class ``i % n_classes``) and return ``path``.

    ``n_written`` (default: all rows) lets tests write fewer rows than planned, e.g. 0 for an empty dataset.
    """
    rng = np.random.default_rng(seed)
    names = list(BLOB_SHAPES[:n_classes])
    n = n_per_class * n_classes
    class_id = np.arange(n, dtype=np.int32) % n_classes
    # Uniform random rotations used as active maps of (z, y, x) offsets; the same rotations acting on (x, y, z)
    # vectors are RELION's A, whose angles (package convention, not scipy's "ZYZ") are stored.
    rot_zyx = Rotation.random(n, random_state=seed).as_matrix()
    eulers = matrix_to_euler_zyz(zyx_to_xyz_matrix(rot_zyx)).astype(np.float32)
    shifts = rng.uniform(-1.0, 1.0, size=(n, 3)).astype(np.float32)
    masks = np.stack([_shape_mask(names[k], size, rot_zyx[i], shifts[i]) for i, k in enumerate(class_id)])
    density = np.stack([gaussian_filter(m.astype(np.float32), 0.7) for m in masks]).astype(np.float32)
    unit = rng.standard_normal(density.shape).astype(np.float32)
    noisy = (density + noise * unit).astype(np.float32)
    config: dict = {"generator": "tests.conftest.write_blob_dataset", "seed": seed}
    if noise_model:
        config["imaging"] = {"snr": float(density.var() / noise**2),
                             "tilt": {"min_deg": -60.0, "max_deg": 60.0, "step_deg": 3.0}}
    create_dataset(path, n=n, size=size, voxel_size_a=voxel_size_a, class_names=names,
                   config=config, cryomine_version="test", with_noise_model=noise_model)
    k = n if n_written is None else n_written
    if k:
        extra = {"noise_free": density[:k], "noise_unit": unit[:k], "noise_sigma": np.full(k, noise, np.float32),
                 "noise_group": (np.arange(k) // 8).astype(np.int32),
                 "tilt_range_deg": np.tile(np.float32([-60, 60]), (k, 1)),
                 "defocus_um": np.full(k, 5.0, np.float32)} if noise_model else {}
        write_rows(path, 0, {**extra,
            "subtomograms": noisy[:k],
            "target_density": density[:k],
            "target_mask": masks[:k].astype(np.uint8),
            "class_id": class_id[:k],
            "eulers_zyz": eulers[:k],
            "shifts_zyx": shifts[:k],
            "neighbour_classes": np.full((k, 1), -1, np.int16),
            "volume_fraction": masks[:k].mean(axis=(1, 2, 3)).astype(np.float32),
            "snr_measured": np.full(k, 1.0 / noise**2, np.float32),
        })
    return path


@pytest.fixture(scope="session")
def blob_dataset_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory ``make(name="blobs", **kwargs) -> Path`` writing a :func:`write_blob_dataset` file (cached per name)."""
    root = tmp_path_factory.mktemp("blob_datasets")
    made: dict[str, Path] = {}

    def make(name: str = "blobs", **kwargs: object) -> Path:
        if name not in made:
            made[name] = write_blob_dataset(root / f"{name}.h5", **kwargs)  # type: ignore[arg-type]
        return made[name]

    return make


@pytest.fixture(scope="session")
def blob_dataset(blob_dataset_factory: Callable[..., Path]) -> Path:
    """A 3-class 16^3 blob dataset with 8 subtomograms per class (24 rows)."""
    return blob_dataset_factory("blobs", n_per_class=8, size=16, n_classes=3)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread is as fast and avoids OpenMP spin-waiting when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
