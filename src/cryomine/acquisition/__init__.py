"""How a tomogram was recorded: :class:`Acquisition` metadata (voxel size, tilts, defocus, dose, optics,
contrast polarity), its readers for other tools' files, and the CTF.

- :mod:`cryomine.acquisition.metadata`: :class:`Acquisition`, :class:`MetadataWarning`;
- :mod:`cryomine.acquisition.readers`: :func:`read_acquisition` (cryomine JSON, RELION 5 tomograms.star, IMOD,
  WarpTools), :func:`find_sidecars`;
- :mod:`cryomine.acquisition.resolve`: :func:`resolve_acquisition` (header + sidecars + files + flags);
- :mod:`cryomine.acquisition.ctf`: :class:`MicroscopeConfig`, the CTF, envelope and detector MTF.
"""

from cryomine.acquisition.ctf import MicroscopeConfig, ctf, ctf_first_zero_a_inv
from cryomine.acquisition.metadata import ASSUMED_TILT_RANGE_DEG, FLAGS, POLARITIES, Acquisition, MetadataWarning
from cryomine.acquisition.readers import SIDECAR_SUFFIXES, find_sidecars, read_acquisition
from cryomine.acquisition.resolve import resolve_acquisition, tomogram_acquisition

__all__ = [
    "ASSUMED_TILT_RANGE_DEG",
    "FLAGS",
    "POLARITIES",
    "SIDECAR_SUFFIXES",
    "Acquisition",
    "MetadataWarning",
    "MicroscopeConfig",
    "ctf",
    "ctf_first_zero_a_inv",
    "find_sidecars",
    "read_acquisition",
    "resolve_acquisition",
    "tomogram_acquisition",
]
