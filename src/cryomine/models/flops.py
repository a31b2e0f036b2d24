"""Cost and speed helpers: parameter / FLOP counts, a fast inference forward and a throughput benchmark.

Fast CPU inference = an eval-mode copy with batch norm folded into the convolutions
(:func:`prepare_for_inference`), ``torch.no_grad``, ``torch.autocast("cpu", dtype=torch.bfloat16)`` and model and
input in ``torch.channels_last_3d`` memory format (oneDNN's preferred layout for 3-D convolutions); see
:func:`infer`. Call :func:`keep_freed_memory` once per process as well: without it glibc hands every large
activation back to the OS and re-faults it on the next forward.

DSM-Net (C=22) costs 3.33 GFLOP per 40^3 subtomogram. Measured on the development VM (AMD EPYC, AVX-512 with
bf16, no AMX; shared with other jobs, load ~3 on 2 cores), batch 64, one intra-op thread, subtomograms/s
with / without :func:`keep_freed_memory`: fp32 31 / 12; fp32 + channels_last + folded BN 50 / 25;
bf16 + channels_last 67 / 31; bf16 + channels_last + folded BN 76 / 35. On a contended machine one thread
(``torch.set_num_threads(1)``) beat two (48/s): OpenMP barriers stall whenever the second core is taken.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import sys
import time
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.flop_counter import FlopCounterMode

from cryomine.errors import InputError
from cryomine.models.blocks import ModelOutput, ResidualBlock3d


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (optionally only trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _zyx(input_size: int | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(input_size, int):
        return (input_size,) * 3
    if len(input_size) != 3:
        raise InputError(f"input_size: expected an int or a (d, h, w) triple, got {input_size!r}")
    return tuple(int(s) for s in input_size)  # type: ignore[return-value]


def count_forward_flops(model: nn.Module, input_size: int | tuple[int, int, int] = 40) -> int:
    """FLOPs (2 per multiply-add, as counted by ``FlopCounterMode``) of one eval-mode forward of one subtomogram.

    ``input_size`` is ``s`` for an ``s^3`` subtomogram or ``(d, h, w)``. Counts convolutions, transposed
    convolutions and matrix products; element-wise ops (batch norm, ReLU, pooling) are not counted.
    """
    was_training = model.training
    param = next(model.parameters(), None)
    x = torch.zeros((1, 1, *_zyx(input_size)), device=param.device if param is not None else "cpu")
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode deep copy of ``model`` with every ``BatchNorm3d`` folded into the conv / deconv before it.

    Same outputs as ``model.eval()`` (up to float rounding), fewer memory passes; for inference only (the copy
    has no batch norm left to train).
    """
    fused = copy.deepcopy(model).eval()
    for mod in list(fused.modules()):
        if isinstance(mod, nn.Sequential):
            for i in range(len(mod) - 1):
                conv, bn = mod[i], mod[i + 1]
                if isinstance(conv, (nn.Conv3d, nn.ConvTranspose3d)) and isinstance(bn, nn.BatchNorm3d):
                    mod[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose3d))
                    mod[i + 1] = nn.Identity()
        elif isinstance(mod, ResidualBlock3d) and isinstance(mod.bn2, nn.BatchNorm3d):
            mod.conv2 = fuse_conv_bn_eval(mod.conv2, mod.bn2)
            mod.bn2 = nn.Identity()
    return fused


def prepare_for_inference(model: nn.Module, *, channels_last: bool = True, fuse_bn: bool = True) -> nn.Module:
    """Eval-mode copy of ``model`` for fast inference: batch norm folded (:func:`fuse_batchnorm`) and, with
    ``channels_last``, parameters in ``torch.channels_last_3d``. ``model`` itself is not changed."""
    fast = fuse_batchnorm(model) if fuse_bn else copy.deepcopy(model).eval()
    if channels_last:
        fast.to(memory_format=torch.channels_last_3d)
    return fast


def infer(model: nn.Module, x: Tensor, *, bf16: bool = True, channels_last: bool = True) -> ModelOutput:
    """One inference forward of ``x`` ``(n, 1, d, h, w)``; returns float32 contiguous outputs.

    Puts ``model`` in eval mode (and, with ``channels_last``, converts it in place to ``channels_last_3d``,
    harmless for later use), runs under ``torch.no_grad`` and, with ``bf16``, under CPU bfloat16 autocast.
    """
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
        if x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.no_grad(), autocast:
        out = model(x)
    return out.float()


_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc ``malloc`` keep freed memory for reuse instead of returning it to the OS (process-wide).

    PyTorch's CPU tensors come from ``malloc``; glibc serves the large ones (activations of a 64 x 40^3 batch are
    100+ MB) with fresh ``mmap`` pages and unmaps them on free, so every forward pass page-faults (zero-fills)
    its whole working set again; on the development VM that was ~45% of DSM-Net inference time. This sets
    ``M_MMAP_MAX = 0`` and a 2 GiB ``M_TRIM_THRESHOLD`` via ``mallopt``. Cost: the process keeps its peak
    memory. Opt-in; call it once at the start of an inference or training process. Returns ``False`` (and does
    nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def benchmark_throughput(
    model: nn.Module,
    input_size: int | tuple[int, int, int] = 40,
    batch_size: int = 64,
    *,
    bf16: bool = True,
    channels_last: bool = True,
    fuse_bn: bool = True,
    n_iter: int = 3,
    n_warmup: int = 1,
) -> float:
    """Inference throughput of ``model`` in subtomograms per second (best of ``n_iter`` timed batches).

    Times :func:`infer` of :func:`prepare_for_inference` ``(model, channels_last=channels_last, fuse_bn=fuse_bn)``
    on a seeded random ``(batch_size, 1, d, h, w)`` batch after ``n_warmup`` untimed batches.
    """
    if batch_size < 1 or n_iter < 1 or n_warmup < 0:
        raise InputError("benchmark: batch_size and n_iter must be >= 1 and n_warmup >= 0")
    model = prepare_for_inference(model, channels_last=channels_last, fuse_bn=fuse_bn)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, 1, *_zyx(input_size)), generator=g)
    for _ in range(n_warmup):
        infer(model, x, bf16=bf16, channels_last=channels_last)
    best = float("inf")
    for _ in range(n_iter):
        t0 = time.perf_counter()
        infer(model, x, bf16=bf16, channels_last=channels_last)
        best = min(best, time.perf_counter() - t0)
    return batch_size / best
