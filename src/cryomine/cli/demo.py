"""``cryomine demo``: the README's main job, end to end on bundled data.

Steps (every output stays in ``--out``; the layout is the one ``cryomine report`` reads):

1. ``structures/``: the bundled complexes' maps and a montage;
2. ``subtomograms.h5``: simulated crowded subtomograms of every class the pretrained DSM-Net knows; evaluated with it
   (``evaluation.json``: accuracy, mIoU, confusion matrix) and predicted (``predict/``: masks, recovered densities);
3. ``tomogram.mrc`` + ``tomogram.star`` (truth): a crowded tomogram of those complexes plus one the model never saw,
   with a vesicle (a lipid bilayer; its mask in ``tomogram_membranes.mrc``) the particles keep out of;
4. ``picks.star``: DoG picking; ``picks_learned.star``: the shipped multi-class picker (``pretrained:picker``), its picks
   and their classes scored against the truth (``learned_picks_evaluation.json``);
5. ``picks.h5``: the picks extracted (each labelled with its matched true class, for scoring only) and classified,
   segmented and recovered by the pretrained DSM-Net (``predict_picks/``); picks and their predicted classes
   scored against the truth (``picks_evaluation.json``: localisation F1, localisation + class F1, per class);
6. ``discover/``: k-means on DSM-Net features of the picks, finding the unseen complex;
7. ``average/``: subtomogram averaging of the most frequent predicted class, FSC;
8. ``report.html``: everything in one self-contained page.

Each step is a cryomine command, run in-process exactly as a user would run it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import typer

from cryomine import __version__
from cryomine.cli.app import app, run_cli
from cryomine.errors import InputError, check_int
from cryomine.io import read_particles, write_mrc, write_particles
from cryomine.io.atomic import check_writable_folder, write_json
from cryomine.structures import list_structures, load_structure
from cryomine.viz import save_slice_montage


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs: ``known`` complexes (in the pretrained model's classes), one ``unseen`` complex."""

    model: str = "pretrained:dsmnet-a"
    picker: str = "pretrained:picker"
    known: tuple[str, ...] = ("3j9i", "4v4r", "1bxn", "6utj")
    unseen: str = "5gjv"
    voxel_size_a: float = 10.0
    per_class: int = 3
    tomogram_shape_zyx: tuple[int, int, int] = (80, 256, 256)
    tomogram_particles: int = 60
    vesicles: int = 1
    vesicle_radius_a: tuple[float, float] = (120.0, 200.0)
    snr: float = 0.06
    average_iterations: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.seed, "--seed", 0)
        if self.voxel_size_a <= 0:
            raise InputError(f"voxel size must be > 0 Å, got {self.voxel_size_a:g}", "--voxel-size")
        if self.unseen in self.known:
            raise InputError("the unseen complex must not be among the known ones", "unseen")


def prepare_output_dir(out: Path, force: bool) -> Path:
    """Create ``out``; refuse a non-empty folder unless ``force`` (then its contents are replaced)."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise InputError("output folder is not empty; use --force to overwrite it", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run(args: list[str]) -> None:
    """Run one cryomine command in-process; a failure stops the demo with the command's own error line."""
    typer.echo(f"\n$ cryomine {' '.join(args)}", err=True)
    code = run_cli(args)
    if code != 0:
        raise InputError(f"demo step failed (exit {code}): cryomine {' '.join(args)}")


def _structures_step(out: Path, ids: list[str], voxel_size_a: float) -> None:
    known = {info.id: info for info in list_structures()}
    volumes = {}
    for sid in ids:
        volume = load_structure(sid, voxel_size_a=voxel_size_a)
        write_mrc(out / "structures" / f"{sid}.mrc", volume.data, volume.voxel_size_a)
        volumes[f"{sid} ({known[sid].source})" if sid in known else sid] = volume.data
    save_slice_montage(volumes, out / "structures.png", title=f"Central slices at {voxel_size_a:g} Å/voxel")


def _label_picks(picks: Path, truth: Path, out: Path, voxel_size_a: float) -> None:
    """Copy ``picks`` with ``rlnClassName`` = the class of the matched true particle ('unmatched' otherwise)."""
    from cryomine.io import coordinates_xyz_voxels
    from cryomine.pick.evaluate import match_points

    p, t = read_particles(picks), read_particles(truth)
    names = t.particles["rlnClassName"].astype(str).to_numpy()
    radius = {info.id: info.diameter_a / 2 / voxel_size_a for info in list_structures()}
    max_d = np.array([0.5 * radius.get(n, 5.0) for n in names])
    pi, ti = match_points(coordinates_xyz_voxels(p)[:, ::-1], coordinates_xyz_voxels(t)[:, ::-1], max_d)
    labels = np.full(len(p.particles), "unmatched", dtype=object)
    labels[pi] = names[ti]
    table = p.particles.copy()
    table["rlnClassName"] = labels
    write_particles(out, type(p)(particles=table, optics=p.optics, other_blocks=p.other_blocks), pixel_size_a=voxel_size_a)


def _class_subset(predictions_star: Path, out: Path) -> str:
    """Write the predicted particles (with their tomogram positions) of the most frequent class to ``out``;
    returns that class name."""
    table = read_particles(predictions_star)
    names = table.particles["rlnClassName"].astype(str).to_numpy()
    values, counts = np.unique(names, return_counts=True)
    best = str(values[counts.argmax()])
    subset = replace(table, particles=table.particles[names == best].reset_index(drop=True))
    write_particles(out, subset)
    return best


