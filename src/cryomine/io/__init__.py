"""File formats: MRC volumes, TOM/PyTom .em volumes and motive lists, RELION STAR, SHREC and CSV particle lists."""

from cryomine.io.atomic import atomic_output
from cryomine.io.em import (
    MOTL_COLUMNS,
    motl_to_particles,
    read_em,
    read_motl,
    relion_zyz_to_zxz,
    zxz_to_relion_zyz,
)
from cryomine.io.mrc import Volume, read_mrc, write_mrc, write_volume
from cryomine.io.optics import OpticsGroup
from cryomine.io.particle_lists import SHREC2019_LAYOUT, ShrecLayout, read_coordinates_csv, read_shrec_particles
from cryomine.io.star import (
    ParticleTable,
    coordinates_xyz_voxels,
    eulers_zyz,
    make_particles,
    particles_pixel_size_a,
    read_optimisation_set,
    read_particles,
    read_tomograms,
    with_optics,
    write_particles,
)
from cryomine.io.validate import check_volume, check_voxel_size

__all__ = [
    "MOTL_COLUMNS",
    "SHREC2019_LAYOUT",
    "OpticsGroup",
    "ParticleTable",
    "ShrecLayout",
    "Volume",
    "atomic_output",
    "check_volume",
    "check_voxel_size",
    "coordinates_xyz_voxels",
    "eulers_zyz",
    "make_particles",
    "motl_to_particles",
    "particles_pixel_size_a",
    "read_coordinates_csv",
    "read_em",
    "read_motl",
    "read_mrc",
    "read_optimisation_set",
    "read_particles",
    "read_shrec_particles",
    "read_tomograms",
    "relion_zyz_to_zxz",
    "with_optics",
    "write_mrc",
    "write_particles",
    "write_volume",
    "zxz_to_relion_zyz",
]
