"""Viewing results in napari: layer data from cryomine's outputs (:mod:`cryomine.viewer.layers`) and the reader
plugin that hands them to napari (:mod:`cryomine.viewer.napari_reader`; manifest ``cryomine/napari.yaml``)."""

from cryomine.viewer.layers import LayerData, folder_kind, layer_data
from cryomine.viewer.napari_reader import get_reader

__all__ = ["LayerData", "folder_kind", "get_reader", "layer_data"]
