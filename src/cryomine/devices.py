"""The one place where cryomine chooses the torch device (CUDA when present, else the CPU) and the precision
(bfloat16 autocast only where the hardware has it natively)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX512-BF16 or AMX-BF16 flags in ``/proc/cpuinfo``).

    Without them oneDNN has to emulate bf16 (typically slower than float32), so automatic mode keeps float32.
    """
    global _NATIVE_BF16
    if _NATIVE_BF16 is None:
        try:
            flags = set(Path("/proc/cpuinfo").read_text(errors="ignore").split())
        except OSError:
            flags = set()
        _NATIVE_BF16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    return _NATIVE_BF16


_NATIVE_BF16: bool | None = None


#: On CPU, bf16 training is only automatic for inputs whose every side exceeds this (see :func:`bf16_training_safe`).
SMALL_INPUT_SIDE = 16


def bf16_training_safe(device: torch.device, input_zyx: Sequence[int]) -> bool:
    """False on CPU for inputs with a side <= 16 voxels.

    With torch 2.13 / oneDNN on an AVX512-BF16 CPU, the weight gradient of a 3x3x3 convolution on a 2x2x2 feature
    map under bf16 autocast is wrong (relative error ~1, run-to-run different); the networks' deepest 3x3x3
    convolutions see 2x2x2 maps for 16^3 (and 8^3) inputs. Forward passes are unaffected.
    """
    return device.type != "cpu" or min(int(s) for s in input_zyx) > SMALL_INPUT_SIDE


def resolve_bf16(requested: bool | None, device: torch.device, input_zyx: Sequence[int] | None = None,
                 *, training: bool = False) -> bool:
    """Whether to autocast to bfloat16 on ``device`` given the user's ``requested`` value (``None`` = automatic).

    Automatic: on for CUDA GPUs with bf16 and for CPUs with native bf16 instructions, except for training on CPU
    with small inputs (:func:`bf16_training_safe`). An explicit ``True``/``False`` is obeyed.
    """
    if requested is not None:
        return bool(requested)
    supported = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    if training and input_zyx is not None and not bf16_training_safe(device, input_zyx):
        return False
    return supported
