"""The visual atlas: every pick replaced by its class's structure at its position and orientation.

Each class name is a bundled structure id (e.g. ``1bxn``, as the simulator and template matching write them) or
is mapped to an id or a map/model file by ``structures``. The structure (:func:`cryomine.simulate.templates.
prepare_template` at the tomogram's voxel size: density scaled to mean 1 inside its mask, centre of mass at the
box centre) is rotated by the pick's RELION ZYZ angles (0 when the picks have none, e.g. DoG picks classified by
``predict``) with the same convention as the simulator, shifted by the sub-voxel part of the position and added
into a volume of the tomogram's shape. A label volume (0 = empty, ``k + 1`` = class ``k``) marks each
structure's mask voxels (later picks overwrite earlier ones where masks overlap). The PNG renders the label
volume from the top (xy) and the side (xz), each structure coloured by class and shaded by depth, with a legend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix, rotate_volumes
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import write_mrc
from cryomine.io.star import coordinates_xyz_voxels, eulers_zyz
from cryomine.io.volume import open_volume
from cryomine.pick.evaluate import load_point_set
from cryomine.pick.peaks import read_picks
from cryomine.resources import check_memory
from cryomine.simulate.scene import overlap_slices
from cryomine.simulate.templates import prepare_template

__all__ = ["Atlas", "build_atlas", "save_atlas_png", "make_atlas"]

_BATCH = 32


@dataclass(frozen=True)
class Atlas:
    """``density`` ``(d, h, w)`` float32 sum of placed structures; ``labels`` ``(d, h, w)`` int16 (0 = empty,
    ``k + 1`` = ``class_names[k]``); ``counts`` picks placed per class."""

    density: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    counts: dict[str, int]


def build_atlas(
    shape_zyx: tuple[int, int, int],
    voxel_size_a: float,
    coords_zyx: np.ndarray,
    class_names: np.ndarray,
    eulers: np.ndarray | None = None,
    structures: Mapping[str, str] | None = None,
) -> Atlas:
    """Place the structure of each pick's class (see the module docstring).

    Args:
        shape_zyx: the tomogram's ``(d, h, w)``. voxel_size_a: its voxel size (Å).
        coords_zyx: ``(n, 3)`` pick positions (voxels). class_names: ``(n,)`` class name per pick.
        eulers: ``(n, 3)`` RELION (rot, tilt, psi) degrees, or None (unrotated).
        structures: class name -> bundled id or file; ``"*"`` -> the structure of every class without its own
            entry (default: the class name itself).
    """
    names = [str(n) for n in class_names]
    classes = sorted(set(names))
    mapping = dict(structures or {})
    unknown = sorted(set(mapping) - set(classes) - {"*"})
    if unknown:
        raise InputError(f"no pick has class {', '.join(map(repr, unknown))} (classes: {', '.join(classes)})", "--structure")
    density = np.zeros(shape_zyx, np.float32)
    labels = np.zeros(shape_zyx, np.int16)
    angles = np.zeros((len(names), 3)) if eulers is None else np.asarray(eulers, np.float64)
    coords = np.asarray(coords_zyx, np.float64)
    counts: dict[str, int] = {}
    for k, name in enumerate(classes):
        source = mapping.get(name, mapping.get("*", name))
        try:
            tmpl = prepare_template(source, voxel_size_a)
        except InputError as exc:
            raise InputError(f"class {name!r}: {exc} (map class names to structures with --structure NAME=ID_OR_FILE)") from None
        idx = np.flatnonzero(np.array([n == name for n in names]))
        counts[name] = 0
        cube_t = torch.from_numpy(tmpl.density)
        m = tmpl.density.shape[0]
        for start in range(0, len(idx), _BATCH):
            sel = idx[start : start + _BATCH]
            whole = np.rint(coords[sel]).astype(np.int64)
            mats = torch.from_numpy(euler_zyz_to_matrix(angles[sel]).astype(np.float32))
            shifts = torch.from_numpy((coords[sel] - whole).astype(np.float32))
            cubes = rotate_volumes(cube_t.expand(len(sel), m, m, m), mats, shifts).numpy()
            for cube, centre in zip(cubes, whole):
                region = overlap_slices(tuple(shape_zyx), m, centre)
                if region is None:
                    continue
                density[region[0]] += np.clip(cube[region[1]], 0.0, None)
                labels[region[0]][cube[region[1]] > tmpl.mask_level] = k + 1
                counts[name] += 1
    return Atlas(density, labels, classes, counts)


def _first_hit(labels: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Label of the first structure seen looking down ``axis`` from its high end, and its depth in [0, 1]
    (1 = nearest the viewer); label 0 where the line of sight is empty."""
    rev = np.flip(labels, axis=axis)
    occupied = rev > 0
    first = np.argmax(occupied, axis=axis)
    lab = np.take_along_axis(rev, np.expand_dims(first, axis), axis=axis).squeeze(axis)
    depth = 1.0 - first / max(labels.shape[axis] - 1, 1)
    return np.where(occupied.any(axis=axis), lab, 0), depth


