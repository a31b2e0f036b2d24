"""``discover``: cluster a dataset's subtomograms by DSM-Net features to find structures the network never saw.

Steps: the run's classification features of every written row (:mod:`cryomine.discover.features`); seeded k-means
with ``k`` = trained classes + 1 by default; a 2-D t-SNE map; per cluster the mean recovered density (in the
reference frame when the dataset has true poses, see :mod:`cryomine.discover.averages`), its montage, and its
FSC against the true structure of the cluster's majority class; the same clustering with the label-free
rotation-invariant baseline (:mod:`cryomine.discover.baseline`) for comparison.

Held-out classes: the dataset's classes the run was not trained on (its ``--exclude-class`` classes, or any
class name missing from the run). For each, recall = fraction of its rows in its majority cluster, precision =
fraction of that cluster that is the class (:func:`cryomine.discover.cluster.class_score`).

Files in ``out_dir`` (each written atomically):

* ``assignments.csv``: ``row, cluster, baseline_cluster`` (with the baseline), ``predicted_class``,
  ``predicted_probability`` (the run's own classifier), and with ground truth ``true_class_id, true_class,
  held_out``.
* ``assignments.star``: RELION STAR, ``rlnCoordinateX/Y/Z`` (the dataset's ``coords_xyz`` if it has them, else
  the box centre), ``rlnTomoName`` (the tomogram the boxes came from), ``rlnClassNumber`` = cluster + 1, and
  ``cmRow``, ``cmPredictedClass``, ``cmTrueClass``; the optics table gives the pixel size.
* ``tsne.png``: t-SNE of the features by cluster and (with ground truth) by true class, held-out classes as stars.
* ``cluster_<c>.mrc`` (mean density, dataset voxel size) and ``cluster_<c>.png`` (its central slices, beside the
  truth of its majority class when known); ``cluster_<c>_fsc.csv`` with a truth.
* ``summary.json``: settings, purity / ARI / NMI, held-out recall / precision and FSC (sum, 0.5 and 0.143
  resolutions) of DSM-Net and of the baseline, and per cluster size, majority class and FSC.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryomine.data.info import dataset_positions
from cryomine.data.loader import SubtomoDataset, check_finite_rows
from cryomine.discover.averages import array_batches, cluster_means, compare_to_truth, fsc_summary, true_structures
from cryomine.discover.baseline import baseline_features, reduce_features
from cryomine.discover.cluster import clustering_scores, contingency, kmeans, tsne_2d
from cryomine.discover.config import DiscoverConfig
from cryomine.discover.features import check_run_fits, extract_outputs
from cryomine.discover.plots import plot_tsne, save_cluster_montage
from cryomine.errors import InputError
from cryomine.evaluate.fsc import write_fsc_csv
from cryomine.io.atomic import atomic_output, write_json
from cryomine.io.mrc import write_mrc
from cryomine.io.star import make_particles, write_particles
from cryomine.io.subtomo_h5 import DatasetHeader, read_header, read_rows
from cryomine.train.runfolder import LoadedRun, load_run

BASELINE_METHOD = ("k-means on the top principal components of standardised spherically averaged power spectra and "
                   "radial density profiles (no labels)")


@dataclass(frozen=True)
class DiscoverResult:
    """What :func:`discover` wrote: the folder, cluster count, rows clustered and the summary (as in summary.json)."""

    out_dir: Path
    k: int
    n: int
    summary: dict[str, Any]


@dataclass(frozen=True)
class _Truth:
    """Ground truth of the clustered rows: ``classes`` ``(n,)`` (-1 unknown) and, if known, the poses."""

    classes: np.ndarray | None
    poses: tuple[np.ndarray, np.ndarray] | None


def _ground_truth(dataset: Path, header: DatasetHeader, rows: np.ndarray) -> _Truth:
    classes = read_rows(dataset, ("class_id",), rows)["class_id"].astype(np.int64)
    if not (classes >= 0).any():
        return _Truth(None, None)
    poses = None
    if header.has_ground_truth:
        r = read_rows(dataset, ("eulers_zyz", "shifts_zyx"), rows)
        poses = (r["eulers_zyz"].astype(np.float64), r["shifts_zyx"].astype(np.float64))
    return _Truth(classes, poses)


def _raw_batches(dataset: Path, rows: np.ndarray, size: int = 64):
    """``(positions, normalised subtomograms)`` batches of ``rows``, read on demand."""
    data = SubtomoDataset(dataset, rows, cache_limit_bytes=0)
    try:
        for start in range(0, rows.size, size):
            pos = np.arange(start, min(start + size, rows.size))
            yield pos, data.batch(pos)["x"][:, 0].numpy()
    finally:
        data.close()


def _clusters_table(labels: np.ndarray, k: int, classes: np.ndarray | None, names: list[str]) -> list[dict[str, Any]]:
    """Per cluster: size and, with ground truth, majority class and its fraction."""
    sizes = np.bincount(labels, minlength=k)
    table = contingency(labels, classes, k, len(names)) if classes is not None else None
    out = []
    for c in range(k):
        entry: dict[str, Any] = {"cluster": c, "size": int(sizes[c])}
        if table is not None and table[c].sum() > 0:
            m = int(table[c].argmax())
            entry.update(majority_class=names[m], majority_class_id=m,
                         majority_fraction=float(table[c, m] / sizes[c]))
        out.append(entry)
    return out


_CLUSTER_FILE = re.compile(r"cluster_\d+(\.mrc|\.png|_fsc\.csv)")


def _remove_stale_cluster_files(out: Path) -> None:
    """Delete per-cluster files an earlier discover run left in ``out`` (a smaller k this time would otherwise
    leave its higher-numbered clusters behind); other files are not touched."""
    for path in out.iterdir():
        if path.is_file() and _CLUSTER_FILE.fullmatch(path.name):
            path.unlink()


def discover(
    run: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: DiscoverConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> DiscoverResult:
    """Cluster every written row of ``dataset`` by the features of the trained ``run`` (folder or
    ``pretrained:NAME``) and write the files described in the module docstring into ``out_dir``."""
    cfg = config or DiscoverConfig()
    log = log or (lambda _line: None)
    dataset, out = Path(dataset), Path(out_dir)
    header = read_header(dataset)
    if header.n_written < 2:
        raise InputError(f"dataset has {header.n_written} subtomograms; clustering needs at least 2", dataset)
    loaded = load_run(run)
    check_run_fits(loaded, dataset)
    cl = _cluster(loaded, dataset, header, cfg, log)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_cluster_files(out)
    _write_cluster_maps(out, cl)
    log("t-SNE")
    idx, coords = tsne_2d(cl.outs.features, seed=cfg.seed, perplexity=cfg.tsne_perplexity, max_points=cfg.tsne_max_points)
    plot_tsne(out / "tsne.png", coords, cl.labels[idx], None if cl.classes is None else cl.classes[idx], cl.names,
              list(cl.held_out), title=f"{loaded.run_dir.name}: DSM-Net features of {dataset.name} ({len(idx)} shown), k = {cl.k}")
    _write_assignments(out, cl, loaded, dataset, header)
    summary = _summary(loaded, dataset, cfg, cl)
    write_json(out / "summary.json", summary)
    return DiscoverResult(out, cl.k, int(cl.rows.size), summary)


@dataclass
class Clustering:
    """What :func:`discover` found: rows, ``k``, class names and true classes (or None), held-out classes, the
    network outputs, DSM-Net (``labels``) and baseline (``b_labels``) clusters with their tables, the cluster means
    (recovered or subtomogram densities, ``means``; subtomogram means per method, ``raw_means``), the true
    structures by class id, voxel size (Å), the density source and whether true poses were used."""

    rows: np.ndarray
    k: int
    names: list[str]
    classes: np.ndarray | None
    held_out: dict[int, str]
    outs: Any
    labels: np.ndarray
    b_labels: np.ndarray | None
    clusters: list[dict]
    b_clusters: list[dict] | None
    means: list[np.ndarray]
    raw_means: list[list[np.ndarray]]
    truths: dict[int, tuple[np.ndarray, str]]
    vs: float
    density_source: str
    has_poses: bool


def _cluster(loaded: LoadedRun, dataset: Path, header: DatasetHeader, cfg: DiscoverConfig, log: Callable[[str], None]) -> Clustering:
    rows = np.arange(header.n_written, dtype=np.int64)
    k = cfg.resolve_k(len(loaded.class_names), rows.size)
    names = list(header.class_names)
    truth = _ground_truth(dataset, header, rows)
    classes = truth.classes
    trained = set(loaded.class_names)
    held_out = {} if classes is None else {c: n for c, n in enumerate(names) if n not in trained and (classes == c).any()}
    check_finite_rows(dataset, "subtomograms", rows)  # streamed below: refused before any work, not half-way
    log(f"features of {rows.size} subtomograms ({loaded.model_config.name}, {loaded.model_config.fc_units} units)")
    outs = extract_outputs(loaded, dataset, rows, batch_size=cfg.batch_size)
    labels = kmeans(outs.features, k, seed=cfg.seed, n_init=cfg.n_init)
    label_sets, b_labels = [labels], None
    if cfg.baseline:
        log("baseline: rotation-invariant radial features")
        b_feat = reduce_features(baseline_features(dataset, rows), cfg.baseline_components, cfg.seed)
        b_labels = kmeans(b_feat, k, seed=cfg.seed, n_init=cfg.n_init)
        label_sets.append(b_labels)
    log("cluster averages")
    shape = (header.size,) * 3
    raw_means = cluster_means(_raw_batches(dataset, rows), label_sets, [k] * len(label_sets), shape, truth.poses)
    if outs.recovered is not None:
        means, density_source = cluster_means(array_batches(outs.recovered), [labels], [k], shape, truth.poses)[0], "recovered"
    else:
        means, density_source = raw_means[0], "subtomograms"
    clusters = _clusters_table(labels, k, classes, names)
    b_clusters = _clusters_table(b_labels, k, classes, names) if b_labels is not None else None
    truths: dict[int, tuple[np.ndarray, str]] = {}
    if classes is not None and truth.poses is not None:
        wanted = set(held_out) | {e["majority_class_id"] for e in clusters + (b_clusters or []) if "majority_class_id" in e}
        truths = true_structures(dataset, header, wanted, rows, classes, truth.poses)
    return Clustering(rows, k, names, classes, held_out, outs, labels, b_labels, clusters, b_clusters, means, raw_means,
                      truths, header.voxel_size_a, density_source, truth.poses is not None)


def _write_cluster_maps(out: Path, cl: Clustering) -> None:
    """Per cluster: mean map, montage (beside its majority class's truth) and FSC vs that truth."""
    for entry, mean, raw in zip(cl.clusters, cl.means, cl.raw_means[0]):
        c = entry["cluster"]
        mrc = out / f"cluster_{c}.mrc"
        write_mrc(mrc, mean, cl.vs)
        entry["map"] = mrc.name
        panels = {f"cluster {c} mean ({entry['size']})": mean}
        m = entry.get("majority_class_id")
        if m in cl.truths:
            panels[f"truth: {cl.names[m]}"] = cl.truths[m][0]
            result, entry["fsc"] = compare_to_truth(mean, cl.truths[m][0], cl.vs)
            if result is not None:
                write_fsc_csv(out / f"cluster_{c}_fsc.csv", result)
            entry["fsc_subtomogram_mean"] = fsc_summary(raw, cl.truths[m][0], cl.vs)
        what = entry.get("majority_class", "unknown class")
        save_cluster_montage(out / f"cluster_{c}.png", panels, f"cluster {c}: {entry['size']} subtomograms, majority "
                             f"{what}; {cl.density_source} mean, {'reference frame' if cl.has_poses else 'box frame'}")
        entry["montage"] = f"cluster_{c}.png"
    for entry, raw in zip(cl.b_clusters or [], cl.raw_means[1] if cl.b_clusters else []):
        m = entry.get("majority_class_id")
        if m in cl.truths:
            entry["fsc_subtomogram_mean"] = fsc_summary(raw, cl.truths[m][0], cl.vs)


def _write_assignments(out: Path, cl: Clustering, loaded: LoadedRun, dataset: Path, header: DatasetHeader) -> None:
    """``assignments.csv`` and ``assignments.star`` (positions in the tomogram, its name, optics)."""
    pred_names = np.asarray(loaded.class_names, dtype=object)[cl.outs.predicted]
    table = pd.DataFrame({"row": cl.rows, "cluster": cl.labels})
    if cl.b_labels is not None:
        table["baseline_cluster"] = cl.b_labels
    table["predicted_class"] = pred_names
    table["predicted_probability"] = cl.outs.probability
    if cl.classes is not None:
        table["true_class_id"] = cl.classes
        table["true_class"] = [cl.names[c] if c >= 0 else "" for c in cl.classes]
        table["held_out"] = np.isin(cl.classes, list(cl.held_out))
    with atomic_output(out / "assignments.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    extra: dict[str, Any] = {"cmRow": cl.rows, "cmPredictedClass": pred_names.astype(str)}
    if cl.b_labels is not None:
        extra["cmBaselineClassNumber"] = cl.b_labels + 1
    if cl.classes is not None:
        extra["cmTrueClass"] = np.asarray(table["true_class"], dtype=str)
    coords, tomo = dataset_positions(dataset, header, cl.rows)
    coords = coords if coords is not None else np.full((cl.rows.size, 3), float(header.size // 2))  # boxes of their own
    write_particles(out / "assignments.star", make_particles(coords, tomo_name=tomo or dataset.stem, class_number=cl.labels + 1,
                                                             extra=extra), pixel_size_a=cl.vs)  # fmt: skip


def _held_out(scores: dict[str, dict[str, Any]], maps: dict[str, np.ndarray], truths: dict, vs: float) -> dict:
    """Held-out scores by class name, each with the FSC (per ``maps`` key) of its cluster's mean vs its truth."""
    out = {}
    for name, score in scores.items():
        entry = dict(score)
        if score["class_id"] in truths:
            for key, cluster_maps in maps.items():
                entry[key] = fsc_summary(cluster_maps[score["cluster"]], truths[score["class_id"]][0], vs)
        out[name] = entry
    return out


def _summary(loaded: LoadedRun, dataset: Path, cfg: DiscoverConfig, cl: Clustering) -> dict[str, Any]:
    excluded = [loaded.config["classes"]["dataset_class_names"][i] for i in loaded.config["classes"].get("excluded", [])]
    summary: dict[str, Any] = {
        "run": str(loaded.run_dir), "dataset": str(dataset.resolve()), "n_subtomograms": int(cl.rows.size), "k": cl.k,
        "config": cfg.to_dict(), "model": loaded.model_config.name, "feature_units": loaded.model_config.fc_units,
        "trained_classes": list(loaded.class_names), "excluded_in_training": excluded,
        "held_out_classes": [cl.held_out[c] for c in sorted(cl.held_out)],
        "ground_truth": cl.classes is not None,
        "density_source": cl.density_source,
        "frame": ("reference frame: each density un-rotated by its true pose before averaging" if cl.has_poses else
                  "box frame: no true poses, densities averaged as they are (orientations are not aligned)"),
        "truth_source": {cl.names[c]: src for c, (_, src) in sorted(cl.truths.items())},
        "fsc_note": "unmasked FSC of each cluster mean against the true structure of its majority class; "
                    "fsc_sum = sum over shells 1..Nyquist",
    }  # fmt: skip
    dsm: dict[str, Any] = {"clusters": cl.clusters}
    if cl.classes is not None:
        scores = clustering_scores(cl.labels, cl.classes, cl.held_out)
        scores["held_out"] = _held_out(scores["held_out"], {"fsc": cl.means, "fsc_subtomogram_mean": cl.raw_means[0]}, cl.truths, cl.vs)
        dsm = {**scores, **dsm}
    summary["dsmnet"] = dsm
    if cl.b_labels is not None:
        base: dict[str, Any] = {"method": BASELINE_METHOD, "clusters": cl.b_clusters}
        if cl.classes is not None:
            scores = clustering_scores(cl.b_labels, cl.classes, cl.held_out)
            scores["held_out"] = _held_out(scores["held_out"], {"fsc_subtomogram_mean": cl.raw_means[1]}, cl.truths, cl.vs)
            base = {**base, **scores}
        summary["baseline"] = base
    return summary
