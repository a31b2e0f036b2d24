"""Gather a tomogram's :class:`Acquisition` from every place it may be written, flags first.

Priority (a field is taken from the first place that knows it): the command-line flags, the ``--acquisition``
files in the order given, the metadata files beside the tomogram (:data:`SIDECAR_SUFFIXES`), the tomogram's
header (its voxel size; a header voxel size of 0, the MRC "unset", counts as unknown). A header voxel size that
disagrees with the metadata's by more than 1% is warned about (the metadata wins unless a flag is given).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from cryomine.acquisition.metadata import Acquisition, MetadataWarning
from cryomine.acquisition.readers import find_sidecars, read_acquisition
from cryomine.errors import InputError
from cryomine.io.volume import header_voxel_size

__all__ = ["resolve_acquisition", "tomogram_acquisition"]


def resolve_acquisition(
    tomogram: str | os.PathLike[str] | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    *,
    tomo_name: str | None = None,
    header_voxel_size_a: float | None = None,
    sidecars: bool = True,
    overrides: Acquisition | None = None,
) -> Acquisition:
    """The merged :class:`Acquisition` (module docstring). ``overrides``: what the flags say (e.g.
    ``Acquisition().updated("flags", tilt_min_deg=-54, tilt_max_deg=62)``). ``tomo_name`` defaults to the
    tomogram's stem."""
    name = tomo_name if tomo_name is not None else (Path(tomogram).stem if tomogram is not None else None)
    acq = overrides if overrides is not None else Acquisition()
    given_voxel = acq.voxel_size_a is not None
    paths = [Path(f) for f in files]
    if sidecars and tomogram is not None:
        paths += [p for p in find_sidecars(tomogram) if p not in paths]
    for p in paths:
        acq = acq.merged(read_acquisition(p, tomo_name=name if p.suffix.lower() == ".star" else None))
    header = float(header_voxel_size_a) if header_voxel_size_a is not None and header_voxel_size_a > 0 else None
    if header is not None:
        if acq.voxel_size_a is not None and not given_voxel and abs(acq.voxel_size_a / header - 1) > 0.01:
            warnings.warn(f"{tomogram}: header voxel size {header:g} Å differs from the metadata's {acq.voxel_size_a:g} Å "
                          f"({acq.describe_sources()}); using the metadata's (override with --voxel-size)",
                          MetadataWarning, stacklevel=2)
        acq = acq.merged(Acquisition(voxel_size_a=header, sources=(f"{tomogram} header",)))
    return acq


def tomogram_acquisition(
    tomogram: str | os.PathLike[str],
    overrides: Acquisition | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    *,
    tomo_name: str | None = None,
) -> Acquisition:
    """:func:`resolve_acquisition` for a tomogram (MRC or ``.em``; its header's voxel size included), with the voxel size
    required: an unset header and no metadata or ``--voxel-size`` is an :class:`InputError` naming the flag."""
    acq = resolve_acquisition(tomogram, files, tomo_name=tomo_name, header_voxel_size_a=header_voxel_size(tomogram),
                              overrides=overrides)
    if acq.voxel_size_a is None:
        raise InputError("header voxel size is 0 Å (unset) and no metadata gives it: give the voxel size with "
                         "--voxel-size (Å)", tomogram)
    return acq
