"""Streaming repair of files: chunks in, decisions, atomic outputs, a report of every change.

Memory stays flat whatever the size: inputs are read in chunks, fragments from one or many files
are batched into each `decide()` call (so a folder of small files runs nearly as fast as one
large file), and results stream to temporary files that replace their targets only when each
file is complete. Outputs have exactly the input's length; every byte the rule did not change is
copied verbatim. Unknown bytes come from a ddrescue mapfile and/or runs of zeros.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from fragfix.files.atomic import SETID, Batch, atomic_write, keep_times, kept_mode
from fragfix.recovery.blockmap import BlockMap
from fragfix.recovery.checkpoint import Model, is_bundled
from fragfix.recovery.copies import fills_for
from fragfix.rule.decision import Decision, cut
from fragfix.config import FRAGMENT_SIZE, RepairConfig, Runtime
from fragfix.machine import default_cores, release_memory
from fragfix.errors import InvalidInput, IOFailure
from fragfix.rule.learned import LEARN_ROWS, applies, decide_window, rule_constants
from fragfix.rule.pool import stretch_pool
from fragfix.files.jobs import Job, check_input, check_outputs, make_output_folders, open_input, read_upto
from fragfix.files.mapfile import format_mapfile, read_mapfile
from fragfix.files.report import ReportWriter, empty_totals
from fragfix.files.unknown import Ranges, UnknownMap, zero_run_mask  # noqa: F401  (re-exported)
from fragfix.recovery.verified import repair_checksummed, sniff

Progress = Callable[[int], None]  # bytes done since the last call


class FileRepair:
    """One file's side of the pipeline: its input chunks, its atomic output, totals and report."""

    def __init__(self, job: Job, size: int, cfg: RepairConfig, report: ReportWriter, outer: ExitStack,
                 batch: Batch, force: bool, preserve: bool, blocks: bool = False, references: tuple = ()):
        self.job, self.size, self.cfg, self.report, self.batch = job, size, cfg, report, batch
        self.blocks = BlockMap(size) if blocks else None  # only --plot needs them
        self.force, self.preserve = force, preserve
        self.unknown = UnknownMap(read_mapfile(job.mapfile, self.size).bad_ranges() if job.mapfile else [])
        # whole unknown runs whose content survives elsewhere (the image, references): found first
        self.fills = fills_for(job.src, size, self.unknown, references, cfg.copy_search) if self.unknown.ranges else None
        self.pending_copies: dict[int, tuple] = {}  # piece offset -> (bytes as read, copied mask, unknown mask)
        self.stat = job.src.stat()
        self.stack = outer.enter_context(ExitStack())  # errors unwind through `outer`: temp files vanish
        self.out = None
        self.totals = {**empty_totals(), "size": self.size}
        self.ranges = Ranges() if job.map_out is not None else None  # only --map-out needs them
        self.done = 0
        self.t0 = None
        self.dropped_setid = False

    def chunks(self, chunk: int) -> Iterator[tuple[int, bytes, np.ndarray, bool]]:
        """(offset, bytes, unknown mask, last) pieces of the input, read lazily (one ahead: a zero
        run may cross into the next piece, and the last piece is known as such)."""
        margin = max(self.cfg.zero_runs - 1, 0)
        f = self.stack.enter_context(open_input(self.job.src, self.size))
        left = self.size  # read exactly the size checked: a file that grows cannot grow the output

        def take() -> bytes:
            nonlocal left
            b = read_upto(f, min(chunk, left), self.job.src)
            left -= len(b)
            if len(b) < min(chunk, left + len(b)):
                raise IOFailure(f"{self.job.src} shrank while being read (expected {self.size} bytes)")
            if left == 0 and read_upto(f, 1, self.job.src):
                raise IOFailure(f"{self.job.src} grew while being read (expected {self.size} bytes)")
            return b
        prev, data, pos = b"", take(), 0
        while data:
            ahead = take() if left else b""
            unk = self.unknown.mask(pos, pos + len(data))
            if self.cfg.zero_runs:
                window = np.frombuffer(prev + data + ahead[:margin], dtype=np.uint8)
                unk |= zero_run_mask(window, self.cfg.zero_runs)[len(prev):len(prev) + len(data)]
            shown, unk_shown, copied = (data, unk, None) if self.fills is None else self.fills.apply(pos, data, unk)
            if copied is not None:  # the model sees the copies in place; consume() reports them
                self.pending_copies[pos] = (data, copied, unk, shown)
            yield pos, shown, unk_shown, not ahead
            pos += len(data)
            prev = data[-margin:] if margin else b""
            data = ahead

    def start(self) -> None:
        """Open the report entry and the output (staged: it appears with the run's other outputs)."""
        self.t0 = time.perf_counter()
        self.report.begin_file({"input": str(self.job.src), "size": self.size,
                                "output": None if self.job.dst is None else str(self.job.dst)})
        if self.job.dst is not None:
            # the mode is asked for at the end: only then is it known whether any byte changed
            mode = (lambda: kept_mode(self.stat, bool(self.totals["changed"]))) if self.preserve else None
            self.out = self.stack.enter_context(atomic_write(self.job.dst, force=self.force, mode=mode,
                                                              batch=self.batch))

    def consume(self, pos: int, data: bytes, unk: np.ndarray, new: np.ndarray, changed: np.ndarray,
                conf: np.ndarray, clear: int = 0) -> None:
        if self.t0 is None:
            self.start()
        copied_any = None
        if pos in self.pending_copies:  # bytes filled from a copy before the model saw the piece
            data, copied_any, unk, shown = self.pending_copies.pop(pos)
            new = np.where(copied_any, np.frombuffer(shown, dtype=np.uint8), new)  # copies stand, whatever the gate
        arr = np.frombuffer(data, dtype=np.uint8)
        copied = None if copied_any is None else copied_any & (new != arr)
        if copied is not None:
            changed = changed & ~copied_any
        t = self.totals
        t["fragments"] += -(-len(data) // FRAGMENT_SIZE)
        every = changed if copied is None else changed | copied  # copies change fragments too
        t["fragments_touched"] += len(np.unique(np.flatnonzero(every) // FRAGMENT_SIZE))  # pieces start a fragment
        t["clear_errors"] += clear
        n_copied = 0 if copied is None else int(copied.sum())
        t["changed"] += int(changed.sum()) + n_copied
        t["copied"] += 0 if copied_any is None else int(copied_any.sum())
        t["unknown_filled"] += int((changed & unk).sum()) + n_copied
        t["suspected"] = t["changed"] - t["unknown_filled"]
        t["unknown_bytes"] += int(unk.sum())
        if copied is not None:
            idx = np.flatnonzero(copied)
            conf_copy = self.fills.confidence(pos, len(arr))
            self.report.changes(idx + pos, arr[idx], new[idx], conf_copy[idx], unk[idx], reason="copy")
        idx = np.flatnonzero(changed)
        self.report.changes(idx + pos, arr[idx], new[idx], conf[idx], unk[idx])
        if self.ranges is not None:
            self.ranges.add(np.flatnonzero(changed | unk) + pos)
        if self.blocks is not None:
            if copied_any is not None:
                self.blocks.add("copied", np.flatnonzero(copied_any) + pos)
                unk = unk & ~copied_any
            self.blocks.add_repair(pos, changed, unk)
        if self.out is not None:
            self.out.write(new.tobytes())
        self.done += len(data)

    def finish(self) -> dict:
        if self.done != self.size:
            raise IOFailure(f"{self.job.src} changed size while being read ({self.size} -> {self.done} bytes)")
        setid = self.stat.st_mode & SETID
        self.dropped_setid = bool(self.out is not None and self.preserve and setid and self.totals["changed"])
        if self.out is not None and self.preserve:
            keep_times(self.out, self.stat)
        self.stack.close()  # the output is complete: staged, moved into place with the run's others
        seconds = time.perf_counter() - self.t0
        copies = [c.to_dict() for c in self.fills.copies] if self.fills is not None else []
        self.report.end_file(self.totals, {"seconds": round(seconds, 3), **({"copies": copies} if copies else {})})
        if self.job.map_out is not None:
            text = format_mapfile(list(zip(self.ranges.starts, self.ranges.ends)), self.size,
                                  f"bytes guessed by fragfix repair of {self.job.src.name}")
            with atomic_write(self.job.map_out, force=self.force, batch=self.batch) as f:
                f.write(text.encode())
        return {"input": str(self.job.src), "output": None if self.job.dst is None else str(self.job.dst),
                "totals": self.totals, "dropped_setid": self.dropped_setid,
                **({"copies": copies} if copies else {}),
                **({"blocks": self.blocks.to_dict()} if self.blocks is not None else {})}


def _decide(model: Model, frags: np.ndarray, unknown: np.ndarray, cfg: RepairConfig, lengths: np.ndarray,
            pieces: np.ndarray | None) -> Decision:
    """The rule on a window, numpy in and out: the learned rule here, the model's (decide.py) on tensors."""
    if applies(cfg.rule, model.info["head"]):
        return decide_window(frags, unknown, cfg, lengths, pieces)
    import torch
    from fragfix.rule.decide import decide
    t = torch.from_numpy
    d = decide(model.scorer(), t(frags), t(unknown), cfg, t(lengths), None if pieces is None else t(pieces))
    return Decision(*(x.numpy() for x in d))


def _run_batch(model: Model, pending: list, cfg: RepairConfig, progress: Progress | None) -> list[dict]:
    """One decision over the fragments of every pending piece (from one or several files)."""
    frags, unknown, lengths, counts = cut([(data, unk) for _, _, data, unk, _ in pending])
    pieces = np.repeat(np.arange(len(counts)), counts)
    d = _decide_sparse(model, frags, unknown, cfg, lengths, pieces)
    finished, row = [], 0
    for (fr, pos, data, unk, last), c in zip(pending, counts):
        n = len(data)
        new = d.fragments[row:row + c].reshape(-1)[:n]
        changed = d.changed[row:row + c].reshape(-1)[:n]
        conf = d.confidence[row:row + c].reshape(-1)[:n]
        fr.consume(pos, data, unk, new, changed, conf, int(d.clear[row:row + c].sum()))
        if progress:
            progress(n)
        if last:
            finished.append(fr.finish())
        row += c
    return finished


def _pass_through(fr: FileRepair, pos: int, data: bytes, unk: np.ndarray, last: bool, progress) -> list[dict]:
    """A piece with nothing to fill when only unknown bytes may change: copied as it is, no model."""
    arr = np.frombuffer(data, dtype=np.uint8)
    fr.consume(pos, data, unk, arr, np.zeros(len(arr), dtype=bool), np.zeros(len(arr), dtype=np.float32))
    if progress:
        progress(len(data))
    return [fr.finish()] if last else []


GAP_CONTEXT = 128  # fragments (64 KB) each side of a gap decided with it, when only gaps change


def _decide_sparse(model: Model, frags: np.ndarray, unknown: np.ndarray, cfg: RepairConfig,
                   lengths: np.ndarray, pieces: np.ndarray | None = None) -> Decision:
    """The rule on the rows that matter. When only unknown bytes may change (a mapfile), those are
    the gaps and GAP_CONTEXT rows each side (context for the model and the counts), and a window
    without a gap needs nothing. Otherwise every row but those deep inside runs of zeros: a zero
    fragment with no unknown byte and zero neighbours has nothing near it to repair from or to
    repair, and sparse images and disk dumps are mostly such rows."""
    if cfg.only_unknown and not unknown.any():  # only gaps change, and this window has none
        return Decision(frags, np.zeros_like(unknown), np.zeros(frags.shape, np.float32), np.zeros(len(frags), np.int64))
    if cfg.only_unknown and cfg.rule == "learned":  # the window's own predictor learns from all of it
        return _decide(model, frags, unknown, cfg, lengths, pieces)
    if cfg.only_unknown:  # only the gaps change: the rows around them are context enough
        gap = np.r_[0, np.cumsum(unknown.any(1))]  # rows with a gap among the first i
        i = np.arange(len(frags))
        deep = gap[np.minimum(i + GAP_CONTEXT + 1, len(frags))] - gap[np.maximum(i - GAP_CONTEXT, 0)] == 0
    else:
        quiet = ~(frags.any(1) | unknown.any(1))  # (k,) all zero, nothing unknown
        deep = quiet.copy()
        deep[1:] &= quiet[:-1]
        deep[:-1] &= quiet[1:]
    if not deep.any():
        return _decide(model, frags, unknown, cfg, lengths, pieces)
    keep = np.flatnonzero(~deep)
    out = Decision(frags.copy(), np.zeros_like(unknown), np.full(frags.shape, np.nan, np.float32),
                   np.zeros(len(frags), np.int64))
    if len(keep):
        d = _decide(model, frags[keep], unknown[keep], cfg, lengths[keep], None if pieces is None else pieces[keep])
        for whole, part in zip(out, d):
            whole[keep] = part
    return out


def repair_files(jobs: list[Job], model_path: Path, cfg: RepairConfig, report_path: Path | None = None,
                 force: bool = False, progress: Progress | None = None, preserve: bool = True,
                 on_start: Callable[[int, dict], None] | None = None, plot: Path | None = None,
                 runtime: Runtime | None = None, references: tuple = (),
                 on_search: Callable[[str | None, int], None] | None = None,
                 draw: Callable[[dict, Path, object], None] | None = None) -> dict:
    """Repair every job with one model; returns the summary (totals, per-file totals, model, speed).
    With `plot`, each file's block map is kept and `draw(summary, plot, batch)` draws it there (the
    CLI passes pictures.repair_map: the library draws nothing itself), committed with the run's other
    outputs. `on_search(name, candidates)` hears how a long search of a checksummed file goes (and
    `(None, 0)` when it ends)."""
    if plot is not None and draw is None:
        raise ValueError("a plot path needs a draw function")
    blocks = plot is not None
    if any(j.mapfile for j in jobs) and not cfg.correct_good:  # a mapfile is the truth about good bytes
        cfg = replace(cfg, only_unknown=True)
    runtime = runtime or Runtime()
    model = Model(model_path, runtime)
    # loaded now where it will run, or where it is the user's own (every tensor checked against its
    # config before any work); the bundled model's header and weights are checked above, and it loads
    # only if a checksummed file asks it
    if not applies(cfg.rule, model.info["head"]) or runtime.device not in ("auto", "cpu") or not is_bundled(model_path):
        model.scorer()
    window = cfg.window_fragments  # fragments per decide(): the model batches inside, context pools across
    workers = runtime.threads or default_cores()
    if cfg.rule == "learned" and window % LEARN_ROWS == 0:  # stretches keep their places: same bytes out
        window = max(window, LEARN_ROWS * workers)  # one stretch per worker in every window
    # references: (path, mapfile path or None); the mapfile must describe the reference's size
    check_outputs(jobs, report_path, force, model_path, plot,
                  tuple(p for r in references for p in r if p is not None))
    references = tuple((Path(p), read_mapfile(m, check_input(p)) if m else None) for p, m in references)
    for r, _ in references:
        check_input(r)
        # the input itself (any path to it) is no evidence: its bytes at the same offset are the stale ones
        if any(os.path.samefile(r, j.src) for j in jobs):
            raise InvalidInput(f"--reference {r} is the input itself; a reference must be another copy")
    sizes = [check_input(j.src) for j in jobs]  # every input checked before any work
    total_bytes = sum(sizes)
    merging = cfg.formats and not cfg.zero_runs
    if references and not any(j.mapfile for j in jobs) and not (merging and any(
            sniff(j.src, s) for j, s in zip(jobs, sizes))):  # a reference nothing would read is a mistake
        raise InvalidInput("--reference without --mapfile merges damaged copies of gzip, zlib, zip and PNG files "
                           "(and PDF); none of the inputs is one: give the image's --mapfile to fill its unknown bytes")
    model_meta = model.info
    header = {"model": model_meta, **cfg.gate(), "runtime": model.runtime_info(workers), "zero_runs": cfg.zero_runs,
              "formats": {"on": cfg.formats, "budget_s": cfg.format_budget, "accept_probable": cfg.accept_probable}}
    if cfg.rule == "learned":
        header["rule_constants"] = rule_constants()
    if on_start:
        on_start(total_bytes, model_meta)
    t0 = time.perf_counter()
    files: list[dict] = []
    with ExitStack() as outer:
        if cfg.rule == "learned":  # stretches on worker processes (pool.py); stopped first if the run fails
            outer.enter_context(stretch_pool(workers))
        batch = outer.enter_context(Batch(final=True))  # exits last: all outputs move into place together, or none
        report = ReportWriter(report_path, outer, force, header, many=len(jobs) > 1, batch=batch)
        make_output_folders(jobs, batch)
        pending, count = [], 0
        for job, size in zip(jobs, sizes):
            fmt = sniff(job.src, size) if cfg.formats and job.mapfile is None and not cfg.zero_runs else None
            if (fmt is not None or size == 0) and pending:  # whole-file paths: the report stays in file order
                files += _run_batch(model, pending, cfg, progress)
                pending, count = [], 0
            if fmt is not None:  # checksummed: verified search, not the gate
                tick = None if on_search is None else (lambda n, name=job.src.name: on_search(name, n))
                files.append(repair_checksummed(job, size, fmt, report, batch, force, preserve, cfg.format_budget,
                                                cfg.accept_probable, model.surprise, tick, blocks=blocks,
                                                others=[p for p, _ in references]))
                if on_search is not None:
                    on_search(None, 0)  # the search is over
                if progress:
                    progress(size)
                continue
            fr = FileRepair(job, size, cfg, report, outer, batch, force, preserve, blocks, tuple(references))
            if size == 0:  # an empty file repairs to an empty file
                fr.start()
                files.append({**fr.finish(), "empty": True})
                continue
            for piece in fr.chunks(window * FRAGMENT_SIZE):  # (offset, bytes, unknown mask, last)
                pos, data, unk, last = piece
                if cfg.only_unknown and not pending and not unk.any():  # nothing to fill: straight through
                    files += _pass_through(fr, pos, data, unk, last, progress)
                    continue
                pending.append((fr, *piece))
                count += -(-len(piece[1]) // FRAGMENT_SIZE)
                if count >= window:
                    gaps = any(p[3].any() for p in pending)
                    files += _run_batch(model, pending, cfg, progress)
                    pending, count = [], 0
                    if gaps or not cfg.only_unknown:  # a window that ran the model: hand its pages back
                        release_memory()
        if pending:
            files += _run_batch(model, pending, cfg, progress)
        totals = empty_totals()
        for f in files:
            totals = {k: totals[k] + f["totals"][k] for k in totals}
        report.close(totals)
        if plot is not None:
            draw({"files": files, "totals": totals}, plot, batch)
    seconds = time.perf_counter() - t0
    return {**header, "report": None if report_path is None else str(report_path),
            "plot": None if plot is None else str(plot), "totals": totals,
            "seconds": round(seconds, 3), "bytes_per_s": total_bytes / seconds if seconds else 0.0, "files": files}
