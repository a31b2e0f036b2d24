"""``cryomine average`` (subtomogram averaging and classification) and ``cryomine fsc`` (FSC of two maps).

Thin layer: every option defaults to ``None`` and only options given on the command line override the
:class:`cryomine.average.AverageConfig` / :class:`cryomine.average.AlignConfig` defaults.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.cli.options import acq_option, acquisition_files_option, overrides, paths, tomo_name_option
from cryomine.io.atomic import check_writable, check_writable_folder


@app.command("average")
def average_cmd(
    source: Path = typer.Argument(..., help="A cryomine dataset (.h5) or a RELION particles STAR file (with --tomogram)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: maps, half maps, fsc.csv/png, particles.star, summary.json."),
    iterations: int | None = typer.Option(None, "--iterations", "-n", help="Align-and-average rounds (default 8)."),
    reference: list[Path] | None = typer.Option(None, "--reference", help="Starting reference MRC (one per class; repeat). Default: reference-free."),
    classes: int | None = typer.Option(None, "--classes", "-k", help="Number of classes K (default 1)."),
    tomogram: Path | None = typer.Option(None, "--tomogram", help="Tomogram (MRC) the STAR coordinates refer to."),
    box: int | None = typer.Option(None, "--box", help="Box edge (voxels) cut out of the tomogram (STAR input)."),
    mask: Path | None = typer.Option(None, "--mask", help="Mask MRC (reference frame) for alignment and FSC; default a soft sphere."),
    mask_radius: float | None = typer.Option(None, "--mask-radius", help="Radius (Å) of the default soft spherical mask (default 0.3 x box)."),
    angular_step: float | None = typer.Option(None, "--angular-step", help="Global rotational search step (degrees, default 15)."),
    local_step: float | None = typer.Option(None, "--local-step", help="Finest local refinement step (degrees, default 1)."),
    max_shift: float | None = typer.Option(None, "--max-shift", help="Largest shift searched (voxels, default 4)."),
    tilt_min: float | None = acq_option("tilt_min_deg"),
    tilt_max: float | None = acq_option("tilt_max_deg"),
    voxel_size: float | None = acq_option("voxel_size_a"),
    defocus: float | None = acq_option("defocus_um"),
    voltage: float | None = acq_option("voltage_kv"),
    cs: float | None = acq_option("cs_mm"),
    amplitude_contrast: float | None = acq_option("amplitude_contrast"),
    polarity: str | None = acq_option("polarity"),
    acquisition: list[Path] | None = acquisition_files_option(),
    tomo_name: str | None = tomo_name_option(),
    lowpass: float | None = typer.Option(None, "--lowpass", help="Low-pass (Å) of the starting reference (default 6 voxels)."),
    initial_iterations: int | None = typer.Option(None, "--initial-iterations", help="Reference-free: rounds with one common reference before gold-standard (default 3)."),
    phase_flip: bool | None = typer.Option(None, "--phase-flip/--no-phase-flip", help="Correct CTF phases when the input knows its optics (default on)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed: half sets, starting orientations, class seeds (default 0)."),
    max_particles: int | None = typer.Option(None, "--max-particles", help="Use only the first N particles."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Align and average subtomograms (optionally into K classes) with missing-wedge compensation."""
    check_writable_folder(out)  # before any work
    from cryomine.average import build_average_config, load_particles, result_summary, run_average, write_results
    from cryomine.average.checkpoint import load_checkpoint
    from cryomine.errors import InputError
    from cryomine.io.mrc import read_mrc

    config = build_average_config(
        iterations=iterations, classes=classes, mask_radius_a=mask_radius, angular_step_deg=angular_step,
        local_step_deg=local_step, max_shift_vox=max_shift, tilt_min=tilt_min, tilt_max=tilt_max,
        initial_lowpass_a=lowpass, initial_iterations=initial_iterations, phase_flip=phase_flip, seed=seed,
    )  # fmt: skip
    if max_particles is not None and max_particles < 1:
        raise InputError(f"--max-particles must be >= 1, got {max_particles}", "--max-particles")
    flags = overrides(voxel_size_a=voxel_size, tilt_min_deg=tilt_min, tilt_max_deg=tilt_max, defocus_um=defocus,
                      voltage_kv=voltage, cs_mm=cs, amplitude_contrast=amplitude_contrast, polarity=polarity)
    if not resume and load_checkpoint(out) is not None:  # before the (slow) reading of the particles
        raise InputError("output folder holds an unfinished or finished run; use --resume or another --out", out)
    data = load_particles(source, tomogram, box, max_particles, flags, paths(acquisition), tomo_name)
    refs = None
    if reference:
        refs = []
        for path in reference:
            vol = read_mrc(path)
            if not math.isclose(vol.voxel_size_a, data.voxel_size_a, rel_tol=0.02):
                raise InputError(f"voxel size {vol.voxel_size_a:g} Å differs from the particles' {data.voxel_size_a:g} Å", path)
            refs.append(vol.data)
    mask_data = read_mrc(mask).data if mask is not None else None
    t0 = time.perf_counter()
    result = run_average(data, config, references=refs, mask=mask_data, out_dir=out, resume=resume, progress=not quiet)
    summary = result_summary(result, config, data, time.perf_counter() - t0)
    files = write_results(out, result, data, summary)
    for c, curve in enumerate(result.fsc):
        label = "average" if len(result.fsc) == 1 else f"class {c + 1}"
        n_c = int((result.classes == c).sum())
        typer.echo(f"{label}: {n_c} particles, resolution at FSC 0.143: {curve.describe(0.143, 1)}; at FSC 0.5: {curve.describe(0.5, 1)}")
    typer.echo(f"wrote {out}: {', '.join(sorted(p.name for p in files.values()))}")


@app.command("fsc")
def fsc_cmd(
    map_a: Path = typer.Argument(..., help="First map (MRC)."),
    map_b: Path = typer.Argument(..., help="Second map (MRC), same grid and voxel size."),
    mask: Path | None = typer.Option(None, "--mask", help="Mask MRC applied to both maps."),
    out: list[Path] | None = typer.Option(None, "--out", "-o", help="Write the curve: .csv and/or .png (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (resolutions, FSC sum and the curve)."),
    voxel_size: float | None = typer.Option(None, "--voxel-size", help="Voxel size (Å) of both maps; overrides their headers (needed when unset)."),
) -> None:
    """Fourier shell correlation of two maps: resolution at FSC 0.5 and 0.143, and the FSC sum."""
    check_writable(*(out or []))  # before any work
    from cryomine.errors import InputError
    from cryomine.evaluate.fsc import fsc_files, plot_fsc, write_fsc_csv

    for path in out or []:
        if path.suffix.lower() not in (".csv", ".png"):
            raise InputError("--out must end in .csv or .png", path)
    result = fsc_files(map_a, map_b, mask, voxel_size)
    for path in out or []:
        if path.suffix.lower() == ".csv":
            write_fsc_csv(path, result)
        else:
            plot_fsc(path, {f"{map_a.name} vs {map_b.name}": result})
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"resolution at FSC 0.5:   {result.describe(0.5)}")
    typer.echo(f"resolution at FSC 0.143: {result.describe(0.143)}")
    typer.echo(f"FSC sum: {result.fsc_sum:.3f} ({len(result.fsc) - 1} shells)")
