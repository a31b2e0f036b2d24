"""The iteration state saved after every averaging iteration, so ``--resume`` continues where a run stopped."""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output

__all__ = ["CHECKPOINT", "jsonable", "load_checkpoint", "save_checkpoint"]


def jsonable(obj: object) -> object:
    """``obj`` with numpy scalars/arrays as Python numbers/lists and non-finite floats as None (for JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj


CHECKPOINT = "checkpoint.npz"


def save_checkpoint(out_dir: str | os.PathLike[str], state: dict[str, np.ndarray], meta: dict) -> Path:
    """Write the iteration state (arrays) and its metadata (JSON in the same file), atomically."""
    path = Path(out_dir) / CHECKPOINT
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(jsonable(meta))), **state)
    return path


def load_checkpoint(out_dir: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict] | None:
    """The saved state and metadata, or None when there is no checkpoint."""
    path = Path(out_dir) / CHECKPOINT
    if path.exists() and not path.is_file():
        raise InputError("is not a file: move it away to start over", path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # EOFError: an empty file
        raise InputError(f"unreadable checkpoint ({str(exc) or type(exc).__name__}); delete it to start over", path) from None
    return state, meta
