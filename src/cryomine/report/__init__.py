"""Figures and reports: pictures people would rather look at than read."""

from cryomine.report.slices import central_slices, save_slice_montage

__all__ = ["central_slices", "save_slice_montage"]
