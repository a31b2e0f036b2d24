"""The one place where a job's size is checked before it starts: memory and disk it would need, against what the
machine has. Absurd requests are refused with the estimate in the message ("needs 3.6 PiB of memory"), before
any output is created."""

from __future__ import annotations

import mmap
import os
import resource
import shutil
from pathlib import Path

import numpy as np

from cryomine.errors import InputError

__all__ = ["format_bytes", "available_memory_bytes", "check_memory", "check_disk", "process_rss_bytes", "release_pages"]

MEMORY_FRACTION = 0.9  # of the available memory a job may plan to use


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units up to YiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"):
        if abs(value) < 1024 or unit == "ZiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} YiB"  # pragma: no cover - beyond ZiB


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux/macOS
        return None


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_available() -> int | None:
    """What the memory cgroup (v2, else v1) of this process still allows, or None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and limit < 2**60:
            return max(limit - (usage or 0), 0)
    return None


def _address_space_available() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still allows this process to map, or None without a limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        size = next(int(ln.split()[1]) * 1024 for ln in status.splitlines() if ln.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError, IndexError):
        size = 0
    return max(soft - size, 0)


def available_memory_bytes() -> int:
    """Memory available to a new job: the least of ``MemAvailable`` (``/proc/meminfo``; the physical memory
    elsewhere), what the memory cgroup still allows (containers, batch schedulers) and what ``ulimit -v`` leaves
    this process."""
    found = [v for v in (_meminfo_available(), _cgroup_available(), _address_space_available()) if v is not None]
    return min(found) if found else 2**63


def check_memory(needed: float, what: str, option: str | None = None) -> None:
    """Refuse (:class:`InputError` naming ``option``) a job whose working memory ``needed`` (bytes) exceeds
    :data:`MEMORY_FRACTION` of the available memory."""
    have = available_memory_bytes()
    if needed > MEMORY_FRACTION * have:
        raise InputError(f"{what} needs {format_bytes(needed)} of memory; {format_bytes(have)} is available", option)


def check_disk(path: str | os.PathLike[str], needed: float, what: str, option: str | None = None) -> None:
    """Refuse a job whose output ``needed`` (bytes) would not fit the free space of ``path``'s file system."""
    folder = Path(path).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InputError(f"{what} needs {format_bytes(needed)} of disk; {format_bytes(free)} is free in {folder}", option)


def process_rss_bytes() -> int:
    """This process's resident memory now (bytes; ``/proc/self/statm``), or 0 where that is not available
    (not Linux)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def release_pages(*arrays: np.ndarray) -> None:
    """Let the kernel drop the resident pages of memory-mapped arrays (written ones flushed to their files first), so
    that a map read or written slab by slab does not accumulate in this process's resident memory; a no-op for
    in-memory arrays. The data stay in the files; the next access reads them back."""
    for arr in arrays:
        handle = getattr(arr, "_mmap", None)  # numpy's memmap keeps its mmap object here (views included)
        if not isinstance(handle, mmap.mmap):
            continue
        if arr.flags.writeable:
            handle.flush()
        if hasattr(mmap, "MADV_DONTNEED"):
            handle.madvise(mmap.MADV_DONTNEED)
