"""DeepFinder (Moebel et al. 2021, ``cryoet-deepfinder``) trained and applied for ``bench_picker.py``.

Runs with the Python of a throwaway venv holding ``cryoet-deepfinder`` (never a cryomine dependency; cryomine is
not imported here). Reads one JSON spec written by ``bench_picker.py``::

    {"out": folder, "ncl": 24, "threads": 1, "train": [{"tomogram": .mrc, "target": .mrc, "objects": [[x, y, z, label], ...]}],
     "valid": [...], "test": [{"name": str, "tomogram": .mrc}], "settings": {...}, "min_cluster_vox": {label: voxels}}

Training uses DeepFinder's documented example settings (``examples/training/script_training.py``: 56³ patches,
batch 25, Adam lr 1e-4, Tversky loss, class-bootstrapped patch sampling, 13-voxel random shifts, 180° rotation
about the tilt axis), except the number of epochs and steps, which the spec sets (the documented 100 x 100 is
out of reach of a 2-core CPU; the benchmark records what ran). Targets are the simulator's class maps
(``<stem>_classes.mrc``), the same labels cryomine's picker trains on. Segmentation: DeepFinder's ``Segment`` with
its default crop/overlap; picks: the mean shift of ``Cluster`` (bandwidth ``clust_radius`` voxels, bin seeding),
each cluster labelled by the majority of its voxels' labels (``Cluster.launch`` counts labels 1..N for N the number
of labels present, which mislabels clusters when some class is absent; the vote here counts every label), and
clusters smaller than ``min_cluster_vox`` of their class dropped (DeepFinder's per-class size threshold). Writes
``<out>/<name>_picks.json`` (``[[z, y, x, label, cluster_voxels], ...]`` and timing); training is skipped when
``<out>/net_weights_FINAL.h5`` exists.

Usage: ``/tmp/deepfinder-venv/bin/python benchmarks/deepfinder_runner.py SPEC.json``
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np


def _objects(entries: list[dict]) -> list[dict]:
    objl = []
    for idx, entry in enumerate(entries):
        for x, y, z, label in entry["objects"]:
            objl.append(
                {
                    "tomo_idx": idx,
                    "obj_id": len(objl),
                    "label": int(label),
                    "x": float(x),
                    "y": float(y),
                    "z": float(z),
                    "phi": None,
                    "psi": None,
                    "the": None,
                    "cluster_size": None,
                }
            )
    return objl


def train(spec: dict, out: Path) -> float:
    from deepfinder.training import Train
    from tensorflow.keras.optimizers import Adam

    s = spec["settings"]
    trainer = Train(Ncl=spec["ncl"], dim_in=s["dim_in"])
    trainer.path_out = str(out) + "/"
    trainer.batch_size, trainer.epochs, trainer.steps_per_epoch = s["batch"], s["epochs"], s["steps_per_epoch"]
    trainer.steps_per_valid = s["steps_per_valid"]
    trainer.optimizer = Adam(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-08)
    trainer.flag_direct_read, trainer.flag_batch_bootstrap, trainer.Lrnd = False, True, 13
    data = [e["tomogram"] for e in spec["train"] + spec["valid"]]
    target = [e["target"] for e in spec["train"] + spec["valid"]]
    objl_train = _objects(spec["train"])
    objl_valid = [dict(o, tomo_idx=o["tomo_idx"] + len(spec["train"])) for o in _objects(spec["valid"])]
    t0 = time.perf_counter()
    trainer.launch(data, target, objl_train, objl_valid)
    return time.perf_counter() - t0


def _clusters(labelmap: np.ndarray, radius: float, min_vox: dict[str, float]) -> list[list[float]]:
    from sklearn.cluster import MeanShift

    voxels = np.argwhere(labelmap > 0)
    if len(voxels) == 0:
        return []
    fit = MeanShift(bandwidth=radius, bin_seeding=True).fit(voxels)
    picks = []
    for c, centre in enumerate(fit.cluster_centers_):
        members = voxels[fit.labels_ == c]
        labels = labelmap[tuple(members.T)]
        label = int(np.bincount(labels).argmax())
        if len(members) >= float(min_vox.get(str(label), 1)):
            picks.append([float(centre[0]), float(centre[1]), float(centre[2]), label, int(len(members))])
    return picks


def segment_and_cluster(spec: dict, out: Path) -> None:
    from deepfinder.inference import Segment

    s = spec["settings"]
    seg = Segment(Ncl=spec["ncl"], path_weights=str(out / "net_weights_FINAL.h5"), patch_size=s["patch_size"])
    for entry in spec["test"]:
        dest = out / f"{entry['name']}_picks.json"
        if dest.is_file():
            continue
        with mrcfile.open(entry["tomogram"], permissive=True) as m:
            data = np.asarray(m.data, dtype=np.float32)
        if spec.get("invert"):
            data = -data
        t0 = time.perf_counter()
        scores = seg.launch(data)
        labelmap = np.argmax(scores, axis=-1).astype(np.int16)
        t_seg = time.perf_counter() - t0
        picks = _clusters(labelmap, s["clust_radius"], spec.get("min_cluster_vox", {}))
        record = {"picks_zyx_label_size": picks, "seconds_segment": t_seg, "seconds_total": time.perf_counter() - t0}
        tmp = dest.with_suffix(".part")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, dest)
        print(json.dumps({"tomogram": entry["name"], "picks": len(picks), "seconds": round(record["seconds_total"], 1)}), flush=True)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(spec.get("threads", 1)))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if not (out / "net_weights_FINAL.h5").is_file():
        seconds = train(spec, out)
        (out / "training.json").write_text(json.dumps({"seconds": seconds, "settings": spec["settings"]}))
    segment_and_cluster(spec, out)


if __name__ == "__main__":
    main()
