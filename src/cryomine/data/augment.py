"""Training-time augmentation that respects the imaging physics: wedge-preserving flips and fresh noise.

* **Flips.** Only the axis flips that map the tilt geometry onto itself
  (:func:`cryomine.geometry.wedge.wedge_preserving_flips`: 8 for a tilt set symmetric about 0, else 4), so an
  augmented box is still a box this microscope could have recorded: its missing wedge stays where it was. The
  same flip is applied to the input, the target mask and the clean density, so they stay registered.
* **Fresh noise.** A simulated dataset keeps, per box, its noise-free reconstruction ``S`` and the reconstruction
  ``N1`` of unit-variance projection noise through the same geometry (:mod:`cryomine.io.subtomo_h5`). Boxes of
  one ``noise_group`` share one imaging geometry, so their ``N1`` are independent draws of one zero-mean Gaussian
  noise process, whose law a wedge-preserving flip leaves unchanged. A fresh draw is
  ``N = sum_k c_k flip_k(N1[j_k])`` over ``noise_mix`` random members ``j_k`` of the box's group, with random
  flips and coefficients ``c`` uniform on the unit sphere: a Gaussian field with exactly the covariance of
  ``N1``, different every time a box is seen. It is scaled as the simulator does
  (:func:`cryomine.simulate.imaging.calibrate_noise`): ``x = S + N sqrt(var(S) / (snr var(N)))``, so the SNR in the
  box is exactly the dataset's (or, with ``snr_range``, one drawn log-uniformly per box).
* **Shifts** (``max_shift_vox > 0``): a random integer shift of up to that many voxels per axis (a circular
  roll of input, mask and density together), before the noise is added.

Determinism: every choice is drawn from the ``numpy.random.Generator`` passed in (the training loop seeds one
per batch from the run seed, the epoch and the batch number), so a resumed run sees the same boxes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cryomine.data.normalise import row_var_mean
from cryomine.errors import InputError
from cryomine.geometry.wedge import flip_volumes

Flip = tuple[bool, bool, bool]
MAX_NOISE_MIX = 16


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations training applies (validated; bad values raise :class:`InputError`).

    Attributes:
        flips: random wedge-preserving flips / 180-degree rotations of each training box.
        fresh_noise: a new noise realisation every time a box is seen (needs a dataset with a noise model).
        noise_mix: stored noise realisations combined into one fresh draw (1 .. 16).
        max_shift_vox: random integer shifts of up to this many voxels per axis (0 = off).
        snr_range: ``(low, high)``: draw each box's SNR log-uniformly in this range (robustness to other noise
            levels); ``None`` keeps the dataset's SNR. Needs ``fresh_noise``.
        snr_range_fraction: the fraction of boxes whose SNR is drawn from ``snr_range`` (the others keep the
            dataset's SNR); 1 = all.
    """

    flips: bool = True
    fresh_noise: bool = True
    noise_mix: int = 3
    max_shift_vox: int = 0
    snr_range: tuple[float, float] | None = None
    snr_range_fraction: float = 1.0

    def __post_init__(self) -> None:
        for key in ("flips", "fresh_noise"):
            if not isinstance(getattr(self, key), bool):
                raise InputError(f"augment {key}: must be true or false, got {getattr(self, key)!r}")
        if not _is_int(self.noise_mix) or not 1 <= self.noise_mix <= MAX_NOISE_MIX:
            raise InputError(f"augment noise_mix: must be an integer in 1..{MAX_NOISE_MIX}, got {self.noise_mix!r}")
        if not _is_int(self.max_shift_vox) or not 0 <= self.max_shift_vox <= 16:
            raise InputError(f"augment max_shift_vox: must be an integer in 0..16 voxels, got {self.max_shift_vox!r}")
        if self.snr_range is not None:
            r = tuple(self.snr_range) if isinstance(self.snr_range, (list, tuple)) else ()
            if len(r) != 2 or not all(_is_num(v) and v > 0 for v in r) or r[0] > r[1]:
                raise InputError(f"augment snr_range: need two finite SNRs 0 < low <= high, got {self.snr_range!r}")
            if not self.fresh_noise:
                raise InputError("augment snr_range: needs fresh_noise (the noise is redrawn at the new SNR)")
            object.__setattr__(self, "snr_range", (float(r[0]), float(r[1])))
        if not _is_num(self.snr_range_fraction) or not 0 < self.snr_range_fraction <= 1:
            raise InputError(f"augment snr_range_fraction: must be in (0, 1], got {self.snr_range_fraction!r}")
        object.__setattr__(self, "snr_range_fraction", float(self.snr_range_fraction))

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (the paper's protocol; what runs made before augmentation existed used)."""
        return cls(flips=False, fresh_noise=False)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.flips or self.fresh_noise or self.max_shift_vox > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        d["snr_range"] = None if self.snr_range is None else list(self.snr_range)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """Build (and validate) from :meth:`to_dict` output or a partial mapping of overrides."""
        if not isinstance(data, Mapping):
            raise InputError(f"augment config must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"augment config: unknown key(s) {', '.join(map(repr, unknown))}")
        d = dict(data)
        if isinstance(d.get("snr_range"), list):
            d["snr_range"] = tuple(d["snr_range"])
        return cls(**d)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class NoisePool:
    """Unit-noise reconstructions to draw fresh noise from, grouped by imaging geometry.

    Attributes:
        unit: ``(m, d, h, w)`` float32 unit-noise reconstructions ``N1`` (one per dataset row of the pool).
        groups: ``(m,)`` int noise group of each; only members of one group are ever combined.
    """

    unit: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        if self.unit.ndim != 4 or self.groups.shape != (self.unit.shape[0],):
            raise InputError(f"noise pool: need (m, d, h, w) noise and (m,) groups, got {self.unit.shape}, {self.groups.shape}")
        order = np.argsort(self.groups, kind="stable")
        keys, starts = np.unique(self.groups[order], return_index=True)
        members = np.split(order, starts[1:])
        object.__setattr__(self, "_members", {int(k): m for k, m in zip(keys, members)})

    def members(self, group: int) -> np.ndarray:
        """Pool positions of ``group`` (InputError if the group has no member in the pool)."""
        found = self._members.get(int(group))  # type: ignore[attr-defined]
        if found is None:
            raise InputError(f"noise pool has no realisation of noise group {group}")
        return found

    def draw(self, group: int, k: int, flips: Sequence[Flip], rng: np.random.Generator) -> np.ndarray:
        """One fresh ``(d, h, w)`` float32 noise field of ``group``: ``sum_k c_k flip_k(N1[j_k])``, ``|c| = 1``."""
        members = self.members(group)
        picks = rng.choice(members, size=k, replace=members.size < k)
        coef = rng.standard_normal(k)
        coef /= max(float(np.linalg.norm(coef)), 1e-12)
        out = np.empty(self.unit.shape[1:], np.float32)
        for n, (j, c) in enumerate(zip(picks, coef)):
            field = flip_volumes(self.unit[j], flips[int(rng.integers(len(flips)))])
            if n == 0:
                np.multiply(field, np.float32(c), out=out)
            else:
                out += np.float32(c) * field
        return out


def add_calibrated_noise(signal: np.ndarray, noise: np.ndarray, snr: float | np.ndarray) -> np.ndarray:
    """``signal + a * noise`` for ``(n, d, h, w)`` (or one ``(d, h, w)``) boxes, with ``a`` per box chosen so
    that ``var(signal) / var(a noise) = snr`` inside the box (as :func:`cryomine.simulate.imaging.calibrate_noise`;
    double-precision sums); ``snr = inf`` leaves a box noise-free."""
    single = signal.ndim == 3
    s = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32)).reshape(1 if single else signal.shape[0], -1)
    n = torch.from_numpy(np.ascontiguousarray(noise, dtype=np.float32)).reshape(s.shape)
    ratio = torch.as_tensor(np.broadcast_to(np.asarray(snr, np.float64), (s.shape[0],)).copy())
    var_s, var_n = row_var_mean(s)[0][:, 0], row_var_mean(n)[0][:, 0]
    if bool(((var_s <= 0) | (var_n <= 0)).any()):
        raise InputError("fresh noise: a box has a constant noise-free reconstruction or noise field")
    a = torch.where(torch.isinf(ratio), torch.zeros_like(ratio), torch.sqrt(var_s / (ratio * var_n)))
    out = torch.addcmul(s, n, a.float()[:, None]).numpy()
    return out.reshape(signal.shape)


