"""Figures and reports: pictures people would rather look at than read."""

from cryomine.viz import central_slices, save_slice_montage

__all__ = ["central_slices", "save_slice_montage"]
