"""Where the time of the dsmnet-a preset goes: per-stage times of a few batches, extrapolated to the 101 batches.

Usage: ``.venv/bin/python benchmarks/profile_simulation.py [N_BATCHES]`` (default 10). Prints ms per batch of 32
boxes and the extrapolated seconds for each stage (packing, projection, CTF, WBP, noise, calibration, writing).
Stages run one after the other here (the simulator overlaps packing and writing with imaging).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cryomine.io.subtomo_h5 import create_dataset
from cryomine.simulate import imaging
from cryomine.simulate.config import build_dataset_config
from cryomine.simulate.scene import NeighbourBank
from cryomine.simulate.subtomograms import _write, load_templates, pack_batch, simulate_batch

TIMES: dict[str, float] = {}


def _timed(name: str, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] = TIMES.get(name, 0.0) + time.perf_counter() - t0

    return wrapper


def main() -> None:
    n_batches = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    cfg = build_dataset_config("dsmnet-a")
    t0 = time.perf_counter()
    templates = load_templates(cfg)
    bank = NeighbourBank(templates, cfg.crowding.bank_size, cfg.seed)
    print(f"structures and neighbour bank: {time.perf_counter() - t0:.1f} s")
    pack_batch(cfg, templates, bank, 0, 2)  # compile the kernels outside the timing
    for name in ("project", "apply_transfer", "reconstruct", "standard_normal", "calibrate_noise"):
        setattr(imaging, name, _timed(name, getattr(imaging, name)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.h5"
        create_dataset(out, n=cfg.n_total, size=cfg.size, voxel_size_a=cfg.voxel_size_a, class_names=list(cfg.structures),
                       config=cfg.to_dict(), cryomine_version="profile", with_noise_model=True)  # fmt: skip
        bs = cfg.batch_size
        for b in range(n_batches):
            scenes = _timed("pack", pack_batch)(cfg, templates, bank, b * bs, (b + 1) * bs)
            rows = _timed("image (all)", simulate_batch)(cfg, templates, bank, b * bs, (b + 1) * bs, None, scenes)
            _timed("write", _write)(out, b * bs, rows)
    total = -(-cfg.n_total // cfg.batch_size)
    for name, seconds in TIMES.items():
        print(f"{name:>16}: {1000 * seconds / n_batches:7.1f} ms/batch -> {seconds / n_batches * total:6.1f} s for {total} batches")


if __name__ == "__main__":
    main()
