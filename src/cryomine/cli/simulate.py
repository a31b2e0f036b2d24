"""``cryomine simulate subtomograms|tomogram`` and ``cryomine dataset info``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.devices import DEVICE_HELP
from cryomine.io.atomic import check_writable

simulate_app = typer.Typer(help="Simulate crowded subtomograms and tomograms with full ground truth.", no_args_is_help=True)
dataset_app = typer.Typer(help="Inspect subtomogram datasets.", no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")
app.add_typer(dataset_app, name="dataset")

_STRUCTURES_HELP = "'all', comma-separated bundled ids, and/or PDB/mmCIF/MRC files (repeat the option or use commas)."


def _structures(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    from cryomine.structures import resolve_structures

    return resolve_structures(values)


@simulate_app.command("subtomograms")
def subtomograms_cmd(
    out: Path = typer.Argument(..., help="Output dataset file (HDF5), e.g. data.h5."),
    preset: str | None = typer.Option(None, "--preset", help="dsmnet-a (SNR 0.06) or dsmnet-b (SNR 0.01): 22 classes, 3205 subtomograms, 40³ at 10 Å; dsmnet-a-tomo: dsmnet-a cut from whole tomograms (--from-tomograms)."),
    snr: float | None = typer.Option(None, "--snr", help="Signal-to-noise ratio (> 0; 'inf' for noise-free)."),
    per_class: int | None = typer.Option(None, "--per-class", help="Subtomograms per class."),
    total: int | None = typer.Option(None, "--total", help="Total subtomograms (classes round robin); instead of --per-class."),
    size: int | None = typer.Option(None, "--size", help="Box edge (voxels)."),
    voxel_size: float | None = typer.Option(None, "--voxel-size", help="Voxel size (Å)."),
    structures: list[str] | None = typer.Option(None, "--structures", help=_STRUCTURES_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    tilt_min: float | None = typer.Option(None, "--tilt-min", help="Lowest tilt (degrees)."),
    tilt_max: float | None = typer.Option(None, "--tilt-max", help="Highest tilt (degrees)."),
    tilt_step: float | None = typer.Option(None, "--tilt-step", help="Tilt increment (degrees)."),
    defocus: float | None = typer.Option(None, "--defocus", help="Defocus (µm, positive = underfocus)."),
    voltage: float | None = typer.Option(None, "--voltage", help="Acceleration voltage (kV)."),
    crowding: float | None = typer.Option(None, "--crowding", help="Volume fraction of the box covered by molecules."),
    method: str | None = typer.Option(None, "--method", help="wbp (projection + weighted back-projection) or fourier (fast approximation)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Subtomograms imaged together."),
    from_tomograms: bool | None = typer.Option(None, "--from-tomograms", help="Extract the boxes at the true positions of molecules packed into whole tomograms (as the DSM-Net paper did)."),
    tomogram_shape: str | None = typer.Option(None, "--tomogram-shape", help="Z,Y,X of each tomogram for --from-tomograms (default 300,600,600)."),
    tomogram_particles: int | None = typer.Option(None, "--tomogram-particles", help="Molecules per tomogram for --from-tomograms (default 10000, the paper's)."),
    snr_definition: str | None = typer.Option(None, "--snr-definition", help="box (the SNR of the final box, default) or aitom (the Xu lab's: the noise AITom's convolution recipe adds; images by that recipe)."),
    vary_defocus: str | None = typer.Option(None, "--vary-defocus", help="LOW,HIGH: draw each batch's defocus (µm) uniformly in this range."),
    vary_tilt_min: str | None = typer.Option(None, "--vary-tilt-min", help="LOW,HIGH: draw each batch's lowest tilt (degrees) in this range."),
    vary_tilt_max: str | None = typer.Option(None, "--vary-tilt-max", help="LOW,HIGH: draw each batch's highest tilt (degrees) in this range."),
    vary_crowding: str | None = typer.Option(None, "--vary-crowding", help="LOW,HIGH: draw each box's crowding (volume fraction, 0 = the target alone) uniformly in this range; instead of --crowding."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (same parameters)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset."),
    device: str = typer.Option("auto", "--device", help=f"Where the tilt series are imaged: {DEVICE_HELP}"),
) -> None:
    """Simulate a dataset of crowded subtomograms with ground truth (class, mask, clean density, pose)."""
    check_writable(out)  # before any work
    from cryomine.simulate.config import build_dataset_config
    from cryomine.simulate.subtomograms import simulate_subtomograms
    from cryomine.simulate.variation import parse_range

    config = build_dataset_config(
        preset, snr=snr, per_class=per_class, total=total, size=size, voxel_size_a=voxel_size,
        structures=_structures(structures), seed=seed, tilt_min=tilt_min, tilt_max=tilt_max, tilt_step=tilt_step,
        defocus_um=defocus, voltage_kv=voltage, crowding=crowding, method=method, batch_size=batch_size, snr_definition=snr_definition,
        from_tomograms=from_tomograms, tomogram_shape=_shape(tomogram_shape, "--tomogram-shape") if tomogram_shape is not None else None, tomogram_particles=tomogram_particles,
        vary_defocus=parse_range(vary_defocus, "--vary-defocus"), vary_tilt_min=parse_range(vary_tilt_min, "--vary-tilt-min"),
        vary_tilt_max=parse_range(vary_tilt_max, "--vary-tilt-max"), vary_crowding=parse_range(vary_crowding, "--vary-crowding"),
    )  # fmt: skip
    path = simulate_subtomograms(out, config, resume=resume, force=force, device=device)
    typer.echo(f"wrote {path}: {config.n_total} subtomograms of {config.size}³ voxels, {len(config.structures)} classes")


@dataset_app.command("info")
def info_cmd(
    dataset: Path = typer.Argument(..., help="A cryomine dataset file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Counts per class, shape, voxel size, SNR (requested and measured) and the generating parameters."""
    from cryomine.data.info import dataset_info

    info = dataset_info(dataset)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{dataset}: {info['n_written']}/{info['n_planned']} subtomograms of {info['shape']} at {info['voxel_size_a']:g} Å")
    typer.echo(f"SNR requested {info['snr_requested']}, measured {info['snr_measured']}")
    by_def = info["snr_by_definition"]
    if by_def is not None:
        typer.echo(f"SNR by definition ({by_def['n']} rows): box {by_def['box']['mean']:.4g}, in-band (below half Nyquist) "
                   f"{by_def['in_band']['mean']:.4g}")
    acq = info["acquisition"]
    tilt = "unknown" if acq["tilt_range_deg"] is None else "{:g}..{:g} degrees".format(*acq["tilt_range_deg"])
    defocus = "unknown" if acq["defocus_um"] is None else ", ".join(f"{d:g}" for d in sorted(set(acq["defocus_um"]))[:3]) + " µm"
    typer.echo(f"acquisition: tilt range {tilt}, defocus {defocus}, protein {acq['polarity'] or 'unknown'} ({', '.join(acq['sources'])})")
    for name, count in info["counts_per_class"].items():
        typer.echo(f"  {name:<12} {count}")


