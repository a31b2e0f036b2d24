"""DSM-Net features (and recovered densities, predicted classes) for every selected row of a dataset, batched.

The features are the classification subnet's hidden fully connected layer after its ReLU (``ModelOutput.features``,
1024 units by default). Subtomograms are normalised like the training data (:func:`cryomine.data.normalise.normalise`,
via :class:`~cryomine.data.loader.SubtomoDataset` reading rows on demand) and inferred in eval mode with the run's
bf16 setting (:func:`cryomine.models.infer`).

Memory: the recovered densities of all rows are kept, ``n * s^3 * 4`` bytes (820 MB for the 3205 40^3 rows of
``dsmnet-a``); pass ``keep_recovered=False`` to skip them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from cryomine.data.loader import SubtomoDataset
from cryomine.devices import resolve_bf16
from cryomine.errors import InputError
from cryomine.io.subtomo_h5 import read_header
from cryomine.models import infer
from cryomine.train.runfolder import LoadedRun


@dataclass(frozen=True)
class RowOutputs:
    """Network outputs per dataset row.

    ``rows``: ``(n,)`` dataset row numbers. ``features``: ``(n, f)`` float32 hidden-layer features.
    ``predicted``: ``(n,)`` int64 predicted class (index into the run's class names). ``probability``: ``(n,)``
    float32 softmax probability of that class. ``recovered``: ``(n, d, h, w)`` float32 recovered densities in the
    subtomogram's own pose (units of the normalised clean density), or ``None`` (no recovery head / not kept).
    """

    rows: np.ndarray
    features: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    recovered: np.ndarray | None


def check_run_fits(run: LoadedRun, dataset: str | os.PathLike[str]) -> None:
    """InputError unless the run's model classifies (has features) and takes the dataset's box size."""
    mc = run.model_config
    if not mc.has_cls:
        raise InputError(f"model {mc.name!r} has no classification head, so it gives no features to cluster", run.run_dir)
    size = read_header(dataset).size
    if mc.input_zyx != (size,) * 3:
        raise InputError(f"box size {size} does not match the model's input size {'x'.join(map(str, mc.input_zyx))}",
                         dataset)


def extract_outputs(
    run: LoadedRun,
    dataset: str | os.PathLike[str],
    rows: np.ndarray,
    *,
    batch_size: int = 32,
    keep_recovered: bool = True,
) -> RowOutputs:
    """Run the model of ``run`` (see :func:`cryomine.train.runfolder.load_run`) on ``rows`` of ``dataset``.

    ``rows``: ``(n,)`` dataset row numbers (any order; outputs follow it). The model stays on the device it was
    loaded on.
    """
    check_run_fits(run, dataset)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise InputError("no subtomograms to extract features from", dataset)
    device = next(run.model.parameters()).device
    bf16 = resolve_bf16(run.config.get("train", {}).get("bf16"), device)
    want_rec = keep_recovered and run.model_config.has_rec
    data = SubtomoDataset(dataset, rows, cache_limit_bytes=0)  # on-demand reads: memory bounded by one batch
    feats: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    recovered = np.empty((rows.size, *run.model_config.input_zyx), np.float32) if want_rec else None
    try:
        for start in range(0, rows.size, batch_size):
            pos = np.arange(start, min(start + batch_size, rows.size))
            x = data.batch(pos)["x"].to(device)
            out = infer(run.model, x, bf16=bf16)
            if out.features is None:  # pragma: no cover - every classifying model returns features
                raise InputError("model returned no features", run.run_dir)
            feats.append(out.features.cpu().numpy().astype(np.float32))
            proba = out.class_proba().cpu().numpy()
            preds.append(proba.argmax(1).astype(np.int64))
            probs.append(proba.max(1).astype(np.float32))
            if recovered is not None:
                recovered[pos] = out.recon[:, 0].cpu().numpy()
    finally:
        data.close()
    return RowOutputs(rows, np.concatenate(feats), np.concatenate(preds), np.concatenate(probs), recovered)
