"""The shared blob fixtures (``tests/conftest.py``) store poses in the package's RELION ZYZ convention: un-rotating a
row's clean box with its stored ``eulers_zyz`` / ``shifts_zyx`` by the package's own functions gives back the
unrotated shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import BLOB_SHAPES, reference_density
from cryomine.discover.averages import unrotate
from cryomine.geometry import euler_zyz_to_matrix, rotate_volume
from cryomine.io.subtomo_h5 import read_header, read_rows


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("name, kwargs", [
    ("blobs", {"n_per_class": 8, "size": 16, "n_classes": 3}),  # the session ``blob_dataset``
    ("fixture_poses_all_shapes", {"n_per_class": 3, "size": 24, "n_classes": len(BLOB_SHAPES), "seed": 3}),
])
def test_blob_fixture_poses_follow_the_package_convention(blob_dataset_factory: Callable[..., Path], name: str,
                                                          kwargs: dict) -> None:
    path = blob_dataset_factory(name, **kwargs)
    header = read_header(path)
    rows = read_rows(path, ("noise_free", "target_density", "eulers_zyz", "shifts_zyx", "class_id"),
                     np.arange(header.n_written))
    np.testing.assert_array_equal(rows["noise_free"], rows["target_density"])
    refs = [reference_density(shape, header.size) for shape in header.class_names]
    back = unrotate(rows["noise_free"], rows["eulers_zyz"], rows["shifts_zyx"])  # torch path (rotate_volumes)
    posed_corr = {c: [] for c in range(len(refs))}
    for i, c in enumerate(rows["class_id"]):
        ref, box = refs[c], rows["noise_free"][i]
        assert _corr(back[i], ref) > 0.95, (i, header.class_names[c], _corr(back[i], ref))
        # and forward with the scipy path: the reference posed by A = euler_zyz_to_matrix(angles) is the box
        forward = rotate_volume(ref, euler_zyz_to_matrix(rows["eulers_zyz"][i]), shift_zyx=rows["shifts_zyx"][i])
        assert _corr(forward, box) > 0.95, (i, header.class_names[c], _corr(forward, box))
        posed_corr[c].append(_corr(box, ref))
    # the check is not vacuous: the posed boxes of the non-spherical shapes do not resemble the reference as they are
    for c, shape in enumerate(header.class_names):
        if shape != "sphere":
            assert np.mean(posed_corr[c]) < 0.8, (shape, posed_corr[c])
