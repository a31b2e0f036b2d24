"""Figure for docs/: central xy slices of simulated subtomograms of a few classes, noise-free and noisy.

Usage: ``.venv/bin/python benchmarks/figure_simulation.py`` -> ``docs/simulation_slices.png``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryomine.report import save_slice_montage
from cryomine.simulate.config import build_dataset_config
from cryomine.simulate.imaging import image_scenes
from cryomine.simulate.scene import NeighbourBank, pack_scene
from cryomine.simulate.templates import prepare_template

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("3j9i", "4v4r", "1bxn", "6utj")


def main() -> None:
    config = build_dataset_config(structures=CLASSES, per_class=1, seed=0)
    templates = [prepare_template(s, config.voxel_size_a) for s in CLASSES]
    bank = NeighbourBank(templates, config.crowding.bank_size, config.seed)
    scenes = [pack_scene(t, bank, templates, config.size, config.crowding, np.random.default_rng([0, i])) for i, t in enumerate(templates)]
    stack = np.stack([s.density for s in scenes])
    pad, size = config.crowding.pad, config.size
    crop = (slice(pad, pad + size),) * 3
    rows = {}
    res = {snr: image_scenes(stack, config.voxel_size_a, build_dataset_config(structures=CLASSES, per_class=1, snr=snr).imaging,
                             np.random.default_rng(1), crop=size) for snr in (0.06, 0.01)}  # fmt: skip
    for i, (name, scene) in enumerate(zip(CLASSES, scenes)):
        rows[name] = [scene.target[crop], scene.density[crop], res[0.06].noise_free[i], res[0.06].noisy[i], res[0.01].noisy[i]]
    out = save_slice_montage(
        rows, ROOT / "docs" / "simulation_slices.png",
        column_titles=["target (truth)", "crowded scene", "WBP noise-free", "SNR 0.06", "SNR 0.01"],
        title="Central xy slices, 40³ at 10 Å, tilt ±60° step 3°, defocus 5 µm",
    )  # fmt: skip
    print(f"wrote {out}; measured SNR {res[0.06].measured_snr.round(4)} and {res[0.01].measured_snr.round(4)}")


if __name__ == "__main__":
    main()
