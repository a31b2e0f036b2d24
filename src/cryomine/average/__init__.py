"""Subtomogram alignment and averaging with missing-wedge compensation, multi-reference classification.

- :mod:`cryomine.average.align`: wedge-constrained correlation, global rotational search + local refinement
  (:func:`align_subtomogram`, :func:`align_particles`).
- :mod:`cryomine.average.spectra`: particle Fourier components and rotated-reference sampling
  (:func:`particle_spectra`).
- :mod:`cryomine.average.averaging`: wedge-weighted Fourier-space averaging, filters, masks
  (:func:`average_particles`).
- :mod:`cryomine.average.classify`: the iterative gold-standard align-and-average loop with K references
  (:func:`run_average`).
- :mod:`cryomine.average.config`: :class:`AverageConfig`, :class:`AlignConfig`.
- :mod:`cryomine.average.particles`: inputs (dataset, or STAR + tomogram); :mod:`cryomine.average.output`: outputs;
  :mod:`cryomine.average.checkpoint`: the `--resume` state.
"""

from cryomine.average.align import Alignment, align_particles, align_subtomogram
from cryomine.average.averaging import average_particles, lowpass, soft_sphere_mask
from cryomine.average.classify import AverageResult, result_summary, run_average
from cryomine.average.config import AlignConfig, AverageConfig, build_average_config
from cryomine.average.output import write_results
from cryomine.average.particles import ParticleData, load_particles
from cryomine.average.spectra import particle_spectra

__all__ = [
    "AlignConfig",
    "Alignment",
    "AverageConfig",
    "AverageResult",
    "ParticleData",
    "align_particles",
    "align_subtomogram",
    "average_particles",
    "build_average_config",
    "load_particles",
    "lowpass",
    "particle_spectra",
    "result_summary",
    "run_average",
    "soft_sphere_mask",
    "write_results",
]
