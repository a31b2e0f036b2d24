"""Frozen, validated parameter groups of particle picking (DoG and template matching) and pick evaluation.

Every default of the ``cryomine pick`` / ``evaluate-picks`` commands lives here (the CLI passes only what the user
gave). Lengths are voxels where named ``_vox`` and Å where named ``_a``; angles are degrees. Nonsense values raise
:class:`~cryomine.errors.InputError` naming the parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cryomine.acquisition.ctf import MicroscopeConfig
from cryomine.devices import DEVICE_CHOICES, check_thread_count
from cryomine.errors import InputError, check_int
from cryomine.geometry.sampling import symmetry_group
from cryomine.geometry.tilts import check_tilt_range
from cryomine.pick.weighting import TiltWeighting

__all__ = ["PeakConfig", "DogConfig", "TemplateMatchConfig", "LearnedPickConfig", "MatchingConfig", "METHODS"]

METHODS = ("dog", "template", "learned")


def _finite(value: object, name: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"must be a number, got {value!r}", name) from None
    if not math.isfinite(v):
        raise InputError(f"must be finite, got {value!r}", name)
    return v


def _positive(value: object, name: str) -> float:
    v = _finite(value, name)
    if v <= 0:
        raise InputError(f"must be > 0, got {v:g}", name)
    return v


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"must be true or false, got {value!r}", name)
    return value


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"must be an integer >= 1, got {value!r}", name)
    return value


@dataclass(frozen=True)
class PeakConfig:
    """Peak extraction from a score map (shared by DoG and template matching).

    - ``min_distance_vox``: exclusion radius: no two picks closer than this (voxels); ``None`` = the particle
      radius of the picker.
    - ``top_n``: keep at most this many peaks (best first); ``None`` = no limit.
    - ``threshold``: keep peaks with ``score >= threshold``; ``None`` = automatic unless ``top_n`` is given.
    - ``auto_sigma`` (DoG): the automatic threshold (used when neither ``threshold`` nor ``top_n`` is given) is
      ``median + auto_sigma * 1.4826 * MAD`` of the score map (a robust "n sigma above background").
    - ``false_positives`` (template matching): the automatic threshold is the score above which this many
      false positives are expected over the whole search space (voxels x orientations; Rickgauer et al. 2017,
      pytom-match-pick's ``--number-of-false-positives``; see
      :func:`~cryomine.pick.template.false_positive_threshold`).
    - ``split_populations`` (template matching, automatic threshold): when the scores of the peaks above that
      threshold fall into two clearly separate groups (Otsu's split with Ashman's D > 4), keep only the upper
      group. In a crowded tomogram other complexes correlate with a template far above noise; noise statistics
      cannot tell them from the target, their scores' gap can (:func:`~cryomine.pick.peaks.population_split`).
    - ``border_vox``: no peak closer than this (voxels) to any face of the tomogram (a peak at index ``i`` on an
      axis of ``n`` voxels is kept when ``border_vox <= i < n - border_vox``); ``None`` = half the particle
      radius, rounded up (:meth:`border_for`): reconstruction artefacts and truncated particles at the faces
      otherwise give false picks. 0 keeps peaks on the faces.
    """

    min_distance_vox: float | None = None
    top_n: int | None = None
    threshold: float | None = None
    auto_sigma: float = 6.0
    border_vox: int | None = None
    false_positives: float = 1.0
    split_populations: bool = True

    def __post_init__(self) -> None:
        _flag(self.split_populations, "--split-populations")
        if self.min_distance_vox is not None:
            _positive(self.min_distance_vox, "--min-distance")
        if self.top_n is not None:
            _positive_int(self.top_n, "--top-n")
        if self.threshold is not None:
            _finite(self.threshold, "--threshold")
        _positive(self.auto_sigma, "auto_sigma")
        _positive(self.false_positives, "--false-positives")
        if self.border_vox is not None:
            check_int(self.border_vox, "--border-vox", 0, 10_000)  # voxels from a face

    def border_for(self, radius_vox: float) -> int:
        """The face exclusion (voxels): ``border_vox``, or ``ceil(radius_vox / 2)`` when it is ``None``."""
        if self.border_vox is not None:
            return int(self.border_vox)
        return math.ceil(float(radius_vox) / 2.0 - 1e-9)


@dataclass(frozen=True)
class DogConfig:
    """Difference-of-Gaussian picking of bright blobs of radius ``radius_vox`` (voxels).

    The band is centred on ``sigma = radius / sqrt(3)`` (where the scale-normalised Laplacian of a solid ball
    of that radius peaks): ``DoG = G(sigma / sqrt(ratio)) - G(sigma * sqrt(ratio))`` with ``ratio`` = 1.6
    (the classic DoG-to-LoG ratio). ``peaks.min_distance_vox`` defaults to the radius. ``invert``: negate the
    tomogram first (for protein-dark tomograms: DoG finds bright blobs).
    """

    radius_vox: float
    ratio: float = 1.6
    peaks: PeakConfig = field(default_factory=lambda: PeakConfig(auto_sigma=5.0))
    invert: bool = False

    def __post_init__(self) -> None:
        r = _positive(self.radius_vox, "--radius")
        if r < 1.0:
            raise InputError(f"particle radius must be >= 1 voxel, got {r:g}", "--radius")
        ratio = _finite(self.ratio, "ratio")
        if not 1.0 < ratio <= 10.0:
            raise InputError(f"must be in (1, 10], got {ratio:g}", "ratio")
        _flag(self.invert, "--invert")
        if not isinstance(self.peaks, PeakConfig):
            raise InputError("peaks must be a PeakConfig", "peaks")

    @property
    def sigmas_vox(self) -> tuple[float, float]:
        """The inner and outer Gaussian widths (voxels)."""
        s = float(self.radius_vox) / math.sqrt(3.0)
        k = math.sqrt(float(self.ratio))
        return s / k, s * k


@dataclass(frozen=True)
class TemplateMatchConfig:
    """FFT template matching (fast local correlation, Roseman 2003) over a uniform angular grid.

    - ``angular_step_deg``: step of :func:`cryomine.geometry.angular_sampling`, in (0, 180].
    - ``symmetry``: the template's point group, ``C<n>`` or ``D<n>`` about its z axis (RELION's convention):
      only the orientations it needs are searched (:func:`cryomine.geometry.reduce_by_symmetry`, about
      ``1 / |G|`` of the grid). ``C1``: none.
    - ``tilt_min_deg`` / ``tilt_max_deg``: the tomogram's tilt range; the template is multiplied by the
      missing-wedge mask of this range (``wedge=False`` to skip).
    - ``microscope``: optics for CTF weighting of the template (``-CTF * envelope * MTF``, the transfer of a
      protein-bright tomogram); ``None`` = no CTF weighting.
    - ``tilt_weighting``: per-tilt weighting of the template (:class:`~cryomine.pick.weighting.TiltWeighting`:
      the tilt angles, per-tilt defocus and accumulated dose, from the metadata; pytom-match-pick's
      ``--per-tilt-weighting``) instead of the continuous wedge x one CTF; ``None`` = the continuous model.
    - ``mask_radius_vox``: radius of the spherical correlation mask; ``None`` = the template's own radius.
      A custom (non-spherical) mask, when given to :func:`~cryomine.pick.template.match_template`, wins.
    - ``pad_edges``: zero-pad the tomogram at its faces so that correlations never wrap around (exact at the
      faces, tiling-invariant). ``False``: one circular FFT over the whole tomogram (about ``(1 + (m - 1) / n)^3``
      less work; scores within ``m / 2`` of a face mix in voxels of the opposite face), as PyTom and pyTME do
      by default; needs the tomogram in one tile.
    - ``tile_vox``: edge of the tiles' output cores (voxels); ``None`` = the whole tomogram when it fits
      ``memory_gb``, else automatic tiles.
    - ``random_phase_correction``: also search a phase-randomised copy of the template (seeded by
      ``random_phase_seed``) and subtract its maximum score per voxel (plus its mean) from the template's
      (:mod:`cryomine.pick.background`; STOPGAP, pytom-match-pick's ``--random-phase-correction``): removes
      the background that any density of the template's power spectrum scores. Doubles the time.
    - ``angle_batch``: orientations correlated together.
    - ``memory_gb``: the whole search's peak memory (GB): the tiles are sized for what the process already holds
      plus their transforms on every thread; a search that cannot fit even in the smallest tiles is refused.
    - ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    - ``threads``: CPU worker threads, each scanning its share of the orientations with single-threaded
      transforms; ``None`` = torch's thread count.
    - ``peaks``: peak extraction; ``min_distance_vox`` defaults to the template's radius.
    - ``invert``: negate the tomogram (cryomine's convention is protein bright; most reconstructions are protein
      dark). Scores of an inverted protein-dark copy equal those of the protein-bright original.
    - ``invert_template``: negate an MRC template (most templates cut from tomograms or averages are protein
      dark). Bundled structures and atomic models are always protein bright.
    - ``recenter_template``: re-centre an MRC template on its centre of mass, clip its negative density and
      crop it to a rotation-safe box (what bundled structures get). Default: an MRC template keeps its own
      box and centre (voxel ``m // 2``), so a mask made for it (``--mask``) applies unchanged.
    - ``template_lowpass_a``: low-pass the template at this resolution (Å; raised-cosine edge from 0.8 of the
      cutoff frequency), as pytom-match-pick's ``--low-pass``: a template from a noisy average carries noise at
      high frequencies that only lowers its correlation with particles. ``None``: as given (bundled structures
      are already filtered to twice the voxel size).
    """

    angular_step_deg: float = 15.0
    symmetry: str = "C1"
    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    wedge: bool = True
    microscope: MicroscopeConfig | None = field(default_factory=MicroscopeConfig)
    tilt_weighting: TiltWeighting | None = None
    mask_radius_vox: float | None = None
    pad_edges: bool = True
    tile_vox: int | None = None
    random_phase_correction: bool = False
    random_phase_seed: int = 0
    angle_batch: int = 4
    memory_gb: float = 4.0
    device: str = "auto"
    threads: int | None = None
    peaks: PeakConfig = field(default_factory=PeakConfig)
    invert: bool = False
    invert_template: bool = False
    recenter_template: bool = False
    template_lowpass_a: float | None = None

    def __post_init__(self) -> None:
        for flag, name in ((self.invert, "--invert"), (self.invert_template, "--invert-template"), (self.recenter_template, "--recenter-template")):
            _flag(flag, name)
        if self.template_lowpass_a is not None and not 0.0 < _finite(self.template_lowpass_a, "--template-lowpass") <= 1e4:
            raise InputError(f"template low-pass must be in (0, 10000] Å, got {self.template_lowpass_a!r}", "--template-lowpass")
        step = _finite(self.angular_step_deg, "--angular-step")
        if not 0.0 < step <= 180.0:
            raise InputError(f"angular step must be in (0, 180] degrees, got {step:g}", "--angular-step")
        symmetry_group(self.symmetry)  # validates C<n> / D<n>
        object.__setattr__(self, "symmetry", str(self.symmetry).strip().upper())
        check_tilt_range(self.tilt_min_deg, self.tilt_max_deg, "--tilt-min/--tilt-max")
        if self.microscope is not None and not isinstance(self.microscope, MicroscopeConfig):
            raise InputError("microscope must be a MicroscopeConfig or None", "microscope")
        if self.tilt_weighting is not None and not isinstance(self.tilt_weighting, TiltWeighting):
            raise InputError("tilt_weighting must be a TiltWeighting or None", "--per-tilt-weighting")
        if self.mask_radius_vox is not None and _positive(self.mask_radius_vox, "--mask-radius") < 1.0:
            raise InputError(f"mask radius must be >= 1 voxel, got {self.mask_radius_vox:g}", "--mask-radius")
        if self.tile_vox is not None:
            _positive_int(self.tile_vox, "--tile-size")
            if not self.pad_edges:
                raise InputError("tiles need edge padding: drop --tile-size or --no-pad-edges", "--tile-size")
        _flag(self.random_phase_correction, "--random-phase-correction")
        if isinstance(self.random_phase_seed, bool) or not isinstance(self.random_phase_seed, int) or self.random_phase_seed < 0:
            raise InputError(f"must be an integer >= 0, got {self.random_phase_seed!r}", "--random-phase-seed")
        _positive_int(self.angle_batch, "--angle-batch")
        _positive(self.memory_gb, "--memory-gb")
        if self.threads is not None:
            check_thread_count(self.threads, "--threads")
        if self.device not in DEVICE_CHOICES:
            raise InputError(f"must be auto, cpu or cuda, got {self.device!r}", "--device")
        if not isinstance(self.peaks, PeakConfig):
            raise InputError("peaks must be a PeakConfig", "peaks")


@dataclass(frozen=True)
class LearnedPickConfig:
    """Picking with a trained picker network (:mod:`cryomine.pick.learned`).

    - ``tile_vox``: edge of the cubic tiles the tomogram is labelled in (rounded up to the network's multiple);
      ``None`` = automatic: the edge that computes the fewest voxels over the whole tomogram (overlaps counted) among
      those whose window fits ``memory_gb`` (:func:`cryomine.pick.learned.choose_tile`).
    - ``memory_gb``: what one window's forward pass may use (GB), for the automatic tile.
    - ``overlap_vox``: how far tiles overlap on each side; only each tile's centre is kept. At or beyond the
      network's receptive radius (:func:`~cryomine.models.picker.receptive_radius`) the labels equal those of
      the whole tomogram in one piece; less trades exactness at tile seams for speed.
    - ``min_probability``: a voxel belongs to a class when that class is its most probable label and its
      probability is at least this.
    - ``min_size_fraction``: a connected region of one class smaller than this fraction of the class's
      expected volume (the training masks' median) is dropped; one several times the expected volume is split
      into that many particles (k-means on its voxels).
    - ``min_size_vox``: the smallest region kept when a class's expected volume is unknown.
    - ``batch``: tiles per forward pass. ``device``: ``auto``, ``cpu`` or ``cuda``. ``invert``: negate the
      tomogram first (protein dark). ``bf16``: bfloat16 autocast (``None``: automatic,
      on only where the CPU/GPU has native bf16, :func:`cryomine.devices.resolve_bf16`).
    """

    tile_vox: int | None = None
    memory_gb: float = 8.0
    overlap_vox: int = 24
    min_probability: float = 0.5
    min_size_fraction: float = 0.25
    min_size_vox: int = 8
    batch: int = 1
    device: str = "auto"
    invert: bool = False
    bf16: bool | None = None

    def __post_init__(self) -> None:
        if self.tile_vox is not None:
            _positive_int(self.tile_vox, "--tile-size")
            if self.tile_vox > 512:
                raise InputError(f"tiles of at most 512 voxels, got {self.tile_vox}", "--tile-size")
        if not 0.0 < _finite(self.memory_gb, "--memory-gb") <= 4096:
            raise InputError(f"must be in (0, 4096] GB, got {self.memory_gb:g}", "--memory-gb")
        limit = self.tile_vox if self.tile_vox is not None else 512
        if isinstance(self.overlap_vox, bool) or not isinstance(self.overlap_vox, int) or not 0 <= 2 * self.overlap_vox < limit:
            raise InputError(f"overlap must be an integer >= 0 and below half the tile ({limit}), got {self.overlap_vox!r}", "--overlap")
        if not 0.0 <= _finite(self.min_probability, "--min-probability") < 1.0:
            raise InputError(f"must be in [0, 1), got {self.min_probability:g}", "--min-probability")
        if not 0.0 <= _finite(self.min_size_fraction, "--min-size-fraction") <= 1.0:
            raise InputError(f"must be in [0, 1], got {self.min_size_fraction:g}", "--min-size-fraction")
        _positive_int(self.min_size_vox, "--min-size")
        _positive_int(self.batch, "--batch-size")
        if self.device not in DEVICE_CHOICES:
            raise InputError(f"must be auto, cpu or cuda, got {self.device!r}", "--device")
        _flag(self.invert, "--invert")
        if self.bf16 is not None:
            _flag(self.bf16, "--bf16")


@dataclass(frozen=True)
class MatchingConfig:
    """How picks are matched to true particles (``evaluate-picks``).

    A pick is a hit for a true particle when their distance is ``<= hit_fraction * radius`` of the true
    particle's class (SHREC and the CZII challenge use half the radius). ``radius_a`` fixes one radius (Å) for
    every class; otherwise each class's radius is half the diameter of the bundled structure of that name.
    ``voxel_size_a`` converts Å to the STAR files' voxel coordinates (``None``: read it from the files).
    """

    hit_fraction: float = 0.5
    radius_a: float | None = None
    voxel_size_a: float | None = None

    def __post_init__(self) -> None:
        f = _finite(self.hit_fraction, "hit_fraction")
        if not 0.0 < f <= 2.0:
            raise InputError(f"must be in (0, 2], got {f:g}", "hit_fraction")
        if self.radius_a is not None:
            _positive(self.radius_a, "--radius")
        if self.voxel_size_a is not None:
            _positive(self.voxel_size_a, "--voxel-size")
