"""Validation mIoU of a trained picker on a picker run's fixed validation tiles (the stop-28 decision rule for shipping
a fine-tuned picker: it must beat the previous picker on the same tiles).

Usage: ``.venv/bin/python benchmarks/picker_val_miou.py MODEL VALIDATION_TOMOGRAM.mrc`` (MODEL: a picker run folder or
``pretrained:NAME``; the tiles are those :func:`cryomine.train.picker.train_picker` validates on with the default
seed, tile size and tile count).
"""

from __future__ import annotations

import argparse

import torch

import cryomine.train.picker as tp
from cryomine.data.tomo_tiles import TileSampler, open_training_tomogram


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("tomogram")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = tp.PickerTrainConfig()
    tomo = open_training_tomogram(args.tomogram, seed=cfg.seed)
    val = tp.validation_tiles(TileSampler([tomo], cfg.tile_vox), cfg)
    picker = tp.load_picker(args.model)
    runtime = tp.picker_runtime(cfg)  # the device and precision train_picker validates in
    model = runtime.prepare(picker.model).eval()
    print(f"{args.model}: validation mIoU {tp._validate(model, val, picker.config.n_labels, runtime)['val_miou']:.4f}")


if __name__ == "__main__":
    main()
