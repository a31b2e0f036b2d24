"""The cell-like tomogram definition shared by the picker's training and its benchmark."""

from __future__ import annotations

import math

from cryomine.simulate.cell import SNR_RANGE, cell_tomogram_config
from cryomine.simulate.config import DSMNET_CLASSES


def test_cell_tomograms_are_seeded_and_stay_in_their_ranges():
    configs = [cell_tomogram_config(seed) for seed in range(40)]
    assert cell_tomogram_config(7) == configs[7] and configs[7] != configs[8]
    for c in configs:
        tilt = c.imaging.tilt
        assert -70.0 <= tilt.min_deg <= -45.0 and 45.0 <= tilt.max_deg <= 70.0
        assert abs(abs(tilt.max_deg) - abs(tilt.min_deg)) <= 10.0 + 1e-9
        assert 2.0 <= c.imaging.microscope.defocus_um <= 6.0
        assert SNR_RANGE[0] <= c.imaging.snr <= SNR_RANGE[1]
        assert c.structures == tuple(DSMNET_CLASSES) and 0 <= c.membranes.vesicles <= 2
    snrs = [math.log(c.imaging.snr) for c in configs]
    assert max(snrs) - min(snrs) > 0.5 * math.log(SNR_RANGE[1] / SNR_RANGE[0])  # the SNR does vary
    fixed = cell_tomogram_config(7, snr=0.06)
    assert fixed.imaging.snr == 0.06 and fixed.imaging.tilt == configs[7].imaging.tilt  # only the SNR is fixed
