"""The real cryoCAT ribosome template (TOM .em, protein dark, 8.704 Å/voxel = 2.176 Å pixels x bin 4, no voxel
size in its header) with its own mask finds the ribosomes of a simulated tomogram at 10 Å/voxel: the template is
inverted, rescaled by Fourier cropping, keeps its box and mask. Its mirror image finds far fewer (the hand of
the map matters), so the matches are the template's shape, not merely large blobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryomine.cli import main
from cryomine.io import read_particles
from cryomine.io.em import write_em
from cryomine.io.star import coordinates_xyz_voxels
from cryomine.io.volume import read_volume
from cryomine.pick.evaluate import match_points
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram
from cryomine.structures import bundled_radius_a

CRYOCAT = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "cryocat_ribosome"
TEMPLATE, MASK = CRYOCAT / "bin4_voxel2.176_ribosome.em", CRYOCAT / "tm_bin4_voxel2.176_ribosome.em"


def _hits(tomogram: Path, template: Path, mask: Path, out: Path) -> int:
    args = ["pick", str(tomogram), "--template", str(template), "--template-voxel-size", "8.704", "--invert-template",
            "--mask", str(mask), "--angular-step", "45", "--top-n", "6", "--class-name", "6qzp", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    truth = coordinates_xyz_voxels(read_particles(tomogram.with_suffix(".star")))
    picks = coordinates_xyz_voxels(read_particles(out))
    return len(match_points(picks, truth, 0.5 * bundled_radius_a("6qzp") / 10.0)[0])  # the SHREC hit rule


def test_cryocat_ribosome_template_finds_simulated_ribosomes(tmp_path):
    if not TEMPLATE.exists():
        pytest.skip("cryoCAT files not available")
    tomogram = tmp_path / "ribosomes.mrc"
    config = TomogramConfig(shape_zyx=(64, 128, 128), particles=6, structures=("6qzp",), seed=4, margin=18,
                            imaging=ImagingConfig(snr=0.5))  # fmt: skip
    assert simulate_tomogram(tomogram, config, progress=False)["particles_placed"] == 6
    found = _hits(tomogram, TEMPLATE, MASK, tmp_path / "picks.star")
    mirror = tmp_path / "mirror.em"
    write_em(mirror, np.ascontiguousarray(read_volume(TEMPLATE, 8.704).data[:, :, ::-1]))
    write_em(tmp_path / "mirror_mask.em", np.ascontiguousarray(read_volume(MASK, 8.704).data[:, :, ::-1]))
    mirrored = _hits(tomogram, mirror, tmp_path / "mirror_mask.em", tmp_path / "mirror.star")
    assert found >= 4 and mirrored <= found - 2, (found, mirrored)