def save_atlas_png(atlas: Atlas, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Top (xy, seen from high z) and side (xz, seen from high y) renderings of the label volume coloured by class,
    nearer structures brighter, with a legend (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = len(atlas.class_names)
    base = plt.get_cmap("tab20" if n > 10 else "tab10")
    colours = [(0.08, 0.08, 0.08, 1.0)] + [base(i % base.N) for i in range(n)]
    cmap = ListedColormap(colours)
    d, h, w = atlas.density.shape
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 7.5 * (h + d) / max(w, 1) + 1.0), height_ratios=[h, d], squeeze=True)
    for ax, axis, label in ((axes[0], 0, "top view (xy)"), (axes[1], 1, "side view (xz)")):
        lab, depth = _first_hit(atlas.labels, axis)
        shade = 0.3 + 0.7 * depth  # nearer structures brighter
        rgb = np.asarray(cmap(lab))[..., :3] * np.where(lab > 0, shade, 1.0)[..., None]
        ax.imshow(rgb, interpolation="nearest", origin="lower")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=colours[k + 1], label=f"{c} ({atlas.counts.get(c, 0)})") for k, c in enumerate(atlas.class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(n, 5), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    p = Path(path)
    with atomic_output(p) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return p


def make_atlas(
    tomogram: str | os.PathLike[str],
    picks: str | os.PathLike[str],
    out: str | os.PathLike[str],
    predictions: str | os.PathLike[str] | None = None,
    structures: Mapping[str, str] | None = None,
) -> tuple[Atlas, list[Path]]:
    """Build the atlas of ``picks`` on ``tomogram``'s grid; write ``out`` (density MRC), ``<stem>_labels.mrc`` and
    ``<stem>.png`` (the MRCs with the tomogram's voxel size and origin). Classes come from ``predictions``
    (``cryomine predict`` output on the extracted picks) or the picks' ``rlnClassName``; with no classes, a single
    ``structures`` entry keyed ``"*"`` is used for all picks."""
    table = read_picks(picks)
    points = load_point_set(picks, predictions)
    names = points.class_names
    mapping = dict(structures or {})
    if names is None:
        if "*" not in mapping:
            raise InputError("picks have no class names: give --classes predictions.star, or --structure ID for all picks", picks)
        names = np.full(len(table), "*", dtype=object)
    eul = eulers_zyz(table) if "rlnAngleRot" in table.particles else None
    with open_volume(tomogram) as tomo:
        shape, voxel_size_a, origin = tuple(int(s) for s in tomo.data.shape), tomo.voxel_size_a, tomo.origin_zyx_a
    check_memory(8.0 * np.prod(shape, dtype=np.float64), f"an atlas of {'x'.join(map(str, shape))} voxels", tomogram)  # density + labels
    coords = coordinates_xyz_voxels(table)[:, ::-1]
    atlas = build_atlas(shape, voxel_size_a, coords, names, eul, mapping)  # type: ignore[arg-type]
    out = Path(out)
    stem = out.with_suffix("")
    label_path, png_path = Path(f"{stem}_labels.mrc"), Path(f"{stem}.png")
    write_mrc(out, atlas.density, voxel_size_a, origin)
    write_mrc(label_path, atlas.labels.astype(np.float32), voxel_size_a, origin)
    save_atlas_png(atlas, png_path, title=f"{Path(picks).name}: {sum(atlas.counts.values())} particles")
    return atlas, [out, label_path, png_path]
