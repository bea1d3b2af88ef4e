"""Streaming repair of files: chunks in, decisions, an atomic output, a report of every change.

Memory stays flat whatever the size: the input is read in chunks of `batch_fragments` fragments,
each chunk is repaired with `decide()` and written to a temporary file that only replaces the
target at the end. The output has exactly the input's length; every byte the rule did not change
is copied verbatim. Unknown bytes come from a ddrescue mapfile and/or runs of zeros.
"""
from __future__ import annotations

import bisect
import hashlib
import os
import stat
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .atomic import atomic_write, check_output_path
from .decide import RepairConfig, decide
from .errors import InvalidInput, IOFailure
from .mapfile import format_mapfile, read_mapfile
from .report import ReportWriter, empty_totals

F = 512
Progress = Callable[[int], None]  # bytes done since the last call


@dataclass
class Job:
    """One input and where its repair goes (None with --dry-run)."""
    src: Path
    dst: Path | None
    mapfile: Path | None = None
    map_out: Path | None = None


@dataclass
class FileResult:
    input: str
    output: str | None
    totals: dict
    seconds: float
    changed_ranges: list = field(default_factory=list)


def check_input(path: Path) -> int:
    """A readable, non-empty regular file: its size. Otherwise a one-line InvalidInput."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    if path.is_dir():
        raise InvalidInput(f"is a folder, expected a file (use -r for folders): {path}")
    if not path.is_file():
        raise InvalidInput(f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise InvalidInput(f"file is not readable (permission denied): {path}")
    size = path.stat().st_size
    if size == 0:
        raise InvalidInput(f"file is empty, nothing to repair: {path}")
    return size


def zero_run_mask(window: np.ndarray, n: int) -> np.ndarray:
    """True where a byte lies in a run of at least n zeros (within the window)."""
    z = (window == 0).astype(np.int32)
    if n <= 1:
        return z.astype(bool)
    if len(z) < n:
        return np.zeros(len(z), dtype=bool)
    c = np.concatenate([[0], np.cumsum(z)])
    full = (c[n:] - c[:-n]) == n  # full[j]: window[j:j+n] all zero
    # position i is covered if some full[j] with i-n+1 <= j <= i
    cf = np.concatenate([[0], np.cumsum(full)])
    i = np.arange(len(z))
    lo = np.clip(i - n + 1, 0, len(full))
    hi = np.clip(i + 1, 0, len(full))
    return (cf[hi] - cf[lo]) > 0


class UnknownMap:
    """Which bytes of a file are unknown: mapfile bad ranges (sorted, merged)."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges
        self.starts = [r[0] for r in ranges]

    def mask(self, start: int, end: int) -> np.ndarray:
        m = np.zeros(end - start, dtype=bool)
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while i < len(self.ranges) and self.ranges[i][0] < end:
            a, b = self.ranges[i]
            if b > start:
                m[max(a, start) - start:min(b, end) - start] = True
            i += 1
        return m