def draw_snr(config: AugmentConfig, default: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` SNRs: log-uniform in ``config.snr_range`` (for a ``snr_range_fraction`` of the boxes), else
    ``default`` (the dataset's)."""
    if config.snr_range is None:
        return np.full(n, float(default))
    lo, hi = np.log(config.snr_range)
    drawn = np.exp(rng.uniform(lo, hi, n))
    if config.snr_range_fraction >= 1:
        return drawn
    return np.where(rng.random(n) < config.snr_range_fraction, drawn, float(default))


def _transform(vol: np.ndarray, flip: Flip, shift: np.ndarray) -> np.ndarray:
    out = flip_volumes(vol, flip)
    if np.any(shift):
        out = np.roll(out, tuple(int(s) for s in shift), axis=(-3, -2, -1))
    return out


def augment_boxes(
    boxes: Mapping[str, np.ndarray],
    groups: np.ndarray | None,
    config: AugmentConfig,
    *,
    flips: Sequence[tuple[Flip, ...]],
    pool: NoisePool | None,
    snr: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Augment a batch of boxes (each ``(b, d, h, w)``); returns new arrays, the inputs untouched.

    ``boxes`` holds ``clean`` (noise-free reconstructions, with fresh noise) or ``x`` (the stored inputs,
    without), and optionally ``mask`` and ``density`` (transformed alike). ``groups`` ``(b,)``: each box's noise
    group (with fresh noise). ``flips``: per box, the flips its tilt geometry allows
    (:func:`wedge_preserving_flips`); ``snr``: the dataset's SNR. The output has ``x`` (not normalised), ``mask``
    and ``density`` as given.
    """
    source = "clean" if config.fresh_noise else "x"
    if source not in boxes:
        raise InputError(f"augment: the batch has no {source!r} volumes")
    b = boxes[source].shape[0]
    if len(flips) != b:
        raise InputError(f"augment: need the allowed flips of each of the {b} boxes, got {len(flips)}")
    m = config.max_shift_vox
    out = {key: np.empty_like(boxes[key]) for key in (source, "mask", "density") if key in boxes}
    for i in range(b):
        allowed = flips[i] if config.flips else ((False, False, False),)
        flip = allowed[int(rng.integers(len(allowed)))]
        shift = rng.integers(-m, m + 1, size=3) if m else np.zeros(3, np.int64)
        for key in out:
            out[key][i] = _transform(boxes[key][i], flip, shift)
    if config.fresh_noise:
        if pool is None or groups is None:
            raise InputError("augment: fresh noise needs a noise pool and the boxes' noise groups")
        snrs = draw_snr(config, snr, b, rng)
        noise = np.stack([pool.draw(int(groups[i]), config.noise_mix, flips[i], rng) for i in range(b)])
        out["x"] = add_calibrated_noise(out.pop("clean"), noise, snrs)
    return out
