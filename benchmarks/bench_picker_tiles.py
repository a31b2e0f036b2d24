"""Learned picking's labelling time by tile edge (issue 16: a 200 x 512 x 512 tomogram within 3 minutes).

Labels a Gaussian-noise volume (seed 0) with the shipped picker at each tile edge given, 24-voxel margins, on the
threads given, and prints each time and the label agreement with the first edge's labels (the margins are below the
receptive radius, so seams are not exact). Ad hoc: results are printed, not saved (docs/benchmarks.md quotes them).

Usage: ``.venv/bin/python benchmarks/bench_picker_tiles.py 200,512,512 256,160 [--threads 2]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cryomine.models.picker import receptive_radius
from cryomine.pick.config import LearnedPickConfig
from cryomine.pick.learned import label_tomogram
from cryomine.train.picker import load_picker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape", help="z,y,x voxels")
    ap.add_argument("tiles", help="tile edges, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split(","))
    volume = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    picker = load_picker("pretrained:picker")
    print(f"receptive radius {receptive_radius(picker.config)} voxels", flush=True)
    first = None
    for tile in (int(t) for t in args.tiles.split(",")):
        t0 = time.perf_counter()
        labels, _ = label_tomogram(volume, picker.model, LearnedPickConfig(tile_vox=tile))
        agreement = None if first is None else float((labels == first).mean())
        first = labels if first is None else first
        print(f"tile {tile}: {time.perf_counter() - t0:.1f} s, label agreement with the first tile {agreement}", flush=True)


if __name__ == "__main__":
    main()
