"""Benchmark, SHREC-style (issue 16): many-class picking on fresh cell-like tomograms, per class and by size.

Test tomograms: :func:`cryomine.simulate.cell.cell_tomogram_config` with seeds never used in training
(``--seeds``; the picker trains on 5000-5007), all 22 bundled DSM-Net classes, vesicles, randomised tilt range and
defocus, SNR fixed by ``--snr``. Methods (each row skipped when its picks are already in ``--out``):

- ``learned``: ``cryomine pick --method learned --model MODEL``;
- ``dog_dsmnet``: DoG at the classes' median radius, 40³ boxes, ``cryomine predict CLASSIFIER`` for the class;
- ``template``: ``cryomine pick --template C`` per class of ``--tm-classes`` (automatic threshold), the picks of
  all templates pooled; where picks of different templates lie within the smaller class's radius, the one with
  the higher score (normalised cross-correlation) is kept;
- ``deepfinder``: ``benchmarks/deepfinder_runner.py`` in the venv of ``--deepfinder-python``, trained on the
  picker's training tomograms (``--train-dir``, class maps as targets).

Scores: SHREC's hit criterion, a pick inside the particle (distance to its centre at most the class's radius,
``hit_fraction`` 1), one-to-one matching (:mod:`cryomine.pick.evaluate`), pooled over the test tomograms;
localisation F1 (class ignored) and classification F1 (class must match), overall, per class and per size bin
(diameter < 100 Å, 100-200 Å, >= 200 Å). Methods that cover only some classes (``--tm-classes``) are compared on
those classes in ``on_tm_classes``.

Usage::

    .venv/bin/python benchmarks/bench_picker.py --model runs/picker/run [--seeds 9101,9102] [--snr 0.06]
        [--methods learned,dog_dsmnet,template] [--tm-classes 4v4r,1qvr,3cf3,1bxn] [--tm-step 30] [--threads 2]
        [--deepfinder-python /tmp/deepfinder-venv/bin/python --train-dir runs/picker/tomograms]
        [--out /tmp/cryomine-bench/picker] [--results picker]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from _common import CRYOMINE, machine, save, timed_run
from cryomine.pick.config import MatchingConfig
from cryomine.pick.evaluate import PointSet, class_radii_vox, evaluate_point_sets, load_point_set
from cryomine.pick.peaks import read_picks
from cryomine.simulate.cell import cell_tomogram_config
from cryomine.simulate.config import DSMNET_CLASSES
from cryomine.simulate.tomogram import simulate_tomogram
from cryomine.structures import bundled_radius_a
from cryomine.train.picker import load_picker

SIZE_BINS = (("< 100 Å", 0.0, 100.0), ("100-200 Å", 100.0, 200.0), (">= 200 Å", 200.0, 1e9))


def simulate_tests(out: Path, seeds: list[int], shape: tuple[int, int, int], particles: int, snr: float) -> list[Path]:
    paths = []
    for seed in seeds:
        tomo = out / f"test_{seed}.mrc"
        if not (tomo.is_file() and tomo.with_suffix(".star").is_file() and tomo.with_suffix(".json").is_file()):
            simulate_tomogram(tomo, cell_tomogram_config(seed, shape, particles, snr=snr), progress=False)
        paths.append(tomo)
    return paths


def _with_tomo(points: PointSet, name: str) -> PointSet:
    return PointSet(points.coords_zyx, points.class_names, np.full(len(points), name, dtype=object))


def run_learned(tomo: Path, args: argparse.Namespace) -> tuple[PointSet, float]:
    star = args.out / f"{tomo.stem}_learned.star"
    if not star.with_suffix(".json").is_file():
        timed_run([CRYOMINE, "pick", str(tomo), "--method", "learned", "--model", str(args.model), "--out", str(star)])
    return load_point_set(star), float(json.loads(star.with_suffix(".json").read_text())["seconds"])


def run_dog_dsmnet(tomo: Path, args: argparse.Namespace) -> tuple[PointSet, float]:
    star, boxes, pred = (args.out / f"{tomo.stem}_dog.star", args.out / f"{tomo.stem}_dog.h5", args.out / f"{tomo.stem}_dog_pred")
    timing = args.out / f"{tomo.stem}_dog_timing.json"
    if not timing.is_file():  # an interrupted row starts again
        shutil.rmtree(pred, ignore_errors=True)
        boxes.unlink(missing_ok=True)
        radius = float(np.median([bundled_radius_a(c) for c in DSMNET_CLASSES]))
        steps = [timed_run([CRYOMINE, "pick", str(tomo), "--method", "dog", "--radius", f"{radius:g}", "--out", str(star)]),
                 timed_run([CRYOMINE, "extract", str(tomo), str(star), "--size", "40", "--out", str(boxes)]),
                 timed_run([CRYOMINE, "predict", args.classifier, str(boxes), "--out", str(pred)])]  # fmt: skip
        timing.write_text(json.dumps({"seconds": sum(float(s["wall_s"]) for s in steps), "dog_radius_a": radius}))
    return load_point_set(star, pred / "predictions.star"), float(json.loads(timing.read_text())["seconds"])


def _suppress_across_templates(coords: np.ndarray, names: np.ndarray, scores: np.ndarray, voxel: float) -> np.ndarray:
    """Indices kept: best score first, a pick is dropped when a kept pick lies within the smaller class radius."""
    radius = np.array([bundled_radius_a(str(n)) / voxel for n in names])
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(np.linalg.norm(coords[i] - coords[j]) > min(radius[i], radius[j]) for j in kept):
            kept.append(int(i))
    return np.array(sorted(kept), dtype=int)


def run_template(tomo: Path, args: argparse.Namespace, voxel: float) -> tuple[PointSet, float]:
    coords, names, scores, seconds = [], [], [], 0.0
    for c in args.tm_classes:
        star = args.out / f"{tomo.stem}_tm_{c}.star"
        if not star.with_suffix(".json").is_file():
            timed_run([CRYOMINE, "pick", str(tomo), "--template", c, "--angular-step", f"{args.tm_step:g}", "--threads", str(args.threads),
                       "--out", str(star)])  # fmt: skip
        seconds += float(json.loads(star.with_suffix(".json").read_text())["seconds"])
        df = read_picks(star).particles
        if len(df):
            coords.append(load_point_set(star).coords_zyx)
            names += [c] * len(df)
            scores.append(df["rlnAutopickFigureOfMerit"].to_numpy(float))
    if not coords:
        return PointSet(np.zeros((0, 3)), np.zeros(0, dtype=object)), seconds
    xyz, cls, sc = np.concatenate(coords), np.asarray(names, dtype=object), np.concatenate(scores)
    keep = _suppress_across_templates(xyz, cls, sc, voxel)
    return PointSet(xyz[keep], cls[keep]), seconds


def _labels(tomo: Path) -> dict[int, str]:
    return {int(k): v for k, v in json.loads(tomo.with_suffix(".json").read_text())["class_map_labels"].items()}


def _objects(tomo: Path) -> list[list[float]]:
    truth = load_point_set(tomo.with_suffix(".star"))
    index = {v: k for k, v in _labels(tomo).items()}
    return [[float(x), float(y), float(z), index[str(n)]] for (z, y, x), n in zip(truth.coords_zyx, truth.class_names)]


def run_deepfinder(tests: list[Path], args: argparse.Namespace) -> dict[str, tuple[PointSet, float]]:
    """Train DeepFinder on the picker's training tomograms (the last one validates) and pick ``tests``."""
    # a simulated tomogram has its metadata JSON beside it; its class map, membranes etc. do not
    train = [t for t in sorted(args.train_dir.glob("train_*.mrc")) if t.with_suffix(".json").is_file()]
    if len(train) < 2:
        raise SystemExit(f"--train-dir {args.train_dir}: need at least 2 training tomograms (train_*.mrc)")
    labels = _labels(train[0])
    expected = load_picker(args.model).expected_voxels if args.model else {}  # DeepFinder's size threshold: as ours
    entries = [{"tomogram": str(t.resolve()), "target": str(t.with_name(f"{t.stem}_classes.mrc").resolve()), "objects": _objects(t)} for t in train]
    folder = args.out / "deepfinder"
    spec = {"out": str(folder.resolve()), "ncl": max(labels) + 1, "threads": args.threads, "train": entries[:-1], "valid": entries[-1:],
            "test": [{"name": t.stem, "tomogram": str(t.resolve())} for t in tests],
            "settings": {"dim_in": 56, "batch": 25, "epochs": args.deepfinder_epochs, "steps_per_epoch": args.deepfinder_steps,
                         "steps_per_valid": 2, "patch_size": 128, "clust_radius": 5},
            "min_cluster_vox": {str(k): 0.25 * float(expected[v]) for k, v in labels.items() if v in expected}}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(json.dumps(spec))
    subprocess.run([str(args.deepfinder_python), str(Path(__file__).with_name("deepfinder_runner.py")), str(folder / "spec.json")], check=True)
    out = {}
    for t in tests:
        rec = json.loads((folder / f"{t.stem}_picks.json").read_text())
        rows = np.asarray(rec["picks_zyx_label_size"], float).reshape(-1, 5)
        names = np.array([labels[int(v)] for v in rows[:, 3]], dtype=object)
        keep = np.array([n in DSMNET_CLASSES for n in names], bool)  # membrane clusters are not particles
        out[t.stem] = (PointSet(rows[keep, :3], names[keep]), float(rec["seconds_total"]))
    return out


