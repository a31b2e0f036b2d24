"""Export a trained run as a shipped pretrained model (``cryomine/pretrained/NAME/``, used as ``pretrained:NAME``).

The exported folder holds ``config.json`` (the run's resolved config), ``best.pt`` reduced to the model weights
and epoch (no optimizer state, so it is small), ``metrics.csv`` (the training history), ``split.json`` and a
``training.json`` record: the dataset's generating parameters, seed, epochs, hardware and final metrics.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cryomine.io.atomic import atomic_output
from cryomine.train.loop import load_checkpoint, save_checkpoint
from cryomine.train.runfolder import BEST_FILE, CONFIG_FILE, SPLIT_FILE, resolve_run


def export_pretrained(
    run: str | os.PathLike[str], dest: str | os.PathLike[str], record: dict[str, Any], checkpoint: str = BEST_FILE
) -> Path:
    """Write the pretrained folder ``dest`` from ``checkpoint`` of run folder ``run`` (shipped as ``best.pt``);
    ``record`` goes to ``training.json``."""
    src = resolve_run(run)
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(src / checkpoint)
    keep = {k: ckpt[k] for k in ("model_state", "epoch") if k in ckpt}
    save_checkpoint(out / BEST_FILE, keep)
    for name in (CONFIG_FILE, SPLIT_FILE, "metrics.csv"):
        if (src / name).is_file():
            with atomic_output(out / name) as tmp:
                shutil.copyfile(src / name, tmp)
    with atomic_output(out / "training.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return out
