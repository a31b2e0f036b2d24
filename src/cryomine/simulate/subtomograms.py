"""Simulate a dataset of crowded subtomograms with full ground truth, streamed to HDF5 and resumable.

Determinism: subtomogram ``i``'s scene (pose, shift, neighbours) is drawn from ``default_rng([seed, 2, i])`` and
the projection noise of the batch starting at ``b`` from ``default_rng([seed, 1, b])`` (and, with an imaging
variation, its imaging parameters from ``default_rng([seed, 3, b])``); batches always start at
multiples of ``batch_size``, so a resumed run writes exactly the arrays an uninterrupted run writes.
Memory is bounded by one batch (plus the structure templates), whatever the dataset size.

Each row also keeps its noise model (noise-free reconstruction, unit-noise reconstruction, noise std; see
:mod:`cryomine.io.subtomo_h5`); one batch shares one imaging geometry and is one ``noise_group``.
"""

from __future__ import annotations

import json
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cryomine import __version__
from cryomine.devices import resolve_device
from cryomine.errors import CryomineWarning, InputError
from cryomine.io.subtomo_h5 import create_dataset, read_header, write_rows
from cryomine.resources import check_disk, check_memory
from cryomine.simulate.aitom import aitom_convolution
from cryomine.simulate.config import SubtomogramDatasetConfig
from cryomine.simulate.fourier import fourier_approximation
from cryomine.simulate.from_tomograms import tomogram_rows
from cryomine.simulate.imaging import ImagingConfig, image_scenes
from cryomine.simulate.scene import NeighbourBank, Scene, pack_scene
from cryomine.simulate.templates import Template, prepare_template
from cryomine.structures import resolve_structures


def class_names_of(structures: tuple[str, ...]) -> list[str]:
    """Class names: bundled ids as they are, files by their stem (``/x/my_map.mrc`` -> ``my_map``)."""
    names = [Path(s).name.split(".")[0] if ("/" in s or "." in s) else s for s in structures]
    if len(set(names)) != len(names):
        raise InputError(f"two structures share a class name: {names}", "--structures")
    return names


def load_templates(config: SubtomogramDatasetConfig) -> list[Template]:
    """One :class:`Template` per class, at the dataset's voxel size."""
    return [prepare_template(s, config.voxel_size_a, config.mask_threshold) for s in config.structures]


def _crop(arr: np.ndarray, pad: int, size: int) -> np.ndarray:
    sl = slice(pad, pad + size)
    return arr[..., sl, sl, sl]


def batch_imaging(config: SubtomogramDatasetConfig, start: int) -> ImagingConfig:
    """The imaging config of the batch starting at row ``start``: the dataset's, or drawn from its variation
    with ``default_rng([seed, 3, start])``."""
    if not config.variation.varies_imaging:
        return config.imaging
    return config.variation.draw(config.imaging, np.random.default_rng([config.seed, 3, start]))


def pack_batch(config: SubtomogramDatasetConfig, templates: list[Template], bank: NeighbourBank, start: int,
               stop: int) -> list[Scene]:
    """The packed scenes of subtomograms ``[start, stop)`` (scene ``i`` from ``default_rng([seed, 2, i])``, its
    crowding from the dataset's variation when that varies it)."""
    return [pack_scene(templates[config.class_of(i)], bank, templates, config.size,
                       config.variation.crowding_of(config.crowding, config.seed, i),
                       np.random.default_rng([config.seed, 2, i])) for i in range(start, stop)]  # fmt: skip


