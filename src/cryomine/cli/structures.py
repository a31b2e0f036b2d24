"""``cryomine structures list|show``: the bundled structure library."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cryomine.cli.app import app
from cryomine.io import write_mrc
from cryomine.io.atomic import check_writable
from cryomine.structures import list_structures, load_structure

structures_app = typer.Typer(help="List and render the bundled structure library (13 atomic models, 26 maps).", no_args_is_help=True)
app.add_typer(structures_app, name="structures")


@structures_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Print id, source (pdb or map), approximate diameter (Å) and box size (voxels at 10 Å) of each structure."""
    infos = list_structures()
    if as_json:
        typer.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    typer.echo(f"{'id':<10} {'source':<6} {'diameter_A':>10} {'box':>5}")
    for info in infos:
        typer.echo(f"{info.id:<10} {info.source:<6} {info.diameter_a:>10.0f} {info.box_size:>5d}")


@structures_app.command("show")
def show_cmd(
    structure: str = typer.Argument(..., help="A bundled structure id, or a PDB/mmCIF/MRC file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output MRC file."),
    voxel_size: float = typer.Option(10.0, "--voxel-size", help="Voxel size of the map (Å)."),
    resolution: float | None = typer.Option(None, "--resolution", help="Resolution (Å) of maps computed from atoms; default 2 x voxel size."),
    map_voxel_size: float | None = typer.Option(None, "--map-voxel-size", help="Voxel size (Å) of a map STRUCTURE whose header lacks it (or is wrong)."),
) -> None:
    """Write the density map of STRUCTURE at the requested voxel size as MRC."""
    check_writable(out)  # before any work
    volume = load_structure(structure, voxel_size_a=voxel_size, resolution_a=resolution, map_voxel_size_a=map_voxel_size,
                            map_voxel_size_name="--map-voxel-size")  # fmt: skip
    write_mrc(out, volume.data, volume.voxel_size_a)
    typer.echo(f"wrote {out} ({'x'.join(map(str, volume.data.shape))} voxels at {volume.voxel_size_a:g} Å)")
