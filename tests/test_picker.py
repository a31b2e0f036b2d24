"""The learned picker: the U-Net's reach, tiling that partitions the tomogram and equals one piece, picks of a
planted class map (touching neighbours split, specks dropped), and a tiny picker that learns one tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cryomine.pick.learned as learned
import cryomine.resources as resources
from cryomine.errors import InputError
from cryomine.models.picker import PickerConfig, PickerUNet, receptive_radius
from cryomine.pick.config import LearnedPickConfig
from cryomine.pick.learned import axis_windows, choose_tile, label_tomogram, picks_from_labels, window_bytes
from cryomine.simulate.membranes import MEMBRANE_LABEL


@pytest.mark.parametrize("n, tile, overlap, multiple", [(37, 16, 4, 4), (70, 64, 26, 4), (200, 96, 24, 8), (9, 96, 24, 8), (64, 32, 0, 8)])
def test_windows_partition_the_axis_with_their_margins(n, tile, overlap, multiple):
    wins = axis_windows(n, tile, overlap, multiple)
    n_pad = -(-n // multiple) * multiple
    size = min(-(-tile // multiple) * multiple, n_pad)
    assert wins[0][1] == 0 and wins[-1][2] == n
    for (s, lo, hi), nxt in zip(wins, [*wins[1:], None]):
        assert s % multiple == 0 and 0 <= s and s + size <= n_pad and lo < hi
        if nxt is not None:
            assert hi == nxt[1]
        assert lo == 0 or lo - s >= overlap  # margins inside the window, except at the faces
        assert hi == n or s + size - hi >= overlap


def test_receptive_radius_bounds_the_reach_of_one_voxel():
    cfg = PickerConfig(("a", "b"), base_channels=4, depth=2)
    net = PickerUNet(cfg).eval()
    x = torch.randn(1, 1, 4, 96, 4)
    y = x.clone()
    y[0, 0, :, 48, :] += 3.0
    with torch.no_grad():
        d = (net(x) - net(y)).abs().amax(dim=(0, 1, 2, 4)).numpy()
    reach = np.nonzero(d > 0)[0]
    assert 48 - reach.min() <= receptive_radius(cfg) and reach.max() - 48 <= receptive_radius(cfg)
    assert 48 - reach.min() >= receptive_radius(cfg) - 4  # a tight bound, not a vacuous one


def _net(seed: int = 0) -> PickerUNet:
    torch.manual_seed(seed)
    net = PickerUNet(PickerConfig(("a", "b", "c"), base_channels=4, depth=2))
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_tiled_labelling_equals_one_piece():
    net = _net()
    rng = np.random.default_rng(1)
    vol = rng.standard_normal((37, 70, 61)).astype(np.float32)
    r = receptive_radius(net.config)
    config = LearnedPickConfig(tile_vox=64, overlap_vox=r, bf16=False, device="cpu")
    labels, prob = label_tomogram(vol, net, config)
    assert len(axis_windows(70, 64, r, 4)) > 1  # really tiled
    mean, std = float(vol.astype(np.float64).mean()), float(vol.astype(np.float64).std())
    padded = np.zeros((40, 72, 64), np.float32)
    padded[:37, :70, :61] = (vol - mean) / std
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(padded)[None, None]), dim=1)[0, :, :37, :70, :61]
    best, lab = p.max(dim=0)
    np.testing.assert_allclose(prob, best.numpy(), atol=2e-5)
    assert (labels == lab.numpy()).mean() > 0.9999  # up to near-ties in float rounding


def _ball(shape, centre, radius):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_picks_of_a_planted_class_map_are_its_centres():
    shape = (30, 48, 44)
    labels = np.zeros(shape, np.int8)
    prob = np.full(shape, 0.95, np.float32)
    planted = {"a": [(8, 10, 10), (20, 30, 30)], "b": [(15, 24, 9), (15, 24, 19)]}  # the two b's touch
    for c, name in enumerate(("a", "b"), start=1):
        for centre in planted[name]:
            labels[_ball(shape, centre, 4.6)] = c
    labels[_ball(shape, (25, 8, 36), 1.0)] = 1  # a speck of class a: below the size check
    prob[labels == 2] = 0.8
    prob[0:5, 40:48, 0:5] = 0.3
    labels[0:5, 40:48, 0:5] = 3  # class c, but unsure: not a pick
    labels[26:30, :, :] = 4  # a membrane sheet: segmented, never a particle
    volume = float(_ball((11, 11, 11), (5, 5, 5), 4.6).sum())
    names = ("a", "b", "c", MEMBRANE_LABEL)
    picks = picks_from_labels(labels, prob, names, LearnedPickConfig(), {"a": volume, "b": volume, "c": volume, MEMBRANE_LABEL: volume})
    got = {(n, tuple(np.round(c, 6))) for n, c in zip(picks.class_name, picks.coords_zyx)}
    assert got == {(n, tuple(float(v) for v in c)) for n, cs in planted.items() for c in cs}
    np.testing.assert_allclose(picks.scores, [0.95, 0.95, 0.8, 0.8], rtol=1e-6)  # best first
    table = picks.to_table("t")
    assert list(table.particles["rlnClassName"]) == list(picks.class_name)
    with pytest.raises(InputError, match="differ in shape"):
        picks_from_labels(labels, prob[1:], names)


def test_a_tiny_picker_learns_one_tile():
    """Overfit one 24³ tile (two classes of different size and contrast), then label it through the inference
    path (batch norm recalibrated on the tile, as precise BN does): every class is recovered."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster, and immune to a busy second core
    rng = np.random.default_rng(2)
    shape = (24, 24, 24)
    target = np.zeros(shape, np.int64)
    vol = 0.3 * rng.standard_normal(shape).astype(np.float32)
    for c, centre, radius in ((1, (7, 7, 8), 4.5), (2, (16, 16, 15), 3.5), (1, (17, 6, 18), 4.5)):
        ball = _ball(shape, centre, radius)
        target[ball] = c
        vol[ball] += 1.0 if c == 1 else -1.0  # bright big ones, a dark small one
    net = PickerUNet(PickerConfig(("big", "small"), base_channels=8, depth=1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.from_numpy((vol - vol.mean()) / vol.std())[None, None], torch.from_numpy(target)[None]  # as labelled
    try:
        for _ in range(40):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.momentum = 1.0
        with torch.no_grad():
            net.train()(x)
        labels, _ = label_tomogram(vol, net.eval(), LearnedPickConfig(tile_vox=24, overlap_vox=0, bf16=False, device="cpu"))
    finally:
        torch.set_num_threads(threads)
    for c in (0, 1, 2):
        iou = ((labels == c) & (target == c)).sum() / ((labels == c) | (target == c)).sum()
        assert iou > 0.9, (c, iou)


def _computed_voxels(shape, tile, overlap, multiple):
    return np.prod([len(axis_windows(n, tile, overlap, multiple)) * min(-(-tile // multiple) * multiple, -(-n // multiple) * multiple)
                    for n in shape])  # fmt: skip


@pytest.mark.parametrize("shape", [(200, 512, 512), (48, 130, 97), (300, 1024, 1024)])
def test_the_automatic_tile_computes_fewest_voxels_within_the_memory(shape):
    memory_gb = 4.0
    tile = choose_tile(shape, 24, 8, memory_gb, 16)
    edges = [min(-(-tile // 8) * 8, -(-n // 8) * 8) for n in shape]
    assert window_bytes(edges, 16) <= memory_gb * 1e9
    cost = _computed_voxels(shape, tile, 24, 8)
    for other in range(56, 513, 8):  # every tile that fits does at least as much work (brute force)
        other_edges = [min(other, -(-n // 8) * 8) for n in shape]
        if window_bytes(other_edges, 16) <= memory_gb * 1e9:
            assert _computed_voxels(shape, other, 24, 8) >= cost
    assert choose_tile(shape, 24, 8, 0.5, 16) <= tile  # less memory, smaller windows
    with pytest.raises(InputError, match="--memory-gb"):
        choose_tile(shape, 24, 8, 1e-4, 16)


def test_labelling_never_plans_more_memory_than_the_machine_has(monkeypatch):
    net = PickerUNet(PickerConfig(class_names=("a",), base_channels=4, depth=1))
    vol = np.random.default_rng(0).standard_normal((40, 40, 40)).astype(np.float32)
    for module in (learned, resources):  # 1 MB: not even the smallest window fits
        monkeypatch.setattr(module, "available_memory_bytes", lambda: int(1e6))
    with pytest.raises(InputError, match="--memory-gb"):
        label_tomogram(vol, net.eval(), LearnedPickConfig(bf16=False, device="cpu"))
    with pytest.raises(InputError, match="--tile-size"):
        label_tomogram(vol, net.eval(), LearnedPickConfig(tile_vox=56, bf16=False, device="cpu"))
