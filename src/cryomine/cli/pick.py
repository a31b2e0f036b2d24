"""``cryomine pick``, ``extract``, ``atlas`` and ``evaluate-picks``: find, cut out, visualise and score particles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.cli.options import acq_option, acquisition_files_option, given, overrides, paths, tomo_name_option
from cryomine.errors import InputError
from cryomine.io.atomic import check_writable


@app.command("pick")
def pick_cmd(
    tomogram: Path = typer.Argument(..., help="Tomogram (MRC, .em or OME-Zarr image/level; protein bright, or give --invert)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output picks (RELION STAR); scores/angles/JSON are written beside it."),
    method: str | None = typer.Option(None, "--method", help="dog, template or learned (default: template when --template is given, learned when --model is, else dog)."),
    model: Path | None = typer.Option(None, "--model", help="A picker run folder (cryomine train-picker) or pretrained:NAME for --method learned (default: pretrained:picker, shipped)."),
    overlap: int | None = typer.Option(None, "--overlap", help="Learned picking: overlap of the tiles (voxels; default 24)."),
    min_probability: float | None = typer.Option(None, "--min-probability", help="Learned picking: a voxel's label counts from this probability on (default 0.5)."),
    template: str | None = typer.Option(None, "--template", help="Bundled structure id or PDB/mmCIF/MRC/.em file (template matching; for DoG it sets the radius)."),
    template_voxel_size: float | None = typer.Option(None, "--template-voxel-size", help="Voxel size (Å) of a --template map file; required for .em files whose header lacks it, overrides an MRC header."),
    angular_step: float | None = typer.Option(None, "--angular-step", help="Angular sampling step (degrees)."),
    symmetry: str | None = typer.Option(None, "--symmetry", help="Template point group C<n> or D<n> about its z axis (RELION's convention): only the orientations it needs are searched (default C1)."),
    radius: float | None = typer.Option(None, "--radius", help="Particle radius (Å) for DoG (default: the --template structure's radius)."),
    min_distance: float | None = typer.Option(None, "--min-distance", help="Exclusion radius between picks (Å; default the particle radius)."),
    top_n: int | None = typer.Option(None, "--top-n", help="Keep at most N picks."),
    threshold: float | None = typer.Option(None, "--threshold", help="Keep picks scoring at least this (default: automatic, unless --top-n)."),
    split_populations: bool | None = typer.Option(None, "--split-populations/--no-split-populations", help="Template matching's automatic threshold: when the peaks above it form two clearly separate groups (other complexes and the target), keep the upper one (default on)."),
    false_positives: float | None = typer.Option(None, "--false-positives", help="Template matching's automatic threshold: the score above which this many false positives are expected over the search (voxels x orientations; pytom-match-pick's --number-of-false-positives; default 1)."),
    border_vox: int | None = typer.Option(None, "--border-vox", help="No pick closer than this to a face (voxels; default half the particle radius, rounded up; 0 = none)."),
    voxel_size: float | None = acq_option("voxel_size_a"),
    invert: bool | None = typer.Option(None, "--invert/--no-invert", help="Negate the tomogram (protein dark; cryomine expects protein bright). Default: the metadata's polarity, else as is."),
    invert_template: bool | None = typer.Option(None, "--invert-template/--no-invert-template", help="Negate an MRC template (protein dark)."),
    template_lowpass: float | None = typer.Option(None, "--template-lowpass", help="Low-pass the template at this resolution (Å), e.g. 40 for a noisy subtomogram average (default: as given)."),
    recenter_template: bool | None = typer.Option(None, "--recenter-template/--keep-template-box", help="Re-centre, clip and re-box an MRC template (default: keep its box and centre)."),
    tilt_min: float | None = acq_option("tilt_min_deg"),
    tilt_max: float | None = acq_option("tilt_max_deg"),
    defocus: float | None = acq_option("defocus_um"),
    voltage: float | None = acq_option("voltage_kv"),
    cs: float | None = acq_option("cs_mm"),
    amplitude_contrast: float | None = acq_option("amplitude_contrast"),
    acquisition: list[Path] | None = acquisition_files_option(),
    tomo_name: str | None = tomo_name_option(),
    class_name: str | None = typer.Option(None, "--class-name", help="Class name written to the picks (rlnClassName; default the template's id or file stem)."),
    ctf: bool | None = typer.Option(None, "--ctf/--no-ctf", help="Weight the template by the CTF (default on where the defocus is known)."),
    per_tilt_weighting: bool = typer.Option(False, "--per-tilt-weighting", help="Weight the template tilt by tilt (the metadata's tilt angles, per-tilt defocus and accumulated dose; pytom-match-pick's option) instead of a continuous wedge and one CTF."),
    mask: Path | None = typer.Option(None, "--mask", help="Mask (MRC or .em) in the template's own box (default: a sphere)."),
    tomogram_mask: Path | None = typer.Option(None, "--tomogram-mask", help="Search only inside this mask (MRC or .em of the tomogram's shape, > 0.5 inside; e.g. the lamella)."),
    pad_edges: bool | None = typer.Option(None, "--pad-edges/--no-pad-edges", help="Zero-pad the faces (exact, default) or correlate circularly (faster; one tile)."),
    tile_size: int | None = typer.Option(None, "--tile-size", help="Tile core edge (voxels; default: automatic from --memory-gb)."),
    memory_gb: float | None = typer.Option(None, "--memory-gb", help="Template matching: peak memory of the whole search (GB; default 4); learned picking: of one window (default 8). Tiles are sized to fit it; what cannot fit is refused."),
    angle_batch: int | None = typer.Option(None, "--angle-batch", help="Orientations correlated together."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for template matching (default: all torch threads)."),
    random_phase_correction: bool | None = typer.Option(None, "--random-phase-correction/--no-random-phase-correction", help="Also search a phase-randomised template and subtract its best score per voxel (the background; STOPGAP, pytom-match-pick's option). Doubles the time (default off)."),
    random_phase_seed: int | None = typer.Option(None, "--random-phase-seed", help="Seed of the phase randomisation (default 0)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted template-matching search (same inputs and parameters) after its last finished tile."),
) -> None:
    """Pick particles by Difference of Gaussians or template matching; write a RELION STAR with scores."""
    from cryomine.acquisition import tomogram_acquisition
    from cryomine.pick.config import METHODS, TemplateMatchConfig
    from cryomine.pick.template import match_template_file
    from cryomine.pick.weighting import TiltWeighting

    chosen = method or ("template" if template else "learned" if model is not None else "dog")
    if chosen not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {chosen!r}", "--method")
    flags = overrides(voxel_size_a=voxel_size, tilt_min_deg=tilt_min, tilt_max_deg=tilt_max, defocus_um=defocus, voltage_kv=voltage,
                      cs_mm=cs, amplitude_contrast=amplitude_contrast, invert=invert)
    acq = tomogram_acquisition(tomogram, flags, paths(acquisition), tomo_name=tomo_name)
    voxel_size_a, dark = float(acq.voxel_size_a), acq.polarity == "dark"
    if chosen == "learned":
        if template or mask or tomogram_mask or symmetry or resume or per_tilt_weighting or random_phase_correction or angular_step or top_n or threshold:
            raise InputError("--template, --mask, --tomogram-mask, --symmetry, --resume, --per-tilt-weighting, --random-phase-correction, "
                             "--angular-step, --top-n and --threshold are not for the learned picker", "--method")  # fmt: skip
        _pick_learned(tomogram, out, model, voxel_size_a, dark, given(tile_vox=tile_size, overlap_vox=overlap, min_probability=min_probability, memory_gb=memory_gb,
                                                                   device=device))  # fmt: skip
        return
    if model is not None or overlap is not None or min_probability is not None:
        raise InputError("--model, --overlap and --min-probability are for --method learned", "--method")
    if (false_positives is not None or split_populations is not None) and chosen == "dog":
        raise InputError("--false-positives sets template matching's threshold (DoG's is robust, from the score map)", "--false-positives")
    peak_kw = given(top_n=top_n, threshold=threshold, border_vox=border_vox, false_positives=false_positives, split_populations=split_populations,
                     min_distance_vox=None if min_distance is None else min_distance / voxel_size_a)  # fmt: skip
    if chosen == "dog":
        if (invert_template or recenter_template or mask is not None or tomogram_mask is not None or symmetry is not None or resume
                or per_tilt_weighting or random_phase_correction or random_phase_seed is not None):
            raise InputError("--invert-template, --recenter-template, --mask, --tomogram-mask, --symmetry, --resume, --per-tilt-weighting "
                             "and --random-phase-correction are for template matching",
                             "--method")
        _pick_dog(tomogram, out, template, radius, voxel_size_a, peak_kw, dark)
        return
    if template is None:
        raise InputError("template matching needs --template (bundled structure id or file)", "--template")
    lo, hi = acq.resolved_tilt_range("pick (missing-wedge weighting)")
    microscope = None if ctf is False else acq.microscope("pick (CTF weighting)")
    tilts = None
    if per_tilt_weighting:
        if acq.tilt_angles_deg is None:
            raise InputError("needs the tilt angles: give the tilt series' metadata (--acquisition .tlt/.star/.xml, or a "
                             "sidecar file named like the tomogram)", "--per-tilt-weighting")  # fmt: skip
        tilts = TiltWeighting(acq.tilt_angles_deg, acq.defocus_um if microscope is not None else None, acq.dose_e_a2)
    config = TemplateMatchConfig(
        **given(angular_step_deg=angular_step, symmetry=symmetry, pad_edges=pad_edges, tile_vox=tile_size, memory_gb=memory_gb, angle_batch=angle_batch,
                 device=device, threads=threads, invert_template=invert_template, recenter_template=recenter_template,
                 template_lowpass_a=template_lowpass, random_phase_correction=random_phase_correction, random_phase_seed=random_phase_seed),
        tilt_min_deg=lo, tilt_max_deg=hi, invert=dark, microscope=microscope, peaks=replace(TemplateMatchConfig().peaks, **peak_kw),
        tilt_weighting=tilts,
    )  # fmt: skip
    result, paths_out = match_template_file(tomogram, template, out, config, mask=mask, voxel_size_a=voxel_size_a, progress=True,
                                            template_voxel_size_a=template_voxel_size, acquisition=acq,
                                            class_name=class_name, tomogram_mask=tomogram_mask, resume=resume)
    typer.echo(f"picked {len(result.picks)} particles ({len(result.angles_zyz)} orientations, {result.n_tiles} tile(s); wedge "
               f"{lo:g}..{hi:g} degrees, CTF {'off' if microscope is None else f'{microscope.defocus_um:g} µm'}): "
               f"{', '.join(map(str, paths_out))}")  # fmt: skip


def _pick_learned(tomogram: Path, out: Path, model: Path | None, voxel_size_a: float, dark: bool, kw: dict[str, object]) -> None:
    from cryomine.pick.config import LearnedPickConfig
    from cryomine.pick.learned import DEFAULT_PICKER, pick_learned_file

    if model is None:
        model = Path(DEFAULT_PICKER)
    picks, paths = pick_learned_file(tomogram, out, model, LearnedPickConfig(invert=dark, **kw), voxel_size_a=voxel_size_a, progress=True)
    typer.echo(f"picked {len(picks)} particles (learned picker {model}): {', '.join(map(str, paths))}")


def _pick_dog(tomogram: Path, out: Path, template: str | None, radius: float | None, voxel_size_a: float,
              peak_kw: dict[str, object], invert: bool) -> None:  # fmt: skip
    from cryomine.pick.config import DogConfig
    from cryomine.pick.dog import pick_dog_file
    from cryomine.structures import bundled_radius_a

    radius_a = radius if radius is not None else (bundled_radius_a(template) if template else None)
    if radius_a is None:
        raise InputError("DoG needs the particle radius: give --radius (Å) or --template with a bundled structure id", "--radius")
    config = DogConfig(radius_vox=radius_a / voxel_size_a, invert=invert)
    config = replace(config, peaks=replace(config.peaks, **peak_kw))
    result, paths = pick_dog_file(tomogram, out, config, voxel_size_a=voxel_size_a)
    typer.echo(f"picked {len(result.picks)} particles (DoG, radius {config.radius_vox:.1f} voxels): {', '.join(map(str, paths))}")


@app.command("extract")
def extract_cmd(
    tomogram: Path = typer.Argument(..., help="Tomogram (MRC, .em or OME-Zarr image/level)."),
    picks: Path = typer.Argument(..., help="Picks (RELION STAR, voxel coordinates of TOMOGRAM)."),
    size: int = typer.Option(..., "--size", help="Box edge (voxels); must match the model's input for predict."),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset (.h5) for 'cryomine predict' / 'discover' / 'average'."),
    invert: bool | None = typer.Option(None, "--invert/--no-invert", help="Protein-dark tomogram: negate the boxes (DSM-Net expects protein bright). Default: the metadata's polarity, else as is."),
    voxel_size: float | None = acq_option("voxel_size_a"),
    tilt_min: float | None = acq_option("tilt_min_deg"),
    tilt_max: float | None = acq_option("tilt_max_deg"),
    defocus: float | None = acq_option("defocus_um"),
    voltage: float | None = acq_option("voltage_kv"),
    cs: float | None = acq_option("cs_mm"),
    amplitude_contrast: float | None = acq_option("amplitude_contrast"),
    acquisition: list[Path] | None = acquisition_files_option(),
    tomo_name: str | None = tomo_name_option(),
) -> None:
    """Cut a box around every pick of the tomogram into a cryomine subtomogram dataset with its acquisition metadata."""
    check_writable(out)  # before any work
    from cryomine.pick.extract import extract_subtomograms

    flags = overrides(voxel_size_a=voxel_size, tilt_min_deg=tilt_min, tilt_max_deg=tilt_max, defocus_um=defocus, voltage_kv=voltage,
                      cs_mm=cs, amplitude_contrast=amplitude_contrast, invert=invert)
    res = extract_subtomograms(tomogram, picks, out, size, overrides=flags, files=paths(acquisition), tomo_name=tomo_name)
    acq = res.acquisition
    tilt = "unknown" if acq.tilt_range_deg is None else f"{acq.tilt_range_deg[0]:g}..{acq.tilt_range_deg[1]:g} degrees"
    typer.echo(f"wrote {res.path}: {res.n} subtomograms of {res.size}³ voxels at {res.voxel_size_a:g} Å"
               f"{' (inverted: protein dark)' if res.inverted else ''}; tilt range {tilt}, defocus "
               f"{'unknown' if acq.defocus_at_zero_tilt_um is None else f'{acq.defocus_at_zero_tilt_um:g} µm'} ({acq.describe_sources()})")


@app.command("atlas")
def atlas_cmd(
    tomogram: Path = typer.Argument(..., help="Tomogram (MRC, .em or OME-Zarr): gives the grid and voxel size."),
    picks: Path = typer.Argument(..., help="Picks (RELION STAR) with rlnClassName (or use --classes)."),
    out: Path = typer.Option(..., "--out", "-o", help="Atlas density (MRC); <stem>_labels.mrc and <stem>.png beside it."),
    classes: Path | None = typer.Option(None, "--classes", help="predictions.star of 'cryomine predict' on the extracted picks."),
    structure: list[str] | None = typer.Option(None, "--structure", help="NAME=ID_OR_FILE to map a class to a structure, or ID_OR_FILE for every pick whose class has no NAME= mapping (repeatable)."),
) -> None:
    """Place each class's structure at its picked position and orientation: the visual atlas (MRC + PNG)."""
    check_writable(out, out.with_name(f"{out.stem}_labels.mrc"), out.with_suffix(".png"))  # before any work
    from cryomine.pick.atlas import make_atlas

    mapping: dict[str, str] = {}
    for item in structure or []:
        name, sep, value = item.partition("=")
        if sep and (not name or not value):
            raise InputError(f"expected NAME=ID_OR_FILE, got {item!r}", "--structure")
        mapping[name if sep else "*"] = value if sep else item
    atlas, paths = make_atlas(tomogram, picks, out, classes, mapping)
    counts = ", ".join(f"{k} {v}" for k, v in atlas.counts.items())
    typer.echo(f"placed {sum(atlas.counts.values())} structures ({counts}): {', '.join(map(str, paths))}")


