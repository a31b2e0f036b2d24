"""Make the learned picker's training tomograms and train it (issue 16): resumable, step by step.

Training tomograms look like a cell and vary as users' data do: crowded (``--particles`` per tomogram, all of
DSM-Net's 22 bundled classes from 1s3x to ribosomes, round robin), vesicles (their membranes are a class of their
own), and per tomogram a random SNR (log-uniform 0.03-0.3), defocus (2-6 µm), tilt range (±45-±65°, up to 10°
asymmetric) and seed. Seeds ``--seed0 + i``; evaluation must use other seeds. Each tomogram is skipped if it is
already there; the training continues its run folder with ``--resume`` when one exists.

Usage::

    .venv/bin/python scripts/make_picker.py --out runs/picker [--tomograms 8] [--shape 128,256,256]
        [--particles 600] [--epochs 40] [--steps-per-epoch 100] [--threads 2] [--lr 2e-3] [--init-from RUN]
        [--simulate-only]

``--init-from pretrained:picker`` fine-tunes the shipped picker (new tomograms via another ``--seed0``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cryomine.simulate.cell import cell_tomogram_config
from cryomine.simulate.tomogram import simulate_tomogram
from cryomine.train.picker import PickerTrainConfig, train_picker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/picker"))
    parser.add_argument("--tomograms", type=int, default=8)
    parser.add_argument("--seed0", type=int, default=5000)
    parser.add_argument("--shape", default="128,256,256")
    parser.add_argument("--particles", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=PickerTrainConfig.lr)
    parser.add_argument("--init-from", default=None, help="Picker run folder or pretrained:NAME to start from.")
    parser.add_argument("--simulate-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split(","))
    data = args.out / "tomograms"
    data.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.tomograms):
        seed = args.seed0 + i
        path = data / f"train_{seed}.mrc"
        if not (path.is_file() and path.with_name(f"{path.stem}_classes.mrc").is_file() and path.with_suffix(".json").is_file()):
            summary = simulate_tomogram(path, cell_tomogram_config(seed, shape, args.particles), progress=False)
            print(json.dumps({"tomogram": str(path), "placed": summary["particles_placed"], "snr": summary["snr_measured"]}), flush=True)
        paths.append(path)
    if args.simulate_only:
        return
    run = args.out / "run"
    config = PickerTrainConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, lr=args.lr, init_from=args.init_from)
    print(json.dumps(train_picker(paths, run, config, resume=(run / "last.pt").is_file())), flush=True)


if __name__ == "__main__":
    main()
