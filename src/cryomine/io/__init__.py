"""File formats: MRC volumes, TOM/PyTom .em volumes and motive lists, RELION STAR particle lists."""

from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import Volume, read_mrc, write_mrc, write_volume
from cryomine.io.validate import check_volume, check_voxel_size

__all__ = ["Volume", "atomic_output", "check_volume", "check_voxel_size", "read_mrc", "write_mrc", "write_volume"]
