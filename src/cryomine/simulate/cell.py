"""Cell-like training and test tomograms for the learned picker: crowded, all bundled classes, membranes and
randomised imaging (one definition, shared by ``scripts/make_picker.py`` and ``benchmarks/bench_picker.py``).

Per seed: a tilt range of ±45-65° with up to 10° asymmetry (clipped to ±70°, 3° steps), defocus 2-6 µm
(underfocus), SNR log-uniform in 0.03-0.3 unless fixed, and 0-2 vesicles of radius 150-400 Å whose membranes are a
class of their own in the class map. The same seed gives the same tomogram.
"""

from __future__ import annotations

import math

import numpy as np

from cryomine.acquisition.ctf import MicroscopeConfig
from cryomine.simulate.config import DSMNET_CLASSES
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.membranes import MembraneConfig
from cryomine.simulate.tilt import TiltSeriesConfig
from cryomine.simulate.tomogram import TomogramConfig

__all__ = ["SNR_RANGE", "cell_tomogram_config"]

SNR_RANGE = (0.03, 0.3)


def cell_tomogram_config(seed: int, shape_zyx: tuple[int, int, int] = (128, 256, 256), particles: int = 600,
                         structures: tuple[str, ...] = tuple(DSMNET_CLASSES), snr: float | None = None) -> TomogramConfig:  # fmt: skip
    """The randomised scene and imaging of cell-like tomogram ``seed`` (module docstring); ``snr`` fixes the SNR
    (the other draws stay those of the seed)."""
    rng = np.random.default_rng([seed, 0x91C])
    half = float(rng.uniform(45.0, 65.0))
    skew = float(rng.uniform(-10.0, 10.0))
    lo, hi = max(-70.0, -half + min(skew, 0.0)), min(70.0, half + max(skew, 0.0))
    defocus = float(rng.uniform(2.0, 6.0))
    drawn_snr = float(math.exp(rng.uniform(math.log(SNR_RANGE[0]), math.log(SNR_RANGE[1]))))
    imaging = ImagingConfig(tilt=TiltSeriesConfig(min_deg=lo, max_deg=hi, step_deg=3.0),
                            microscope=MicroscopeConfig(defocus_um=defocus), snr=drawn_snr if snr is None else float(snr))  # fmt: skip
    membranes = MembraneConfig(vesicles=int(rng.integers(0, 3)), vesicle_radius_a=(150.0, 400.0))
    return TomogramConfig(shape_zyx=tuple(shape_zyx), particles=particles, structures=tuple(structures), seed=seed,  # type: ignore[arg-type]
                          imaging=imaging, membranes=membranes)  # fmt: skip