def repair_file(model, job: Job, cfg: RepairConfig, report: ReportWriter, force: bool, bf16: bool, progress: Progress | None = None, preserve: bool = True) -> FileResult:
    """Repair one file into job.dst (atomically) and stream its changes into `report`."""
    size = check_input(job.src)
    if job.dst is not None:
        check_output_path(job.dst, force, (job.src,))
    for extra in (job.map_out,):
        if extra is not None:
            check_output_path(extra, force, (job.src,))
    unknown = UnknownMap(read_mapfile(job.mapfile, size).bad_ranges() if job.mapfile else [])
    st = job.src.stat()
    report.begin_file({"input": str(job.src), "output": None if job.dst is None else str(job.dst), "size": size})
    t0 = time.perf_counter()
    totals = empty_totals()
    totals["size"] = size
    ranges: list[list[int]] = []
    chunk = cfg.batch_fragments * F
    margin = max(cfg.zero_runs - 1, 0)
    with ExitStack() as local:
        out = None
        if job.dst is not None:
            mode = stat.S_IMODE(st.st_mode) if preserve else None
            out = local.enter_context(atomic_write(job.dst, force=force, mode=mode))
        try:
            src = local.enter_context(open(job.src, "rb", buffering=0))
        except OSError as e:
            raise InvalidInput(f"cannot open {job.src}: {e.strerror}") from None
        prev_tail = b""
        data = _read(src, chunk, job.src)
        pos = 0
        while data:
            ahead = _read(src, chunk, job.src)
            n = len(data)
            arr = np.frombuffer(data, dtype=np.uint8)
            unk = unknown.mask(pos, pos + n)
            if cfg.zero_runs:
                window = np.frombuffer(prev_tail + data + ahead[:margin], dtype=np.uint8)
                unk |= zero_run_mask(window, cfg.zero_runs)[len(prev_tail):len(prev_tail) + n]
            k = -(-n // F)
            frags = torch.zeros(k * F, dtype=torch.uint8)
            frags[:n] = torch.from_numpy(arr.copy())
            umask = torch.zeros(k * F, dtype=torch.bool)
            umask[:n] = torch.from_numpy(unk)
            lengths = torch.full((k,), F)
            lengths[-1] = n - (k - 1) * F
            d = decide(model, frags.view(k, F), umask.view(k, F), cfg, bf16, lengths)
            new = d.fragments.reshape(-1)[:n].numpy()
            changed = d.changed.reshape(-1)[:n].numpy()
            _account(totals, d, k, n, unk, changed)
            idx = np.flatnonzero(changed)
            report.changes(idx + pos, arr[idx], new[idx], d.confidence.reshape(-1)[:n].numpy()[idx], unk[idx])
            _ranges(ranges, np.flatnonzero(changed | unk) + pos)
            if out is not None:
                out.write(new.tobytes())
            pos += n
            if progress:
                progress(n)
            prev_tail = data[-margin:] if margin else b""
            data = ahead
        if out is not None and preserve:
            out.flush()
            os.utime(out.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
    if pos != size:
        raise IOFailure(f"{job.src} changed size while being read ({size} -> {pos} bytes)")
    seconds = time.perf_counter() - t0
    report.end_file(totals, {"seconds": round(seconds, 3)})
    if job.map_out is not None:
        text = format_mapfile([tuple(r) for r in ranges], size, f"bytes guessed by fragfix repair of {job.src.name}")
        with atomic_write(job.map_out, force=force) as f:
            f.write(text.encode())
    return FileResult(str(job.src), None if job.dst is None else str(job.dst), totals, seconds, ranges)


def _read(f, n: int, path: Path) -> bytes:
    try:
        parts, got = [], 0
        while got < n:
            b = f.read(n - got)
            if not b:
                break
            parts.append(b)
            got += len(b)
        return b"".join(parts)
    except OSError as e:
        raise IOFailure(f"reading {path} failed: {e.strerror}") from None


def _account(totals: dict, d, k: int, n: int, unk: np.ndarray, changed: np.ndarray) -> None:
    totals["fragments"] += k
    unk_changed = int((changed & unk).sum())
    totals["changed"] += int(changed.sum())
    totals["unknown_filled"] += unk_changed
    totals["suspected"] += int(changed.sum()) - unk_changed
    totals["unknown_bytes"] += int(unk.sum())
    per_frag = np.zeros(k * F, dtype=bool)
    per_frag[:n] = changed
    totals["fragments_touched"] += int(per_frag.reshape(k, F).any(1).sum())


def _ranges(ranges: list[list[int]], offsets: np.ndarray) -> None:
    """Append sorted offsets to a list of [start, end) ranges, merging neighbours."""
    if len(offsets) == 0:
        return
    breaks = np.flatnonzero(np.diff(offsets) != 1)
    starts = np.concatenate([[offsets[0]], offsets[breaks + 1]])
    ends = np.concatenate([offsets[breaks], [offsets[-1]]]) + 1
    for a, b in zip(starts.tolist(), ends.tolist()):
        if ranges and ranges[-1][1] == a:
            ranges[-1][1] = b
        else:
            ranges.append([a, b])


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def merge_totals(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def plan_jobs(inputs: list[Path], output: Path | None, recursive: bool, dry_run: bool,
              mapfile: Path | None = None, map_out: Path | None = None) -> list[Job]:
    """Inputs + -o -> jobs. One file: -o names the output file. Several, or -r: -o is a folder and
    each output keeps its path relative to the input folder it came from."""
    if not inputs:
        raise InvalidInput("no input files given")
    pairs: list[tuple[Path, Path]] = []  # (file, path relative to its root)
    for p in map(Path, inputs):
        if p.is_dir():
            if not recursive:
                raise InvalidInput(f"is a folder, expected a file (use -r for folders): {p}")
            found = sorted(q for q in p.rglob("*") if q.is_file() and not q.is_symlink())
            pairs += [(q, q.relative_to(p)) for q in found]
        else:
            pairs.append((p, Path(p.name)))
    single = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if (mapfile or map_out) and not single:
        raise InvalidInput("--mapfile and --map-out take exactly one input file")
    if output is None and not dry_run:
        raise InvalidInput("an output is needed: -o OUTPUT (or --dry-run to write only the report)")
    if single:
        return [Job(pairs[0][0], None if dry_run else output, mapfile, map_out)]
    if not pairs:
        raise InvalidInput("no files found in the input folders")
    rels = [r for _, r in pairs]
    if len(set(rels)) != len(rels):
        raise InvalidInput("two inputs would write the same output name; repair them separately")
    if dry_run:
        return [Job(src, None) for src, _ in pairs]
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"with several inputs, -o must be a folder: {output}")
    if not output.exists():
        if not output.parent.is_dir():
            raise InvalidInput(f"output folder's parent does not exist: {output.parent}")
        output.mkdir()
    for parent in sorted({(output / rel).parent for _, rel in pairs}):
        parent.mkdir(parents=True, exist_ok=True)
    return [Job(src, output / rel) for src, rel in pairs]


def repair_files(jobs: list[Job], model_path: Path, cfg: RepairConfig, report_path: Path | None = None,
                 force: bool = False, progress: Progress | None = None, preserve: bool = True,
                 on_start: Callable[[int, dict], None] | None = None) -> dict:
    """Repair every job with one model; returns the summary (totals, per-file totals, model, speed)."""
    from .checkpoints import load_model
    from .runtime import resolve_device, use_bf16
    device = resolve_device(cfg.device)
    model, info = load_model(model_path, device)
    bf16 = use_bf16(device, cfg.precision)
    total_bytes = sum(check_input(j.src) for j in jobs)
    if report_path is not None:
        check_output_path(report_path, force, tuple(j.src for j in jobs))
    model_meta = {"path": str(model_path), "head": model.config.head, "sha256": file_sha256(model_path)}
    header = {"model": model_meta, "threshold": cfg.threshold, "floor": cfg.floor,
              "aggressive": cfg.aggressive, "zero_runs": cfg.zero_runs}
    if on_start:
        on_start(total_bytes, model_meta)
    t0 = time.perf_counter()
    results = []
    with ExitStack() as stack:
        report = ReportWriter(report_path, stack, force, header, many=len(jobs) > 1)
        for job in jobs:
            results.append(repair_file(model, job, cfg, report, force, bf16, progress, preserve))
        totals = empty_totals()
        for r in results:
            totals = merge_totals(totals, r.totals)
        report.close(totals)
    seconds = time.perf_counter() - t0
    return {**header, "report": None if report_path is None else str(report_path), "totals": totals,
            "seconds": round(seconds, 3), "bytes_per_s": total_bytes / seconds if seconds else 0.0,
            "files": [{"input": r.input, "output": r.output, "totals": r.totals} for r in results]}
