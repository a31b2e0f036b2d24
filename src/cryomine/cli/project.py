"""``cryomine run PROJECT``: every tomogram of a project (a folder of tomograms, a copick config, a RELION 5
tomograms.star) through pick -> extract -> classify/segment/recover -> atlas -> discover -> average, one tomogram per
Dask task; then a RELION 5 project of the particles, the copick write-back and the project report.

Thin layer over :class:`cryomine.project.ProjectConfig` / :class:`cryomine.project.BatchOptions`: options left out
keep the objects' defaults."""

from __future__ import annotations

from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.cli.options import acq_option, given
from cryomine.errors import InputError
from cryomine.io.atomic import check_writable_folder


def _objects(items: list[str] | None) -> dict[str, str]:
    mapping = {}
    for item in items or []:
        cls, sep, obj = item.partition("=")
        if not sep or not cls or not obj:
            raise InputError(f"expected CLASS=OBJECT, got {item!r}", "--copick-object")
        mapping[cls] = obj
    return mapping


@app.command("run")
def run_cmd(
    project: Path = typer.Argument(..., help="A folder of tomograms (MRC/.em/OME-Zarr), a copick project config (.json) or a RELION 5 tomograms.star."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (tomograms/<name>/, relion/, summary.json, report.html); run again to resume."),
    method: str | None = typer.Option(None, "--method", help="Picking: dog (default) or learned."),
    model: str | None = typer.Option(None, "--model", help="DSM-Net run folder or pretrained:NAME (default pretrained:dsmnet-a)."),
    picker: str | None = typer.Option(None, "--picker", help="Picker run folder or pretrained:NAME for --method learned (default pretrained:picker)."),
    radius: float | None = typer.Option(None, "--radius", help="DoG particle radius (Å; default the median radius of the model's classes)."),
    top_n: int | None = typer.Option(None, "--top-n", help="Keep at most N picks per tomogram."),
    box: int | None = typer.Option(None, "--box", help="Box edge cut around the picks (voxels; default the model's input)."),
    k: int | None = typer.Option(None, "--k", help="Discovery clusters per tomogram (default the model's classes + 1, at most one per 5 picks)."),
    average_classes: int | None = typer.Option(None, "--average-classes", help="Average this many most frequent predicted classes per tomogram (default 1; 0 = none)."),
    average_min_particles: int | None = typer.Option(None, "--average-min-particles", help="Average a class only with at least this many picks (default 10)."),
    average_iterations: int | None = typer.Option(None, "--average-iterations", help="Align-and-average rounds (default 4)."),
    tomo_type: str | None = typer.Option(None, "--tomo-type", help="copick projects: the tomogram type to use (default wbp)."),
    pattern: str = typer.Option("*", "--glob", help="Folder projects: only entries matching this glob (e.g. 'TS_*.mrc')."),
    tomogram: list[str] | None = typer.Option(None, "--tomogram", help="Only this tomogram (repeatable; default all)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of clustering and averaging (default 0)."),
    voxel_size: float | None = acq_option("voxel_size_a"),
    tilt_min: float | None = acq_option("tilt_min_deg"),
    tilt_max: float | None = acq_option("tilt_max_deg"),
    defocus: float | None = acq_option("defocus_um"),
    voltage: float | None = acq_option("voltage_kv"),
    cs: float | None = acq_option("cs_mm"),
    amplitude_contrast: float | None = acq_option("amplitude_contrast"),
    polarity: str | None = acq_option("polarity"),
    workers: int | None = typer.Option(None, "--workers", help="Local Dask worker processes, one tomogram each (default 1; 0 = no Dask, in this process)."),
    threads: int | None = typer.Option(None, "--threads", help="Threads per tomogram task (default: the CPUs shared among the workers)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786) instead of a local cluster."),
    copick_write: bool = typer.Option(True, "--copick-write/--no-copick-write", help="copick projects: write picks, class labels and averages back into the project (user cryomine)."),
    copick_object: list[str] | None = typer.Option(None, "--copick-object", help="CLASS=OBJECT: write predicted class CLASS as copick object OBJECT (repeatable; default: same name)."),
    copick_session: str = typer.Option("0", "--copick-session", help="copick session id of what is written back."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run the whole pipeline on every tomogram of a project (Dask-parallel, resumable) and report over all of them."""
    check_writable_folder(out)  # before any work
    from cryomine.project import BatchOptions, ProjectConfig, WriteBack, project_kind, run_project

    config = ProjectConfig(**given(
        pick_method=method, model=model, picker=picker, radius_a=radius, top_n=top_n, box_vox=box, k=k, average_classes=average_classes,
        average_min_particles=average_min_particles, average_iterations=average_iterations, tomo_type=tomo_type, seed=seed,
        voxel_size_a=voxel_size, tilt_min_deg=tilt_min, tilt_max_deg=tilt_max, defocus_um=defocus, voltage_kv=voltage, cs_mm=cs,
        amplitude_contrast=amplitude_contrast, polarity=polarity))  # fmt: skip
    options = BatchOptions(**given(workers=workers, threads=threads, scheduler=scheduler), progress=not quiet)
    objects = _objects(copick_object)
    write_back = WriteBack(project, objects, copick_session) if project_kind(project) == "copick" and copick_write else None
    result = run_project(project, out, config, options, pattern=pattern, only=tuple(tomogram or ()), write_back=write_back)
    for line in result.notes:
        typer.echo(line)
    typer.echo(f"{len(result.done)} tomogram(s) run, {len(result.skipped)} finished before, {len(result.failed)} failed: {out}/report.html")
    if result.failed:
        names = ", ".join(sorted(result.failed)[:5])
        raise InputError(f"{len(result.failed)} tomogram(s) failed ({names}); their errors are above and in {out}/summary.json; "
                         "fix them and run again (finished tomograms are kept)", out)  # fmt: skip
