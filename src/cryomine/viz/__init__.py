"""Pictures shared by several layers: slice montages, the FSC figure, saving a figure atomically.

Figures are made without pyplot's global state where possible (:class:`matplotlib.figure.Figure`).
"""

from cryomine.viz.fsc import fsc_figure
from cryomine.viz.save import save_png
from cryomine.viz.slices import central_slices, save_slice_montage

__all__ = ["central_slices", "fsc_figure", "save_png", "save_slice_montage"]
