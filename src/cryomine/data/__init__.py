"""Training data: per-subtomogram normalisation, class maps (``--exclude-class``), the stratified split, a
torch Dataset over the HDF5 subtomogram file (see :mod:`cryomine.data.loader`) and the physics-respecting
training augmentation (:mod:`cryomine.data.augment`)."""

from cryomine.data.augment import AugmentConfig, NoisePool, add_calibrated_noise, augment_boxes
from cryomine.data.info import dataset_acquisition, dataset_info, dataset_positions
from cryomine.data.loader import (
    CACHE_LIMIT_BYTES,
    SPLIT_NAMES,
    ClassMap,
    SubtomoDataset,
    check_finite_rows,
    open_dataset,
    stratified_split,
)
from cryomine.data.normalise import normalise

__all__ = [
    "CACHE_LIMIT_BYTES",
    "SPLIT_NAMES",
    "AugmentConfig",
    "ClassMap",
    "NoisePool",
    "SubtomoDataset",
    "add_calibrated_noise",
    "augment_boxes",
    "check_finite_rows",
    "dataset_acquisition",
    "dataset_info",
    "dataset_positions",
    "normalise",
    "open_dataset",
    "stratified_split",
]
