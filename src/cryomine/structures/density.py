"""Electron-density (Coulomb-potential) maps computed from atomic models with gemmi.

The map of a model is the sum, over its atoms, of gemmi's electron scattering factors (International Tables
vol. C, table 4.3.2.2: five Gaussians per element, :class:`gemmi.DensityCalculatorE`), each widened by the atom's
B-factor and by a resolution blur. The blur is an isotropic Gaussian of standard deviation
``sigma = 0.225 * resolution_a`` (the ChimeraX ``molmap`` convention: the map's Fourier amplitudes fall to 1/e at
1/resolution), added to every atom as ``B = 8 pi^2 sigma^2``.

Sampling: while ``sigma`` is below one output voxel (e.g. at the default resolution of 2 voxels), gemmi evaluates
the map at 2 x 2 x 2 sub-samples per output voxel (offsets of +-1/4 voxel) and each voxel is their mean. This keeps
the map non-negative and conserves the integrated density (point sampling a Gaussian as narrow as 0.45 voxel would
not); it adds a blur of 1/4 voxel rms per axis. With ``sigma >= 1`` voxel the map is point-sampled.

Geometry: the model is translated so that its mass-weighted centre of mass (occupancy x atomic mass) lies at voxel
index ``n // 2`` on every axis of a cubic ``n^3`` box, and computed in a P1 unit cell of edge ``n * voxel_size_a``
(gemmi's calculation is periodic). The default ``n`` is the smallest even size with
``n * voxel_size_a >= 2 * (r_max + margin)``, where ``r_max`` is the largest atom distance from the centre of mass
and ``margin = 3 * voxel_size_a + 3 * sigma``, so the blurred density does not wrap around the box.

Waters are removed and NCS copies not given in the file are expanded; only the first model is used. Biological
assemblies (BIOMT / pdbx_struct_assembly) are *not* generated: the map is of the coordinates in the file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import gemmi
import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.io.mrc import Volume
from cryomine.resources import check_memory

#: Resolution-blur Gaussian sigma per Å of resolution (ChimeraX molmap convention, 1 / (pi * sqrt(2))).
SIGMA_PER_RESOLUTION = 1.0 / (math.pi * math.sqrt(2.0))
#: Extra empty voxels (on top of 3 sigma of blur) kept between the atoms and the box faces.
MARGIN_VOXELS = 3


def atoms_from_file(path: str | os.PathLike[str]) -> gemmi.Structure:
    """Read a PDB or mmCIF file (optionally gzipped) into a :class:`gemmi.Structure`, ready for density.

    Waters are removed, missing NCS copies expanded, only the first model kept. Raises :class:`InputError`
    naming the file when it is missing, cannot be parsed, or its first model has no atoms.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", p)
    try:
        st = gemmi.read_structure(str(p))
    except (RuntimeError, ValueError, OSError, IndexError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable PDB/mmCIF file ({_short(exc)})", p) from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError("no atoms in the model", p)
    while len(st) > 1:
        del st[len(st) - 1]
    if any(not op.given for op in st.ncs):
        st.expand_ncs(gemmi.HowToNameCopiedChain.Short)
    st.remove_waters()
    st.remove_empty_chains()
    if st[0].count_atom_sites() == 0:
        raise InputError("no atoms in the model other than waters", p)
    return st


def atom_coords_and_masses(structure: gemmi.Structure) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(coords_xyz, masses)`` of the first model's atoms.

    ``coords_xyz`` is an ``(n, 3)`` float64 array of positions in Å, columns x, y, z (file order);
    ``masses`` is ``(n,)``: atomic mass (Da) times occupancy.
    """
    if len(structure) == 0:
        raise InputError("structure has no model")
    coords = []
    masses = []
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                coords.append((atom.pos.x, atom.pos.y, atom.pos.z))
                masses.append(atom.element.weight * atom.occ)
    if not coords:
        raise InputError("structure has no atoms")
    xyz, mass = np.asarray(coords, dtype=np.float64), np.asarray(masses, dtype=np.float64)
    if not (np.isfinite(xyz).all() and np.isfinite(mass).all()):
        raise InputError(f"{int((~np.isfinite(xyz).all(axis=1)).sum())} atoms have NaN or infinite coordinates or occupancies")
    return xyz, mass


def center_of_mass_xyz(structure: gemmi.Structure) -> np.ndarray:
    """Mass-weighted centre of mass ``(x, y, z)`` in Å of the first model (occupancy x atomic mass)."""
    coords, masses = atom_coords_and_masses(structure)
    if masses.sum() <= 0:
        raise InputError("structure has zero total mass (all occupancies 0?)")
    return (coords * masses[:, None]).sum(axis=0) / masses.sum()


def max_radius_a(structure: gemmi.Structure) -> float:
    """Largest distance (Å) of any atom from the mass-weighted centre of mass."""
    coords, _ = atom_coords_and_masses(structure)
    return float(np.linalg.norm(coords - center_of_mass_xyz(structure), axis=1).max())


def default_box_size(structure: gemmi.Structure, voxel_size_a: float, resolution_a: float) -> int:
    """Smallest even box edge (voxels) holding the atoms plus the margin described in the module docstring."""
    sigma = SIGMA_PER_RESOLUTION * resolution_a
    half = max_radius_a(structure) + MARGIN_VOXELS * voxel_size_a + 3.0 * sigma
    n = math.ceil(2.0 * half / voxel_size_a - 1e-9)
    return max(2, n + (n % 2))


MAX_VOXEL_SIZE_A = 1000.0  # larger voxels than any cryo-ET data has (binned tomograms reach ~40 Å)


def density_from_model(
    structure: gemmi.Structure,
    voxel_size_a: float = 10.0,
    resolution_a: float | None = None,
    box_size: int | None = None,
) -> Volume:
    """Compute the electron-density map of ``structure`` (see the module docstring for the model).

    ``resolution_a`` defaults to ``2 * voxel_size_a`` (Nyquist) and must not be finer than that.
    ``box_size`` (voxels, cubic) defaults to :func:`default_box_size`; a smaller box crops the structure
    symmetrically about the centre voxel ``box_size // 2``. Returns a :class:`Volume` whose data is a
    non-negative float32 ``(n, n, n)`` array indexed (z, y, x), with the centre of mass at voxel ``n // 2``
    and origin ``(0, 0, 0)``.
    """
    vs = check_voxel_size(voxel_size_a, "voxel_size_a")
    res = 2.0 * vs if resolution_a is None else _check_positive(resolution_a, "resolution_a")
    if res < 2.0 * vs * (1 - 1e-6):
        raise InputError(
            f"resolution_a={res:g} Å is finer than the Nyquist limit 2 x voxel size = {2 * vs:g} Å; "
            "use a smaller voxel size or a coarser resolution"
        )
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise InputError("structure has no atoms")
    if vs > MAX_VOXEL_SIZE_A:  # gemmi's blur grows with the voxel size: at 1e6 Å it ran for hours
        raise InputError(f"voxel size {vs:g} Å is beyond {MAX_VOXEL_SIZE_A:g} Å: no structure is resolved at it", "--voxel-size")
    auto = default_box_size(structure, vs, res)
    if box_size is not None:
        if isinstance(box_size, bool) or not isinstance(box_size, (int, np.integer)) or box_size < 1:
            raise InputError(f"box_size must be a positive integer number of voxels, got {box_size!r}")
        box_size = int(box_size)
    n_out = auto if box_size is None else box_size
    n = max(auto, n_out)

    sigma = SIGMA_PER_RESOLUTION * res
    k = 2 if sigma < vs else 1  # sub-samples per voxel and axis
    fine_n = k * n
    # gemmi's grid (float32) and the zoom's float64 copy, refused before allocation when absurd (e.g. 1e-6 Å voxels)
    check_memory(12.0 * float(fine_n) ** 3, f"a density map of {n}³ voxels at {vs:g} Å", "--voxel-size")

    st = structure.clone()
    while len(st) > 1:
        del st[len(st) - 1]
    com = center_of_mass_xyz(st)
    # Sub-sample j of voxel i sits at (k * i + j) * vs / k; their mean is centred on voxel i's position when
    # the whole model is moved by (k - 1) / (2 k) voxel, so the centre of mass falls on voxel n // 2.
    shift = np.full(3, (n // 2 + (k - 1) / (2 * k)) * vs) - com
    st[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(*shift)))
    edge = n * vs
    st.cell = gemmi.UnitCell(edge, edge, edge, 90.0, 90.0, 90.0)
    st.spacegroup_hm = "P 1"

    calc = gemmi.DensityCalculatorE()
    calc.d_min = res
    calc.blur = 8.0 * math.pi**2 * sigma**2
    # gemmi's cutoff is an absolute density: scale it with the blurred peak height of a carbon atom (about
    # 2.5 / (2 pi sigma^2)^1.5) so wide atoms are not truncated (1e-5 of the peak: radius ~ 4.8 sigma).
    calc.cutoff = 1e-5 * 2.5 / (2.0 * math.pi * sigma**2) ** 1.5
    calc.grid.setup_from(st)
    calc.grid.set_size(fine_n, fine_n, fine_n)
    calc.grid.fill(0.0)
    try:
        calc.add_model_density_to_grid(st[0])
    except (RuntimeError, ValueError, IndexError) as exc:
        raise InputError(f"gemmi could not compute the density ({_short(exc)})") from None
    fine = np.array(calc.grid, copy=True).transpose(2, 1, 0)  # gemmi [x, y, z] -> (z, y, x)
    data = fine.reshape(n, k, n, k, n, k).mean(axis=(1, 3, 5)) if k > 1 else fine
    if n_out < n:
        lo = n // 2 - n_out // 2
        data = data[lo : lo + n_out, lo : lo + n_out, lo : lo + n_out]
    data = np.clip(data, 0.0, None).astype(np.float32)
    return Volume(data=check_volume(np.ascontiguousarray(data), "density"), voxel_size_a=vs)


def _check_positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be > 0, got {v:g}")
    return v


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
