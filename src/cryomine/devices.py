"""The one place where cryomine chooses the torch device: CUDA when present, else the CPU."""

from __future__ import annotations

import os

import torch

from cryomine.errors import InputError, check_int

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu or cuda."


def default_device() -> torch.device:
    """CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None = "auto", option: str = "--device") -> torch.device:
    """``"auto"``/``None`` -> :func:`default_device`; ``"cpu"``; ``"cuda"`` (an error naming ``option`` when no
    CUDA device is present); a ``torch.device`` is returned as it is."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return default_device()
    if name not in DEVICE_CHOICES:
        raise InputError(f"must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}", option)
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA requested but not available", option)
    return torch.device(name)


MAX_THREADS_PER_CPU = 4  # oversubscription beyond this only slows a job down; far beyond it torch crashes


def check_thread_count(n: object, option: str) -> int:
    """``n`` CPU threads as an int: at least 1 and at most :data:`MAX_THREADS_PER_CPU` per CPU of this machine
    (100000 threads made torch segfault); :class:`InputError` naming ``option`` otherwise."""
    cpus = os.cpu_count() or 1
    check_int(n, option, 1)
    if n > MAX_THREADS_PER_CPU * cpus:
        raise InputError(f"{n} threads on a machine with {cpus} CPUs (at most {MAX_THREADS_PER_CPU * cpus})", option)
    return n
