"""cryomine: cryo-electron tomography pattern mining.

Conventions used throughout the package:

- Arrays are indexed (z, y, x); a volume is a ``(d, h, w)`` array, a stack ``(n, d, h, w)``.
- Lengths are in Å (voxel sizes ``voxel_size_a``), voltages in kV, defocus in µm (positive = underfocus),
  angles in degrees.
- Orientations are RELION ZYZ intrinsic Euler angles ``(rot, tilt, psi)``; see :mod:`cryomine.geometry`.
"""

import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cryomine.errors import InputError


def _numba_cache_dir() -> None:
    """Give numba a writable cache where the installed package is read-only (a system or shared install): its
    ``cache=True`` functions otherwise fail at import ("no locator available"). Must run before numba is
    imported; an explicit ``NUMBA_CACHE_DIR`` is kept."""
    if "NUMBA_CACHE_DIR" in os.environ or os.access(Path(__file__).parent, os.W_OK):
        return
    for base in (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"), Path(tempfile.gettempdir())):
        folder = base / f"cryomine-numba-{os.getuid()}" if base == Path(tempfile.gettempdir()) else base / "cryomine" / "numba"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
            return


_numba_cache_dir()

try:
    __version__ = version("cryomine")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["InputError", "__version__"]
