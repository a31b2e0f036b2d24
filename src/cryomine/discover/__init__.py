"""Discovery of structures a network was not trained on: cluster DSM-Net features, average, compare with truth.

- :mod:`cryomine.discover.features`: the classification subnet's hidden features (and recovered densities).
- :mod:`cryomine.discover.baseline`: a label-free rotation-invariant baseline (radial spectra and profiles).
- :mod:`cryomine.discover.cluster`: seeded k-means, t-SNE, purity and held-out recall / precision.
- :mod:`cryomine.discover.averages`: per-cluster means in the reference frame and their FSC against truth.
- :mod:`cryomine.discover.run`: :func:`discover`, what ``cryomine discover`` runs.
"""

from cryomine.discover.cluster import class_score, clustering_scores, contingency, kmeans, purity, tsne_2d
from cryomine.discover.config import DiscoverConfig
from cryomine.discover.run import DiscoverResult, discover

__all__ = [
    "DiscoverConfig",
    "DiscoverResult",
    "class_score",
    "clustering_scores",
    "contingency",
    "discover",
    "kmeans",
    "purity",
    "tsne_2d",
]
