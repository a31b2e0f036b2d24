"""The one place where cryomine chooses the torch device: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from cryomine.errors import InputError

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