def _shape(text: str, option: str = "--shape") -> tuple[int, int, int]:
    from cryomine.errors import InputError

    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"shape must be Z,Y,X integers, got {text!r}", option) from None
    if len(values) != 3:
        raise InputError(f"shape must be Z,Y,X (3 integers), got {text!r}", option)
    return values  # type: ignore[return-value]


@simulate_app.command("tomogram")
def tomogram_cmd(
    out: Path = typer.Argument(..., help="Output tomogram (MRC); the true particles go to OUT's stem + .star."),
    shape: str | None = typer.Option(None, "--shape", help="Z,Y,X voxels, e.g. 200,512,512."),
    particles: int | None = typer.Option(None, "--particles", help="Number of particles to place."),
    structures: list[str] | None = typer.Option(None, "--structures", help=_STRUCTURES_HELP),
    snr: float | None = typer.Option(None, "--snr", help="Signal-to-noise ratio (> 0; 'inf' for noise-free)."),
    voxel_size: float | None = typer.Option(None, "--voxel-size", help="Voxel size (Å)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    tilt_min: float | None = typer.Option(None, "--tilt-min", help="Lowest tilt (degrees)."),
    tilt_max: float | None = typer.Option(None, "--tilt-max", help="Highest tilt (degrees)."),
    tilt_step: float | None = typer.Option(None, "--tilt-step", help="Tilt increment (degrees)."),
    defocus: float | None = typer.Option(None, "--defocus", help="Defocus (µm, positive = underfocus)."),
    vesicles: int | None = typer.Option(None, "--vesicles", help="Number of vesicles (lipid bilayers; mask in OUT_membranes.mrc)."),
    sheets: int | None = typer.Option(None, "--sheets", help="Number of membrane sheets through the volume."),
    vesicle_radius: str | None = typer.Option(None, "--vesicle-radius", help="LOW,HIGH vesicle radius range (Å; default 200,450)."),
    membrane_fraction: float | None = typer.Option(None, "--membrane-fraction", help="Largest volume fraction inside membrane masks (default 0.3)."),
    membrane_structures: list[str] | None = typer.Option(None, "--membrane-structures", help="Membrane proteins (ids or files; z axis = membrane normal), placed in the membranes."),
    membrane_particles: int | None = typer.Option(None, "--membrane-particles", help="Number of membrane proteins to place."),
    device: str = typer.Option("auto", "--device", help=f"Where the tilt series is imaged: {DEVICE_HELP}"),
) -> None:
    """Simulate a crowded tomogram (MRC) and a RELION STAR of the true positions, orientations and classes, with
    optional membranes (vesicles, sheets) and membrane proteins in them."""
    from cryomine.simulate.config import build_imaging_config
    from cryomine.simulate.membranes import MembraneConfig
    from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram
    from cryomine.simulate.variation import parse_range

    given = {
        "shape_zyx": _shape(shape) if shape is not None else None,
        "particles": particles,
        "structures": tuple(_structures(structures)) if structures else None,
        "voxel_size_a": voxel_size,
        "seed": seed,
        "imaging": build_imaging_config(snr=snr, tilt_min=tilt_min, tilt_max=tilt_max, tilt_step=tilt_step, defocus_um=defocus),
        "membrane_structures": tuple(_structures(membrane_structures)) if membrane_structures else None,
        "membrane_particles": membrane_particles,
    }
    mem = {"vesicles": vesicles, "sheets": sheets, "vesicle_radius_a": parse_range(vesicle_radius, "--vesicle-radius"),
           "membrane_fraction": membrane_fraction}
    given["membranes"] = MembraneConfig(**{k: v for k, v in mem.items() if v is not None})
    config = TomogramConfig(**{k: v for k, v in given.items() if v is not None})
    summary = simulate_tomogram(out, config, device=device)
    typer.echo(
        f"wrote {out} and {Path(out).with_suffix('.star')}: {summary['particles_placed']} particles "
        f"({summary['membrane_particles_placed']} in {len(summary['membranes'])} membranes), "
        f"measured SNR {summary['snr_measured']:.3g}"
    )
