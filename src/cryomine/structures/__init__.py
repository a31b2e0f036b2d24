"""The structure library: shipped macromolecular complexes as density maps, and maps computed from atoms.

- :mod:`cryomine.structures.library`: shipped ids, metadata (:func:`list_structures`) and :func:`load_structure`.
- :mod:`cryomine.structures.density`: electron-density maps from PDB/mmCIF models with gemmi.
- :mod:`cryomine.structures.maps`: resampling, centring and padding of maps.

Data provenance and license: ``cryomine/structures/data/PROVENANCE.md``.
"""

from cryomine.structures.density import atoms_from_file, density_from_model
from cryomine.structures.library import (
    StructureInfo,
    build_index,
    bundled_radius_a,
    list_structures,
    load_structure,
    resolve_structures,
    structure_ids,
)
from cryomine.structures.maps import center_volume, pad_to_cube, resample_volume

__all__ = [
    "StructureInfo",
    "atoms_from_file",
    "build_index",
    "center_volume",
    "density_from_model",
    "bundled_radius_a",
    "list_structures",
    "load_structure",
    "pad_to_cube",
    "resample_volume",
    "resolve_structures",
    "structure_ids",
]