@app.command("evaluate-picks")
def evaluate_picks_cmd(
    picks: Path = typer.Argument(..., help="Picks (RELION STAR)."),
    truth: Path = typer.Argument(..., help="True particles (RELION STAR with rlnClassName, e.g. from 'simulate tomogram')."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    radius: float | None = typer.Option(None, "--radius", help="Particle radius (Å) for every class (default: each class's bundled structure)."),
    voxel_size: float | None = typer.Option(None, "--voxel-size", help="Voxel size (Å) of the STAR coordinates (default: from the files' JSON)."),
    hit_fraction: float | None = typer.Option(None, "--hit-fraction", help="A hit is within this fraction of the radius."),
    classes: Path | None = typer.Option(None, "--classes", help="predictions.star of 'cryomine predict' on the extracted picks: each pick's class (joined by tomogram and position)."),
) -> None:
    """Precision, recall and F1 of picks (overall and per class; a hit is within half a radius of a true particle)."""
    from cryomine.pick.config import MatchingConfig
    from cryomine.pick.evaluate import evaluate_pick_files

    config = MatchingConfig(**given(radius_a=radius, voxel_size_a=voxel_size, hit_fraction=hit_fraction))
    report = evaluate_pick_files(picks, truth, config, classes)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(_format(report))


def _format(report: dict) -> str:
    def row(label: str, m: dict | None) -> str:
        if m is None:
            return f"  {label:<24} -"
        p = "   -  " if m.get("precision") is None else f"{m['precision']:.3f} "
        f = "   -  " if m.get("f1") is None else f"{m['f1']:.3f} "
        return f"  {label:<24} P {p} R {m['recall']:.3f}  F1 {f} (TP {m['tp']}, FN {m['fn']})"

    lines = [f"{report['n_picks']} picks vs {report['n_true']} true particles (hit within {report['hit_fraction']:g} x radius)",
             row("localisation", report["localisation"]), row("localisation + class", report["localisation_and_class"])]  # fmt: skip
    for name, entry in report["per_class"].items():
        lines.append(f" {name} ({entry['n_true']} true, {entry['n_picked'] if entry['n_picked'] is not None else '-'} picked)")
        lines.append(row("localisation", entry["localisation"]))
        if entry["localisation_and_class"] is not None:
            lines.append(row("localisation + class", entry["localisation_and_class"]))
    return "\n".join(lines)
