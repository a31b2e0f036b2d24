"""File formats: MRC volumes, TOM/PyTom .em volumes and motive lists, RELION STAR, SHREC and CSV particle lists."""

from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.io.atomic import atomic_output
from cryomine.io.convert import (
    FORMATS,
    ConvertConfig,
    ConvertResult,
    convert_particle_list,
    detect_format,
    read_particle_list,
)
from cryomine.io.em import (
    MOTL_COLUMNS,
    em_voxel_size_a,
    motl_to_particles,
    motl_tomo_names,
    read_em,
    read_motl,
    relion_zyz_to_zxz,
    write_em,
    write_motl,
    zxz_to_relion_zyz,
)
from cryomine.io.mrc import Volume, read_mrc, write_mrc, write_volume
from cryomine.io.omezarr import omezarr_levels, read_omezarr, write_omezarr
from cryomine.io.optics import OpticsGroup
from cryomine.io.particle_lists import (
    SHREC2019_LAYOUT,
    ShrecLayout,
    read_coordinates_csv,
    read_shrec_particles,
)
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
from cryomine.io.volume import VOLUME_SUFFIXES, read_volume, volume_kind

__all__ = [
    "FORMATS",
    "MOTL_COLUMNS",
    "SHREC2019_LAYOUT",
    "VOLUME_SUFFIXES",
    "ConvertConfig",
    "ConvertResult",
    "OpticsGroup",
    "ParticleTable",
    "ShrecLayout",
    "Volume",
    "atomic_output",
    "check_volume",
    "check_voxel_size",
    "convert_particle_list",
    "coordinates_xyz_voxels",
    "detect_format",
    "em_voxel_size_a",
    "eulers_zyz",
    "make_particles",
    "motl_to_particles",
    "motl_tomo_names",
    "particles_pixel_size_a",
    "read_coordinates_csv",
    "read_em",
    "read_motl",
    "read_mrc",
    "read_optimisation_set",
    "read_particle_list",
    "read_particles",
    "read_shrec_particles",
    "read_tomograms",
    "read_volume",
    "omezarr_levels",
    "read_omezarr",
    "write_omezarr",
    "relion_zyz_to_zxz",
    "volume_kind",
    "with_optics",
    "write_em",
    "write_motl",
    "write_mrc",
    "write_particles",
    "write_volume",
    "zxz_to_relion_zyz",
]
