"""Particle picking in tomograms: DoG and template matching, peak extraction, extraction, evaluation, atlas.

- :mod:`cryomine.pick.dog`: template-free Difference-of-Gaussian picking (:func:`pick_dog`).
- :mod:`cryomine.pick.template`: FFT fast-local-correlation template matching (:func:`match_template`).
- :mod:`cryomine.pick.template_input`: templates from ids, atomic models and users' MRC maps (own box and mask,
  Fourier rescaling to the tomogram's voxel size) (:func:`load_match_template`).
- :mod:`cryomine.pick.contrast`: the protein-dark heuristics behind the ``--invert`` warnings.
- :mod:`cryomine.pick.correlate`: the FFT correlation engine template matching runs per tile.
- :mod:`cryomine.pick.peaks`: local maxima + greedy exclusion-radius suppression, :class:`Picks`.
- :mod:`cryomine.pick.tiles`: overlapping tiles and memory-mapped tomograms.
- :mod:`cryomine.pick.extract`: subtomogram datasets from picks (:func:`extract_subtomograms`).
- :mod:`cryomine.pick.evaluate`: precision / recall / F1 against true positions (:func:`evaluate_pick_files`).
- :mod:`cryomine.pick.atlas`: the visual atlas (:func:`make_atlas`).
- :mod:`cryomine.pick.learned`: a trained picker network's tiled labelling and its per-class picks.
- :mod:`cryomine.pick.background`: random-phase background correction of template matching.
- :mod:`cryomine.pick.config`: the parameter dataclasses.
"""

from cryomine.pick.atlas import Atlas, build_atlas, make_atlas, save_atlas_png
from cryomine.pick.config import DogConfig, LearnedPickConfig, MatchingConfig, PeakConfig, TemplateMatchConfig
from cryomine.pick.contrast import ContrastWarning, template_contrast, tomogram_contrast
from cryomine.pick.dog import DogResult, dog_response, pick_dog
from cryomine.pick.evaluate import PointSet, evaluate_pick_files, evaluate_point_sets, match_points
from cryomine.pick.extract import ExtractResult, extract_subtomograms
from cryomine.pick.learned import label_tomogram, picks_from_labels
from cryomine.pick.peaks import Candidates, Picks, find_peaks, local_maxima, read_picks, select_peaks
from cryomine.pick.template import MatchResult, match_template, spherical_mask, template_weight
from cryomine.pick.template_input import MatchTemplate, fourier_rescale, load_match_template
from cryomine.pick.tiles import Tile, plan_tiles

__all__ = [
    "Atlas",
    "Candidates",
    "ContrastWarning",
    "DogConfig",
    "LearnedPickConfig",
    "DogResult",
    "ExtractResult",
    "MatchResult",
    "MatchTemplate",
    "MatchingConfig",
    "PeakConfig",
    "Picks",
    "PointSet",
    "TemplateMatchConfig",
    "Tile",
    "build_atlas",
    "dog_response",
    "evaluate_pick_files",
    "evaluate_point_sets",
    "extract_subtomograms",
    "find_peaks",
    "fourier_rescale",
    "load_match_template",
    "local_maxima",
    "make_atlas",
    "match_points",
    "match_template",
    "pick_dog",
    "label_tomogram",
    "picks_from_labels",
    "plan_tiles",
    "read_picks",
    "save_atlas_png",
    "select_peaks",
    "spherical_mask",
    "template_contrast",
    "template_weight",
    "tomogram_contrast",
]
