"""``cryomine convert``: TOM motive lists, SHREC lists and CSV picks -> a RELION particles STAR with optics."""

from __future__ import annotations

from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.io.atomic import check_writable
from cryomine.io.convert import FORMATS, ConvertConfig, convert_particle_list


@app.command("convert")
def convert_cmd(
    source: Path = typer.Argument(..., help="Particle list: TOM/PyTom motive list (.em), SHREC 2019/2021 list (.txt) or x,y,z CSV (voxels)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output RELION particles STAR (.star), with a data_optics block."),
    fmt: str | None = typer.Option(None, "--format", help=f"Input format: {'|'.join(FORMATS)} (default: from the extension and content)."),
    pixel_size: float | None = typer.Option(None, "--pixel-size", help="Å per voxel of the input's coordinates (required unless the .em header holds it)."),
    binning: float | None = typer.Option(None, "--binning", help="Divide the coordinates by this (e.g. 4: a bin-1 list for a bin-4 tomogram); output pixel size = pixel size x binning."),
    tomo_name: str | None = typer.Option(None, "--tomo-name", help="rlnTomoName: a name, or for motive lists a pattern of the tomogram number such as TS_{:03d} (default: the motive list's numbers, else the input's file stem)."),
    tilt_series_pixel_size: float | None = typer.Option(None, "--tilt-series-pixel-size", help="Unbinned tilt-series pixel size (Å) for rlnTomoTiltSeriesPixelSize (RELION 5 needs it)."),
    voltage: float | None = typer.Option(None, "--voltage", help="Acceleration voltage (kV) for rlnVoltage."),
    cs: float | None = typer.Option(None, "--cs", help="Spherical aberration (mm) for rlnSphericalAberration."),
    amplitude_contrast: float | None = typer.Option(None, "--amplitude-contrast", help="Amplitude contrast (0-1) for rlnAmplitudeContrast."),
) -> None:
    """Convert a particle list to a RELION 5 particles STAR file (0-based voxel coordinates, optics block)."""
    check_writable(out)  # before any work
    given = {"binning": binning, "tilt_series_pixel_size_a": tilt_series_pixel_size, "voltage_kv": voltage, "cs_mm": cs,
             "amplitude_contrast": amplitude_contrast}  # fmt: skip
    config = ConvertConfig(pixel_size_a=pixel_size, tomo_name=tomo_name, **{k: v for k, v in given.items() if v is not None})
    result = convert_particle_list(source, out, fmt, config)
    names = ", ".join(result.tomo_names[:5]) + (", ..." if len(result.tomo_names) > 5 else "")
    typer.echo(f"wrote {result.path}: {result.n} particles from {result.format} at {result.pixel_size_a:g} Å/voxel"
               f"{f' (tomograms {names})' if names else ''}")  # fmt: skip
