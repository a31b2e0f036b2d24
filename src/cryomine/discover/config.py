"""Settings of ``cryomine discover``: one frozen, validated dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cryomine.errors import InputError, check_int


@dataclass(frozen=True)
class DiscoverConfig:
    """What :func:`cryomine.discover.discover` does.

    Attributes:
        k: number of k-means clusters; ``None`` = the run's trained class count + 1 (one slot for a new structure).
        seed: seed of k-means, t-SNE and t-SNE's subsample.
        n_init: k-means restarts (the best inertia wins).
        tsne_perplexity: t-SNE perplexity (lowered to ``(n - 1) / 3`` for small samples).
        tsne_max_points: t-SNE embeds at most this many subtomograms (a seeded random subsample beyond).
        baseline: also run the label-free rotation-invariant baseline on the same rows.
        baseline_components: principal components kept of the baseline features.
        batch_size: subtomograms per inference batch.
    """

    k: int | None = None
    seed: int = 0
    n_init: int = 10
    tsne_perplexity: float = 30.0
    tsne_max_points: int = 3000
    baseline: bool = True
    baseline_components: int = 16
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.k is not None and (isinstance(self.k, bool) or int(self.k) != self.k or self.k < 2):
            raise InputError(f"k must be an integer >= 2 (number of clusters), got {self.k!r}", "--k")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}", "--seed")
        for name, high in (("n_init", 1000), ("tsne_max_points", None), ("baseline_components", None), ("batch_size", 4096)):
            check_int(getattr(self, name), name, 1, high)
        if self.tsne_max_points < 5:
            raise InputError(f"tsne_max_points must be at least 5, got {self.tsne_max_points}")
        if not (isinstance(self.tsne_perplexity, (int, float)) and math.isfinite(self.tsne_perplexity)
                and self.tsne_perplexity > 0):
            raise InputError(f"tsne_perplexity must be a positive number, got {self.tsne_perplexity!r}")

    def resolve_k(self, n_trained_classes: int, n_samples: int) -> int:
        """The cluster count for a run with ``n_trained_classes`` on ``n_samples`` subtomograms (InputError if > n)."""
        k = self.k if self.k is not None else n_trained_classes + 1
        if k < 2:
            raise InputError(f"k must be >= 2, got {k}", "--k")
        if k > n_samples:
            raise InputError(f"k = {k} clusters is more than the {n_samples} subtomograms to cluster", "--k")
        return int(k)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy."""
        return asdict(self)