def simulate_batch(
    config: SubtomogramDatasetConfig, templates: list[Template], bank: NeighbourBank, start: int, stop: int,
    device: torch.device | None = None, scenes: list[Scene] | None = None,
) -> dict[str, np.ndarray]:
    """Simulate subtomograms ``[start, stop)``; returns the dataset rows (see :mod:`cryomine.io.subtomo_h5`).
    ``device``: where the tilt series is imaged (default: CUDA when present); packing runs on the CPU.
    ``scenes``: the batch's scenes if already packed (:func:`pack_batch`)."""
    device = resolve_device(device)
    scenes = pack_batch(config, templates, bank, start, stop) if scenes is None else scenes
    classes = [config.class_of(i) for i in range(start, stop)]
    stack = np.stack([s.density for s in scenes])
    noise_rng = np.random.default_rng([config.seed, 1, start])
    imaging = batch_imaging(config, start)
    if config.snr_definition == "aitom":  # numpy only
        result = aitom_convolution(stack, config.voxel_size_a, imaging, noise_rng, crop=config.size, keep_unit_noise=True)
    else:
        imager = image_scenes if config.method == "wbp" else fourier_approximation
        result = imager(stack, config.voxel_size_a, imaging, noise_rng, crop=config.size, keep_unit_noise=True, device=device)
    pad = config.crowding.pad
    neighbours = np.full((len(scenes), max(1, max(len(s.neighbour_classes) for s in scenes))), -1, dtype=np.int16)
    for r, s in enumerate(scenes):
        neighbours[r, : len(s.neighbour_classes)] = s.neighbour_classes
    return {
        "subtomograms": result.noisy.astype(np.float32),
        "target_density": np.stack([_crop(s.target, pad, config.size) for s in scenes]),
        "target_mask": np.stack([_crop(s.target_mask, pad, config.size) for s in scenes]).astype(np.uint8),
        "class_id": np.asarray(classes, dtype=np.int32),
        "eulers_zyz": np.stack([s.eulers_zyz for s in scenes]),
        "shifts_zyx": np.stack([s.shift_zyx for s in scenes]),
        "neighbour_classes": neighbours,
        "volume_fraction": np.asarray([s.volume_fraction for s in scenes], dtype=np.float32),
        "snr_measured": np.nan_to_num(np.asarray(result.measured_snr, dtype=np.float32), posinf=np.inf),
        "noise_free": result.noise_free.astype(np.float32),
        "noise_unit": result.unit_noise.astype(np.float32),
        "noise_sigma": np.asarray(result.noise_sigma, dtype=np.float32),
        "noise_group": np.full(len(scenes), start // config.batch_size, dtype=np.int32),
        "tilt_range_deg": np.tile(np.float32([imaging.tilt.min_deg, imaging.tilt.max_deg]), (len(scenes), 1)),
        "defocus_um": np.full(len(scenes), imaging.microscope.defocus_um, dtype=np.float32),
    }


def simulate_subtomograms(
    out: str | Path, config: SubtomogramDatasetConfig, *, resume: bool = False, force: bool = False, progress: bool = True,
    device: str | torch.device | None = None,
) -> Path:
    """Write (or, with ``resume``, continue) the dataset file ``out``; returns its path.

    ``device``: ``"auto"``/None (CUDA when present), ``"cpu"`` or ``"cuda"`` for the imaging (not part of the
    dataset's config: the arrays agree across devices to float32 rounding, not bit for bit).

    An existing ``out`` is continued with ``resume`` (only if it was made with the same config), replaced with
    ``force``, and refused otherwise.
    """
    out = Path(out)
    device = resolve_device(device)
    resolve_structures(list(config.structures))  # unknown ids/files fail before any work
    names = class_names_of(config.structures)
    config_dict = config.to_dict()
    disk, batch = config.resource_estimate()
    size_opts = "--per-class/--total/--size"
    check_memory(batch, f"a batch of {config.batch_size} subtomograms of {config.size}³ voxels", "--size/--batch-size")
    if not (out.exists() and resume):
        check_disk(out, disk, f"a dataset of {config.n_total} subtomograms of {config.size}³ voxels", size_opts)
    templates = load_templates(config)  # bad structure files and absurd voxel sizes fail before anything is written
    if out.exists() and not force:
        if not resume:
            raise InputError("dataset exists; use --resume to continue it or --force to replace it", out)
        with warnings.catch_warnings():  # "partial dataset": the one reader that is finishing it
            warnings.simplefilter("ignore", CryomineWarning)
            header = read_header(out)
        if json.loads(json.dumps(header.config)) != json.loads(json.dumps(config_dict, sort_keys=True)):
            raise InputError("dataset was made with other parameters; cannot resume (use --force to replace it)", out)
        start = header.n_written
        created = False
    else:
        tmp = out.with_name(f".{out.name}.creating")
        create_dataset(
            tmp, n=config.n_total, size=config.size, voxel_size_a=config.voxel_size_a, class_names=names,
            config=config_dict, cryomine_version=__version__, with_noise_model=True,
            with_coords=config.from_tomograms is not None,
        )  # fmt: skip
        tmp.replace(out)
        start, created = 0, True
    n = config.n_total
    if start >= n:
        return out
    if config.from_tomograms is not None:
        try:
            _write_from_tomograms(out, config, templates, start, progress, device)
        except InputError:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryomineWarning)
                nothing_written = read_header(out).n_written == 0
            if created and nothing_written:
                out.unlink()  # refused at the first tomogram (too few particles packed): leave nothing behind
            raise
        return out
    cubes = sum(float(t.density.shape[0]) ** 3 for t in templates)
    check_memory(10.0 * config.crowding.bank_size * cubes, f"the neighbour bank ({len(templates)} classes x "
                 f"{config.crowding.bank_size} orientations at {config.voxel_size_a:g} Å)", "--voxel-size")  # fmt: skip
    bank = NeighbourBank(templates, config.crowding.bank_size, config.seed)
    bs = config.batch_size
    starts = list(range(start - start % bs, n, bs))
    # three stages overlap: packing the next batch (compiled, releases the GIL), imaging this one (torch), writing
    # the last one; every batch is still packed, imaged and written exactly as on its own, in order
    with ThreadPoolExecutor(1) as packer, ThreadPoolExecutor(1) as writer, \
            tqdm(total=n, initial=start, desc="simulating subtomograms", unit="subtomo", disable=not progress) as bar:
        packed = packer.submit(pack_batch, config, templates, bank, starts[0], min(starts[0] + bs, n))
        written = None
        for j, b0 in enumerate(starts):
            b1 = min(b0 + bs, n)
            scenes = packed.result()
            if j + 1 < len(starts):
                packed = packer.submit(pack_batch, config, templates, bank, starts[j + 1], min(starts[j + 1] + bs, n))
            rows = simulate_batch(config, templates, bank, b0, b1, device, scenes)
            if written is not None:
                bar.update(written.result())
            written = writer.submit(_write, out, b0, rows)
        bar.update(written.result())
    return out


def _write(out: Path, start: int, rows: dict[str, np.ndarray]) -> int:
    write_rows(out, start, rows)
    return len(rows["class_id"])


def _write_from_tomograms(out: Path, config: SubtomogramDatasetConfig, templates: list[Template], start: int, progress: bool,
                          device: torch.device) -> None:
    """Rows from whole tomograms (:mod:`cryomine.simulate.from_tomograms`), one tomogram at a time; resumes at
    the first row of the tomogram that was interrupted."""
    per, n = config.from_tomograms.particles, config.n_total
    with tqdm(total=n, initial=start - start % per, desc="simulating tomograms", unit="subtomo", disable=not progress) as bar:
        for t in range(start // per, -(-n // per)):
            first = t * per
            count = min(per, n - first)
            write_rows(out, first, tomogram_rows(config, templates, t, first, count, device))
            bar.update(count)


def requested_snr_text(config: SubtomogramDatasetConfig) -> str:
    """``"inf"`` or the requested SNR as a string."""
    return "inf" if math.isinf(config.imaging.snr) else f"{config.imaging.snr:g}"