def _f1(entry: dict | None) -> float | None:
    return None if entry is None else round(float(entry["f1"]), 4)


def score(picks: PointSet, truth: PointSet, radii: dict[str, float], classes: list[str]) -> dict:
    """Overall, per-class and per-size-bin F1 of ``picks`` restricted to true particles and picks of ``classes``."""
    t_keep = np.isin(truth.class_names.astype(str), classes)
    p_keep = np.isin(picks.class_names.astype(str), classes) if len(picks) else np.zeros(0, bool)
    sub_t = PointSet(truth.coords_zyx[t_keep], truth.class_names[t_keep], truth.tomo_names[t_keep])
    sub_p = PointSet(picks.coords_zyx[p_keep], picks.class_names[p_keep], picks.tomo_names[p_keep])
    rep = evaluate_point_sets(sub_p, sub_t, radii, hit_fraction=1.0)
    per_class = {c: {"diameter_a": round(2 * bundled_radius_a(c), 1), "n_true": e["n_true"], "n_picked": e["n_picked"],
                     "localisation_recall": round(e["localisation"]["recall"], 4), "class_f1": _f1(e["localisation_and_class"])}
                 for c, e in rep["per_class"].items() if c in classes}  # fmt: skip
    bins = {}
    for label, lo, hi in SIZE_BINS:
        members = [c for c in classes if lo <= 2 * bundled_radius_a(c) < hi]
        f1s = [per_class[c]["class_f1"] for c in members if c in per_class]
        bins[label] = {"classes": members, "mean_class_f1": round(float(np.mean(f1s)), 4) if f1s else None}
    return {"localisation": rep["localisation"], "classification": rep["localisation_and_class"], "per_size": bins, "per_class": per_class}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="learned picker run folder")
    parser.add_argument("--classifier", default="pretrained:dsmnet-a")
    parser.add_argument("--seeds", default="9101,9102")
    parser.add_argument("--shape", default="128,256,256")
    parser.add_argument("--particles", type=int, default=600)
    parser.add_argument("--snr", type=float, default=0.06)
    parser.add_argument("--methods", default="learned,dog_dsmnet")
    parser.add_argument("--tm-classes", default="4v4r,1qvr,3cf3,1bxn")
    parser.add_argument("--tm-step", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deepfinder-python", type=Path, default=None)
    parser.add_argument("--deepfinder-epochs", type=int, default=1)
    parser.add_argument("--deepfinder-steps", type=int, default=10)
    parser.add_argument("--train-dir", type=Path, default=Path("runs/picker/tomograms"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryomine-bench/picker"))
    parser.add_argument("--results", default="picker")
    args = parser.parse_args()
    args.tm_classes = args.tm_classes.split(",")
    methods = args.methods.split(",")
    if "learned" in methods and args.model is None:
        raise SystemExit("--model: the learned method needs a picker run folder")
    args.out.mkdir(parents=True, exist_ok=True)
    tests = simulate_tests(args.out, [int(s) for s in args.seeds.split(",")], tuple(int(v) for v in args.shape.split(",")), args.particles, args.snr)
    voxel = float(json.loads(tests[0].with_suffix(".json").read_text())["config"]["voxel_size_a"])
    truth = [_with_tomo(load_point_set(t.with_suffix(".star")), t.stem) for t in tests]
    pooled_truth = PointSet(*(np.concatenate([getattr(p, f) for p in truth]) for f in ("coords_zyx", "class_names", "tomo_names")))
    radii = class_radii_vox(list(DSMNET_CLASSES), MatchingConfig(), voxel)
    runs: dict[str, dict[str, tuple[PointSet, float]]] = {}
    for m in methods:
        if m == "deepfinder":
            runs[m] = run_deepfinder(tests, args)
            continue
        fn = {"learned": run_learned, "dog_dsmnet": run_dog_dsmnet, "template": lambda t, a: run_template(t, a, voxel)}[m]
        runs[m] = {t.stem: fn(t, args) for t in tests}
    results = {}
    for m, per_tomo in runs.items():
        picks = [_with_tomo(per_tomo[t.stem][0], t.stem) for t in tests]
        pooled = PointSet(*(np.concatenate([getattr(p, f) for p in picks]) for f in ("coords_zyx", "class_names", "tomo_names")))
        results[m] = {"seconds_per_tomogram": [round(per_tomo[t.stem][1], 1) for t in tests],
                      "all_classes": score(pooled, pooled_truth, radii, list(DSMNET_CLASSES)) if m != "template" else None,
                      "on_tm_classes": score(pooled, pooled_truth, radii, args.tm_classes)}  # fmt: skip
    save(args.results, {"machine": machine(), "setup": {k: str(v) for k, v in vars(args).items()}, "hit": "inside the particle (radius)",
                        "tests": [str(t) for t in tests], "results": results})  # fmt: skip


if __name__ == "__main__":
    main()
