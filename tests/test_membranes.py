"""Membranes in simulated tomograms (issue 14 item 2): bilayer profile, plant-and-recover of vesicles, no overlaps,
membrane proteins on the mid-surface along the normal, CLI outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cryomine.cli import main
from cryomine.geometry import euler_zyz_to_matrix, rotate_volumes
from cryomine.io import read_mrc, read_particles
from cryomine.io.star import coordinates_xyz_voxels, eulers_zyz
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.membranes import Membrane, MembraneConfig, bilayer_profile, render_membranes
from cryomine.simulate.scene import overlap_slices
from cryomine.simulate.templates import prepare_template
from cryomine.simulate.tomogram import TomogramConfig, pack_tomogram


def test_bilayer_profile_has_two_head_group_peaks_and_a_low_core():
    d = np.linspace(-40, 40, 8001)

    def peaks(cfg):
        rho = bilayer_profile(d, cfg)
        return np.sort(d[1:-1][(rho[1:-1] > rho[:-2]) & (rho[1:-1] > rho[2:])]), rho

    heads_only, _ = peaks(MembraneConfig(core_density=0.0))
    np.testing.assert_allclose(heads_only, [-20.0, 20.0], atol=0.02)  # the two head-group layers, s = 40 Å apart
    with_core, rho = peaks(MembraneConfig())
    assert np.all((np.abs(with_core) > 20.0) & (np.abs(with_core) < 25.0))  # the negative core pushes them apart
    assert rho[4000] < 0 and bilayer_profile(np.array([60.0]), MembraneConfig())[0] < 1e-6


@pytest.fixture(scope="module")
def packed():
    config = TomogramConfig(shape_zyx=(64, 128, 128), particles=12, structures=("1bxn", "3j9i"), seed=2,
                            membranes=MembraneConfig(vesicles=2, sheets=1, vesicle_radius_a=(150.0, 250.0)),
                            membrane_structures=("5gjv",), membrane_particles=5, imaging=ImagingConfig(snr=1.0))  # fmt: skip
    return config, *pack_tomogram(config, progress=False)


def test_vesicles_are_recovered_from_their_masks(packed):
    config, _, placed = packed
    vesicles = [(i, m) for i, m in enumerate(placed.membranes, start=1) if m.kind == "vesicle"]
    assert len(vesicles) == 2 and [m.kind for m in placed.membranes].count("sheet") == 1
    for i, m in vesicles:
        pts = np.argwhere(placed.membrane_mask == i).astype(np.float64)
        centre = pts.mean(0)
        radius = np.linalg.norm(pts - centre, axis=1).mean()
        np.testing.assert_allclose(centre, m.centre_zyx, atol=0.5)
        assert radius == pytest.approx(m.radius_vox, abs=0.5)


def test_soluble_particles_never_touch_membranes_and_membrane_proteins_sit_in_them(packed):
    config, _, placed = packed
    _, _, keep_out = render_membranes(config.shape_zyx, config.voxel_size_a, placed.membranes, config.membranes)
    templates = [prepare_template(s, config.voxel_size_a, config.mask_threshold) for s in (*config.structures, *config.membrane_structures)]
    assert placed.in_membrane.sum() == 5 and (~placed.in_membrane).sum() == 12
    for centre, ang, k, member in zip(placed.coords_zyx, placed.eulers_zyz, placed.class_ids, placed.in_membrane):
        t = templates[k]
        whole = np.round(centre).astype(int)
        cube = rotate_volumes(torch.from_numpy(t.density)[None], torch.from_numpy(euler_zyz_to_matrix(ang).astype(np.float32))[None],
                              torch.from_numpy((centre - whole).astype(np.float32))[None])[0].numpy()  # fmt: skip
        region = overlap_slices(config.shape_zyx, cube.shape[0], whole)
        touches = (keep_out[region[0]] & (cube > t.mask_level)[region[1]]).any()
        if not member:
            assert not touches
            continue
        # on the mid-surface of one membrane, its z axis along the normal there
        dist = [abs(float(m.signed_distance(np.asarray(centre).reshape(3, 1))[0])) for m in placed.membranes]
        m: Membrane = placed.membranes[int(np.argmin(dist))]
        assert min(dist) < 1e-6 and touches
        normal = np.asarray(centre) - m.centre_zyx if m.kind == "vesicle" else np.asarray(m.normal_zyx)
        z_axis = euler_zyz_to_matrix(ang) @ np.array([0.0, 0.0, 1.0])  # (x, y, z)
        np.testing.assert_allclose(np.abs(z_axis @ (normal[::-1] / np.linalg.norm(normal))), 1.0, atol=1e-6)


def test_cli_writes_membrane_mask_and_flags_membrane_proteins(tmp_path, capsys):
    out = tmp_path / "cell.mrc"
    assert main(["simulate", "tomogram", str(out), "--shape", "48,96,96", "--particles", "6", "--structures", "1bxn",
                 "--vesicles", "1", "--vesicle-radius", "150,200", "--membrane-structures", "5gjv", "--membrane-particles", "3",
                 "--snr", "1", "--seed", "4"]) == 0  # fmt: skip
    assert "3 in 1 membranes" in capsys.readouterr().out
    mask = read_mrc(tmp_path / "cell_membranes.mrc").data
    summary = json.loads((tmp_path / "cell.json").read_text())
    assert set(np.unique(mask)) == {0.0, 1.0} and len(summary["membranes"]) == 1
    table = read_particles(tmp_path / "cell.star")
    flags = table.particles["cmInMembrane"].to_numpy()
    assert flags.sum() == 3 and set(table.particles["rlnClassName"][flags == 1]) == {"5gjv"}
    assert coordinates_xyz_voxels(table).shape == (9, 3) and eulers_zyz(table).shape == (9, 3)
    assert main(["simulate", "tomogram", str(tmp_path / "x.mrc"), "--membrane-particles", "2", "--membrane-structures", "5gjv",
                 "--shape", "32,32,32"]) == 2  # membrane proteins need membranes  # fmt: skip


def test_class_map_is_every_particles_mask_with_its_class_and_the_membranes(packed):
    """The picker's targets: each particle's mask (recomputed from its pose) carries its class + 1, nothing
    else carries a particle label, and membrane voxels under no particle carry n_classes + 1."""
    config, _, placed = packed
    labels = placed.class_map
    templates = [prepare_template(s, config.voxel_size_a, config.mask_threshold) for s in (*config.structures, *config.membrane_structures)]
    covered = np.zeros(labels.shape, bool)
    for centre, ang, k in zip(placed.coords_zyx, placed.eulers_zyz, placed.class_ids):
        t = templates[k]
        whole = np.round(centre).astype(int)
        cube = rotate_volumes(torch.from_numpy(t.density)[None], torch.from_numpy(euler_zyz_to_matrix(ang).astype(np.float32))[None],
                              torch.from_numpy((centre - whole).astype(np.float32))[None])[0].numpy()  # fmt: skip
        region = overlap_slices(config.shape_zyx, cube.shape[0], whole)
        inside = (cube > t.mask_level)[region[1]]
        assert (labels[region[0]][inside] == k + 1).all()
        covered[region[0]] |= inside
    n_classes = len(templates)
    assert set(np.unique(labels[covered])) == set(placed.class_ids + 1)
    assert ((labels[~covered] == 0) | (labels[~covered] == n_classes + 1)).all()
    np.testing.assert_array_equal(labels[~covered] == n_classes + 1, placed.membrane_mask[~covered] > 0)
    assert labels.dtype == np.int8 and covered.mean() == pytest.approx(placed.volume_fraction)
