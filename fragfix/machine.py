"""The machine a run is on: how many cores it may use, and handing freed memory back.

No torch, no numpy: the CLI's option checks (config.py) and the pool (rule/pool.py) read these
before any work starts.
"""
from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its affinity: a container's or taskset's share): the most
    threads or workers an option may ask for."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_cores() -> int:
    """The cores an automatic setting (0) uses: those available, at most OMP_NUM_THREADS where it is
    set (the usual way to keep numerical programs to a share of a shared machine)."""
    cores = available_cores()
    try:
        limit = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return cores
    return max(1, min(cores, limit))


_LIBC = None


def release_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Repair allocates arrays of a different size for every window (the suspects vary); glibc
    keeps those freed pages, and peak RSS crept up with the file size. Trimming once per window
    costs well under a millisecond."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
