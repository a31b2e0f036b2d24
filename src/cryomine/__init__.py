"""cryomine: cryo-electron tomography pattern mining.

Conventions used throughout the package:

- Arrays are indexed (z, y, x); a volume is a ``(d, h, w)`` array, a stack ``(n, d, h, w)``.
- Lengths are in Å (voxel sizes ``voxel_size_a``), voltages in kV, defocus in µm (positive = underfocus),
  angles in degrees.
- Orientations are RELION ZYZ intrinsic Euler angles ``(rot, tilt, psi)``; see :mod:`cryomine.geometry`.
"""

from importlib.metadata import PackageNotFoundError, version

from cryomine.errors import InputError

try:
    __version__ = version("cryomine")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["InputError", "__version__"]
