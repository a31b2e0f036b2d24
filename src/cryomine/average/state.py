"""The two objects an averaging run is made of: the fixed :class:`Problem` and the iteration :class:`State`
(what the ``--resume`` checkpoint keeps)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryomine.average.config import AverageConfig

__all__ = ["Problem", "State"]


@dataclass(frozen=True)
class Problem:
    """What stays fixed over the iterations: the (phase-flipped) ``(N, n, n, n)`` particles, voxel size (Å),
    class count ``k``, tilt range, real-space mask, config, starting references, and the derived cut-offs
    (cycles per voxel)."""

    parts: np.ndarray
    vs: float
    k: int
    tilt: tuple[float, float]
    mask: np.ndarray
    config: AverageConfig
    references: list[np.ndarray] | None
    phase_flipped: bool

    @property
    def n(self) -> int:
        return int(self.parts.shape[-1])

    @property
    def free(self) -> bool:
        return self.references is None

    @property
    def n_joint(self) -> int:
        return min(self.config.initial_iterations, self.config.iterations - 1) if self.free else 0

    @property
    def nyq(self) -> float:
        return 0.5 - 1.0 / self.n

    @property
    def init_cut(self) -> float:
        return min(self.vs / self.config.resolved_initial_lowpass_a(self.vs), self.nyq)

    def centre(self) -> bool:
        return self.free and self.config.center_reference


@dataclass
class State:
    """What an iteration updates (and the checkpoint keeps): per particle the pose (``mats`` ``(N, 3, 3)`` xyz,
    ``shifts`` ``(N, 3)`` zyx voxels), score, class and half set; per class the resolution (Å) and FSC curve;
    the history; the next iteration's index and random generator."""

    mats: np.ndarray
    shifts: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    half: np.ndarray
    res: np.ndarray
    curves: np.ndarray
    history: list[dict]
    start: int
    rng: np.random.Generator

    ARRAYS = {"matrices_xyz": "mats", "shifts_zyx": "shifts", "scores": "scores", "classes": "classes", "half": "half",
              "resolution_a": "res", "fsc_curves": "curves"}  # fmt: skip

    @classmethod
    def fresh(cls, problem: Problem) -> State:
        rng = np.random.default_rng(problem.config.seed)
        n_part = len(problem.parts)
        half = np.ones(n_part, np.int64)
        half[rng.permutation(n_part)[: n_part // 2]] = 0
        return cls(np.tile(np.eye(3), (n_part, 1, 1)), np.zeros((n_part, 3)), np.full(n_part, np.nan), np.zeros(n_part, np.int64),
                   half, np.full(problem.k, problem.vs / problem.init_cut), np.ones((problem.k, problem.n // 2 + 1)), [], 0, rng)

    @classmethod
    def restored(cls, arrays: dict[str, np.ndarray], meta: dict, seed: int) -> State:
        start = int(meta["iterations_done"])
        return cls(**{attr: arrays[key] for key, attr in cls.ARRAYS.items()}, history=meta["history"], start=start,
                   rng=np.random.default_rng([seed, start]))

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, attr) for key, attr in self.ARRAYS.items()}
