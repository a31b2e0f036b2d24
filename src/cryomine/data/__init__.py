"""Training data: per-subtomogram normalisation, class maps (``--exclude-class``), the stratified split and a
torch Dataset over the HDF5 subtomogram file (see :mod:`cryomine.data.loader`)."""

from cryomine.data.loader import (
    CACHE_LIMIT_BYTES,
    SPLIT_NAMES,
    ClassMap,
    SubtomoDataset,
    normalise,
    open_dataset,
    stratified_split,
)

__all__ = ["CACHE_LIMIT_BYTES", "SPLIT_NAMES", "ClassMap", "SubtomoDataset", "normalise", "open_dataset", "stratified_split"]
