"""Crowded scenes around a target: the neighbourhood of one subtomogram, packed without overlaps.

cryomine packs a neighbourhood per subtomogram (rather than extracting from one huge crowded tomogram):

1. The scene is a cube of ``size + 2 * pad`` voxels; the final subtomogram is its central ``size`` cube. The
   padding holds neighbours that lie outside the box but project into it at high tilt, as in a real tomogram.
2. The target, in a uniformly random orientation, is placed at the scene centre plus a uniform random shift of
   at most ``max_shift_vox`` per axis.
3. Neighbours (random classes among the dataset's structures, random orientations drawn from a bank of
   ``bank_size`` uniformly random orientations per class, random centres within one molecule radius of the
   final box, so that they reach into it or sit in the padding just around it) are added by rejection
   sampling: a neighbour is accepted only if its mask overlaps no mask already placed. Packing stops when the
   masks occupy ``volume_fraction`` of the final subtomogram box (target included) or after ``max_attempts``
   consecutive rejections; the reached fraction is recorded.

Masks use each template's threshold (see :mod:`cryomine.simulate.templates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix, random_eulers_zyz
from cryomine.geometry.rotate_torch import rotate_volumes
from cryomine.simulate.packing import flat_bank, pack_candidates
from cryomine.simulate.templates import Template

MAX_VOLUME_FRACTION = 0.6  # crowding is refused from here on (packing stalls long before)
_CANDIDATES = 128  # candidates drawn at a time (the stream, not the result, depends on it)


@dataclass(frozen=True)
class CrowdingConfig:
    """How crowded subtomograms are. ``volume_fraction``: fraction of the box covered by masks (0 = target only)."""

    volume_fraction: float = 0.2
    max_shift_vox: float = 2.0
    pad: int = 8
    max_attempts: int = 60
    bank_size: int = 24

    def __post_init__(self) -> None:
        if not 0.0 <= self.volume_fraction < MAX_VOLUME_FRACTION:
            raise InputError(f"crowding (volume fraction) must be in [0, {MAX_VOLUME_FRACTION:g}), got {self.volume_fraction:g}", "--crowding")
        if self.max_shift_vox < 0:
            raise InputError(f"max shift must be >= 0 voxels, got {self.max_shift_vox:g}", "--max-shift")
        if self.pad < 0 or self.max_attempts < 0 or self.bank_size < 1:
            raise InputError("pad and max_attempts must be >= 0 and bank_size >= 1", "crowding")


@dataclass
class Scene:
    """One packed neighbourhood. Arrays are ``(s, s, s)`` with ``s = size + 2 * pad`` (z, y, x)."""

    density: np.ndarray  # all molecules
    target: np.ndarray  # the target alone (clean density, same pose)
    target_mask: np.ndarray  # bool
    eulers_zyz: np.ndarray  # (3,) target orientation, degrees (RELION convention)
    shift_zyx: np.ndarray  # (3,) target centre minus scene centre, voxels
    neighbour_classes: list[int]
    volume_fraction: float  # reached, inside the central ``size`` box


class NeighbourBank:
    """Per-class cubes of rotated templates (and their masks), drawn as neighbours."""

    def __init__(self, templates: list[Template], bank_size: int, seed: int) -> None:
        rng = np.random.default_rng([seed, 0xBA4C])
        self.cubes: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        for t in templates:
            eulers = random_eulers_zyz(bank_size, rng)
            mats = torch.from_numpy(euler_zyz_to_matrix(eulers).astype(np.float32))
            vols = torch.from_numpy(t.density).expand(bank_size, *t.density.shape).contiguous()
            rotated = rotate_volumes(vols, mats).numpy()
            self.cubes.append(rotated)
            self.masks.append(rotated > t.mask_level)
        self.bank_size = int(bank_size)
        self.flat = flat_bank(self.cubes, self.masks)


def overlap_slices(dest_shape: tuple[int, ...], m: int, centre_zyx: np.ndarray) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices of a destination of ``dest_shape`` and of an ``(m, m, m)`` cube centred at voxel ``centre_zyx``.

    The cube's voxel ``m // 2`` lands on ``centre_zyx``; the regions are clipped at the borders. ``None`` when
    they do not overlap.
    """
    lo = centre_zyx - m // 2
    d_sl, c_sl = [], []
    for ax in range(3):
        a0, a1 = lo[ax], lo[ax] + m
        b0, b1 = max(a0, 0), min(a1, dest_shape[ax])
        if b1 <= b0:
            return None
        d_sl.append(slice(b0, b1))
        c_sl.append(slice(b0 - a0, b1 - a0))
    return tuple(d_sl), tuple(c_sl)


def pack_scene(
    target: Template,
    bank: NeighbourBank,
    bank_templates: list[Template],
    size: int,
    config: CrowdingConfig,
    rng: np.random.Generator,
) -> Scene:
    """Pack one scene around ``target`` (see module docstring); deterministic given ``rng``."""
    s = size + 2 * config.pad
    c = s // 2
    eulers = random_eulers_zyz(1, rng)[0]
    shift = rng.uniform(-config.max_shift_vox, config.max_shift_vox, size=3)
    # rotate within the template's own rotation-safe cube (fractional shift included), paste at the integer part
    whole = np.round(shift).astype(int)
    mat = torch.from_numpy(euler_zyz_to_matrix(eulers).astype(np.float32))[None]
    frac = torch.from_numpy((shift - whole).astype(np.float32))[None]
    cube = rotate_volumes(torch.from_numpy(target.density)[None], mat, frac)[0].numpy()
    cube = np.clip(cube, 0.0, None)
    tdens = np.zeros((s, s, s), dtype=np.float32)
    region = overlap_slices(tdens.shape, cube.shape[0], np.full(3, c) + whole)
    if region is None:  # pragma: no cover - the target centre is always inside the scene
        raise InputError("target does not fit the scene", "size")
    tdens[region[0]] = cube[region[1]]
    tmask = tdens > target.mask_level
    occupied = tmask.copy()
    density = tdens.copy()
    inner = (slice(config.pad, config.pad + size),) * 3
    neighbours: list[int] = []
    target_count = config.volume_fraction * float(size**3)
    count, failures, done = int(occupied[inner].sum()), 0, False
    n_classes = len(bank_templates)
    radii = np.array([int(np.ceil(t.radius_vox)) for t in bank_templates])
    lo_k, hi_k = np.maximum(0, config.pad - radii), np.minimum(s, config.pad + size + radii)  # neighbours reach the box
    while not done:
        ks = rng.integers(n_classes, size=_CANDIDATES)
        js = rng.integers(bank.bank_size, size=_CANDIDATES)
        centres = lo_k[ks, None] + (rng.random((_CANDIDATES, 3)) * (hi_k - lo_k)[ks, None]).astype(np.int64)
        accepted = np.zeros(_CANDIDATES, dtype=np.int8)
        _, count, failures, done = pack_candidates(occupied, density, *bank.flat, ks, js, centres, config.pad,
                                                   config.pad + size, count, target_count, failures, config.max_attempts,
                                                   accepted)  # fmt: skip
        neighbours.extend(int(k) for k in ks[accepted == 1])
    fraction = count / float(size**3)
    return Scene(
        density=density,
        target=tdens,
        target_mask=tmask,
        eulers_zyz=eulers.astype(np.float32),
        shift_zyx=shift.astype(np.float32),
        neighbour_classes=neighbours,
        volume_fraction=float(fraction),
    )
