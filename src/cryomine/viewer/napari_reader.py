"""The napari reader plugin (declared in ``cryomine/napari.yaml``, found through the ``napari.manifest`` entry point):
``napari path/to/cryomine_run`` or *File > Open Folder* with the *cryomine* plugin opens a ``cryomine run`` project
folder or one of its tomogram folders as layers (:func:`cryomine.viewer.layers.layer_data`). napari itself is not
imported here: the reader returns plain layer data."""

from __future__ import annotations

import os
from collections.abc import Callable

from cryomine.viewer.layers import LayerData, folder_kind, layer_data

__all__ = ["get_reader"]


def get_reader(path: str | os.PathLike[str] | list) -> Callable[[str], list[LayerData]] | None:
    """napari's reader hook: a reader for a cryomine run folder, None for anything else (napari then asks others)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return _read if folder_kind(path) is not None else None


def _read(path: str | list) -> list[LayerData]:
    return layer_data(path[0] if isinstance(path, list) else path)
