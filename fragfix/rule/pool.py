"""Worker processes for the learned rule: stretches of a file learn apart, so they run apart.

Each stretch of LEARN_ROWS fragments (learned.py) builds its own predictor from its own bytes and
decides alone: no stretch reads another's state, so they can run in any order, on any core, and
give the same bytes. Threads would not do: the predictor is thousands of numpy calls of a few
milliseconds each, and between them the GIL serialises the threads (two stretches on two threads
ran 1.2x faster than one thread with its experts spread; two processes run 2x).

`stretch_pool(workers)` opens a pool for the length of a run (repair_files); inside it, `run()`
sends stretches to the workers, and outside it (the library, tests, one stretch) they run here.
Workers are spawned, not forked (the parent may hold torch's threads; a fork copies their locks),
import numpy and the predictor only (no torch), leave SIGINT to the parent (which stops them and
cleans up; a worker never prints a traceback), and keep one thread each (the predictor's and
BLAS's): the pool is the parallelism, and two runs on a shared machine do not oversubscribe it.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Callable, Iterator

from fragfix.machine import default_cores
from fragfix.rule import experts

_active: ProcessPoolExecutor | None = None


def _init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    experts.THREADS = 1


@contextmanager
def stretch_pool(workers: int) -> Iterator[int]:
    """Open a pool of `workers` processes (0: one per core this process may use; 1: none, all
    work here) for the enclosed run; yields how many stretches run at once. Processes start at the
    first batch of two or more stretches, so a run over small files never pays for them."""
    global _active
    n = workers or default_cores()
    if n < 2 or _active is not None or not _spawn_safe():  # one core, a pool already open, or no way to spawn
        yield 1 if _active is None else _active._max_workers
        return
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_init)
    _active = pool
    ok = False
    try:
        yield n
        ok = True
    finally:
        _active = None
        # an error or an interrupt: the queued stretches are dropped and the ones in flight (a second
        # or two) finish. Terminating the workers instead raced the executor's own thread: with the
        # map's futures already cancelled it died marking them broken (CPython 3.11's terminate_broken
        # sets an exception on a cancelled future), and the process hung at exit (1 in 8 interrupts)
        try:
            pool.shutdown(wait=True, cancel_futures=not ok)
        except RuntimeError:
            # an interrupt inside the executor's own start (its manager thread made, not yet started:
            # "cannot join thread before it is started"): nothing manages the workers, so they are
            # stopped here; the interrupt, not this, is what the run reports
            if ok:
                raise
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()


def run(fn: Callable, jobs: list[tuple]) -> list:
    """[fn(*job) for job in jobs], in order; on the workers when a pool is open and there are two
    jobs or more. `fn` must be a module-level function (workers import it by name). A pool whose
    workers cannot start or die (a script spawn cannot re-run, a worker killed) is given up, and the
    jobs run here: the same results, one core."""
    global _active
    if _active is None or len(jobs) < 2:
        return [fn(*job) for job in jobs]
    try:
        with _signals_held(), _one_thread_each():  # the first map spawns the workers
            results = _active.map(fn, *zip(*jobs))
        return list(results)
    except BrokenProcessPool:
        _active.shutdown(wait=False, cancel_futures=True)
        _active = None
        return [fn(*job) for job in jobs]


# numpy's BLAS (a matrix product in the channel's view of surprises) starts a thread per core in
# every process unless told otherwise: two workers on two cores ran four spinning threads (250 files
# of 4 KB: 25 s, 42 s of CPU; one thread each: 20 s, 30 s). The same products, one thread each.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _one_thread_each() -> Iterator[None]:
    """Workers spawned inside this start with one BLAS/OpenMP thread each (they inherit the
    environment as it is when they start; the parent's own settings are put back after)."""
    old = {k: os.environ.get(k) for k in BLAS_THREADS}
    os.environ.update({k: "1" for k in BLAS_THREADS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held while jobs are submitted (which spawns the workers) and delivered
    after: an interrupt between a worker's launch and the parent's write of its start-up data left
    the worker reading a closed pipe, and its bootstrap (before _init) printed a traceback."""
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = [signal.getsignal(s) for s in sigs]
    if threading.current_thread() is not threading.main_thread() or None in old:
        yield  # handlers can only be set from the main thread, and one set outside Python cannot be put back
        return
    got: list[int] = []
    for s in sigs:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, h in zip(sigs, old):
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])  # the handler in place now decides what it means


def _spawn_safe() -> bool:
    """Whether spawned workers can start: they re-run the main module from its file, so a main
    read from standard input (no such file) rules them out; no file (-c, a notebook) is fine."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path is None or os.path.isfile(path)
