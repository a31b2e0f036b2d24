"""Structure templates prepared for simulation: normalised, centred, cropped to a rotation-safe cube.

Density scale: each structure's map is scaled so that its mean density inside its own mask is 1. Protein has
nearly uniform density, so this puts every complex on the same (relative) contrast scale whatever the source
(atoms through gemmi, or a shipped map).

Mask: voxels whose density exceeds ``mask_threshold`` (default 0.1) times the structure's maximum density. The
same threshold defines the ground-truth segmentation masks of simulated subtomograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryomine.errors import InputError
from cryomine.structures import load_structure


@dataclass(frozen=True)
class Template:
    """A structure ready to place: ``density`` is a ``(m, m, m)`` cube with the centre of mass at voxel ``m // 2``.

    ``mask_level`` is the absolute density level of the mask threshold; ``radius_vox`` the largest distance
    (voxels) of a mask voxel from the centre, so any rotation of the cube keeps the molecule inside it.
    """

    name: str
    density: np.ndarray
    mask_level: float
    radius_vox: float
    voxel_size_a: float

    @property
    def mask_voxels(self) -> int:
        """Number of voxels in the molecule's mask (its volume in voxels)."""
        return int((self.density > self.mask_level).sum())


def prepare_template(
    name: str,
    voxel_size_a: float,
    mask_threshold: float = 0.1,
    *,
    map_voxel_size_a: float | None = None,
    map_voxel_size_name: str = "map_voxel_size_a",
) -> Template:
    """Load structure ``name`` (bundled id or file) at ``voxel_size_a`` and turn it into a :class:`Template`.

    ``map_voxel_size_a`` (Å): the voxel size of a map file (MRC or ``.em``), overriding its header; needed for
    ``.em`` maps without one (see :func:`cryomine.structures.load_structure`; ``map_voxel_size_name`` is what
    the error calls it).
    """
    if not 0.0 < mask_threshold < 1.0:
        raise InputError(f"mask threshold must be in (0, 1), got {mask_threshold:g}", "mask_threshold")
    volume = load_structure(name, voxel_size_a=voxel_size_a, map_voxel_size_a=map_voxel_size_a,
                            map_voxel_size_name=map_voxel_size_name)  # fmt: skip
    return template_from_density(name, volume.data, float(volume.voxel_size_a), mask_threshold)


def template_from_density(name: str, density: np.ndarray, voxel_size_a: float, mask_threshold: float = 0.1) -> Template:
    """A :class:`Template` from a ``(d, h, w)`` density at ``voxel_size_a`` (zero solvent level, protein positive):
    negative density clipped, scaled to mean 1 inside the mask, centre of mass moved to voxel ``m // 2`` of a
    rotation-safe ``(m, m, m)`` cube (linear interpolation, sub-voxel exact)."""
    if not 0.0 < mask_threshold < 1.0:
        raise InputError(f"mask threshold must be in (0, 1), got {mask_threshold:g}", "mask_threshold")
    data = np.clip(np.asarray(density, dtype=np.float32), 0.0, None)
    peak = float(data.max())
    if peak <= 0:
        raise InputError("structure map has no positive density", name)
    mask = data > mask_threshold * peak
    data = data / float(data[mask].mean())
    level = mask_threshold * float(data.max())
    com = np.array(ndimage.center_of_mass(data * mask))
    coords = np.argwhere(mask)
    radius = float(np.sqrt(((coords - com) ** 2).sum(axis=1)).max()) + 1.0
    m = 2 * int(np.ceil(radius)) + 3
    c = m // 2
    offset = com - c
    cube = ndimage.affine_transform(data, np.eye(3), offset=offset, output_shape=(m, m, m), order=1, cval=0.0)
    cube = np.clip(cube, 0.0, None).astype(np.float32)
    return Template(name=name, density=cube, mask_level=level, radius_vox=radius, voxel_size_a=float(voxel_size_a))