def run_demo(out: Path, config: DemoConfig, force: bool = False) -> dict[str, object]:
    """Run every step into ``out``; returns the summary (also ``summary.json``)."""
    from cryomine.train.runfolder import load_run  # torch: loaded when the demo runs, not for every command's --help

    t0 = time.perf_counter()
    trained = load_run(config.model).config["dataset"]["class_names"]  # the model's classes, in its order; checked first
    out = prepare_output_dir(Path(out), force)
    write_json(out / "config.json", {"cryomine_version": __version__, **asdict(config)}, default=float)
    known, vs, s = list(config.known), f"{config.voxel_size_a:g}", str(config.seed)
    _structures_step(out, [*known, config.unseen], config.voxel_size_a)
    # 2. labelled subtomograms of known complexes: evaluate and predict with the pretrained model
    _run(["simulate", "subtomograms", str(out / "subtomograms.h5"), "--structures", ",".join(trained), "--per-class",
          str(config.per_class), "--snr", f"{config.snr:g}", "--voxel-size", vs, "--seed", s])  # fmt: skip
    from cryomine.evaluate.evaluate import evaluate_run
    from cryomine.pick.evaluate import evaluate_pick_files  # cryomine.pick pulls in the picker: loaded when the demo runs

    evaluation = evaluate_run(config.model, out / "subtomograms.h5", split="all")
    write_json(out / "evaluation.json", evaluation, default=float)
    _run(["predict", config.model, str(out / "subtomograms.h5"), "--out", str(out / "predict")])
    # 3-4. tomogram with an unseen complex; DoG picking scored against the truth
    shape = ",".join(map(str, config.tomogram_shape_zyx))
    _run(["simulate", "tomogram", str(out / "tomogram.mrc"), "--shape", shape, "--particles", str(config.tomogram_particles),
          "--structures", ",".join([*known, config.unseen]), "--snr", f"{config.snr:g}", "--voxel-size", vs, "--seed", s,
          *(["--vesicles", str(config.vesicles), "--vesicle-radius", "{:g},{:g}".format(*config.vesicle_radius_a)] if config.vesicles else [])])  # fmt: skip
    radius_a = float(np.median([i.diameter_a for i in list_structures() if i.id in known])) / 2
    _run(["pick", str(out / "tomogram.mrc"), "--method", "dog", "--radius", f"{radius_a:.0f}",
          "--top-n", str(int(config.tomogram_particles * 1.2)), "--out", str(out / "picks.star")])  # fmt: skip
    _run(["pick", str(out / "tomogram.mrc"), "--method", "learned", "--model", config.picker, "--out", str(out / "picks_learned.star")])
    learned_eval = evaluate_pick_files(out / "picks_learned.star", out / "tomogram.star")
    write_json(out / "learned_picks_evaluation.json", learned_eval, default=float)
    # 5. extract (labelled with the matched truth, for scoring), classify/segment/recover
    _label_picks(out / "picks.star", out / "tomogram.star", out / "picks_labelled.star", config.voxel_size_a)
    _run(["extract", str(out / "tomogram.mrc"), str(out / "picks_labelled.star"), "--size", "40", "--out", str(out / "picks.h5")])
    _run(["predict", config.model, str(out / "picks.h5"), "--out", str(out / "predict_picks")])
    picks_eval = evaluate_pick_files(out / "picks.star", out / "tomogram.star",
                                     predictions=out / "predict_picks" / "predictions.star")  # fmt: skip
    write_json(out / "picks_evaluation.json", picks_eval, default=float)
    # 6. discovery of the unseen complex among the picks
    _run(["discover", config.model, str(out / "picks.h5"), "--k", str(len(known) + 2), "--out", str(out / "discover"), "--seed", s])
    # 7. average the most frequent predicted class
    averaged = _class_subset(out / "predict_picks" / "predictions.star", out / "average_particles.star")
    _run(["average", str(out / "average_particles.star"), "--tomogram", str(out / "tomogram.mrc"), "--box", "40",
          "--iterations", str(config.average_iterations), "--out", str(out / "average"), "--seed", s])  # fmt: skip
    summary = {
        "cryomine_version": __version__,
        "config": asdict(config),
        "averaged_class": averaged,
        "seconds": round(time.perf_counter() - t0, 1),
        "figures": {
            "subtomogram object accuracy": evaluation.get("object_accuracy"),
            "subtomogram mIoU": evaluation.get("miou"),
            "DoG picking F1 (localisation)": (picks_eval.get("localisation") or {}).get("f1"),
            "DoG picking + DSM-Net class F1": (picks_eval.get("localisation_and_class") or {}).get("f1"),
            "learned picking F1 (localisation)": (learned_eval.get("localisation") or {}).get("f1"),
            "learned picking class F1": (learned_eval.get("localisation_and_class") or {}).get("f1"),
        },
    }
    write_json(out / "summary.json", summary, default=float)
    _run(["report", str(out)])
    summary["outputs"] = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    write_json(out / "summary.json", summary, default=float)
    return summary


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder for every step's files."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty output folder."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (simulation, picking, clustering, averaging)."),
    model: str | None = typer.Option(None, "--model", help="Run folder or pretrained:NAME used for classification."),
) -> None:
    """Run cryomine's main job on bundled data and write every output into OUT (open OUT/report.html)."""
    check_writable_folder(out)  # before any work
    given = {k: v for k, v in {"seed": seed, "model": model}.items() if v is not None}
    summary = run_demo(out, DemoConfig(**given), force=force)
    typer.echo(f"demo finished in {summary['seconds']} s: {len(summary['outputs'])} files in {out}/ -- open {out}/report.html")
