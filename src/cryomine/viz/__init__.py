"""Pictures shared by several layers: slice montages, isosurfaces, the FSC figure, saving a figure atomically.

Figures are made without pyplot's global state where possible (:class:`matplotlib.figure.Figure`).
"""

from cryomine.viz.fsc import fsc_figure
from cryomine.viz.isosurface import enclosing_level, isosurface_figure, isosurface_view
from cryomine.viz.save import save_png
from cryomine.viz.slices import central_slices, save_slice_montage

__all__ = ["central_slices", "enclosing_level", "fsc_figure", "isosurface_figure", "isosurface_view", "save_png", "save_slice_montage"]
