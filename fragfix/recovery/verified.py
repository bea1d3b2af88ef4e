"""The repair path for checksummed files (gzip, zlib, zip, PNG): search and verification, no gate.

`repair_files` sends a file here when its content is one of these formats. The whole file is
read (these are searched, not streamed; up to MAX_BYTES), `formats.repair` looks for the edits
that make every check pass, and the output gets them only when the result is verified (or, with
`accept_probable`, probable). Otherwise the output is the input, byte for byte, and the report says
which member, entry or chunk is damaged and where. The model takes part as a scorer: how
implausible it finds each decoded byte decides where the search looks first.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fragfix import formats
from fragfix.files.atomic import SETID, atomic_write, keep_times, kept_mode
from fragfix.recovery.blockmap import BlockMap
from fragfix.errors import IOFailure
from fragfix.files.jobs import Job, open_input, read_upto
from fragfix.files.report import empty_totals
from fragfix.recovery.salvage import EXACT, SalvageConfig, losses_of, salvage_data

MAX_BYTES = 256 << 20   # larger checksummed files take the streaming path (left alone by the entropy gate)
HEAD, TAIL = 4096, 65557  # enough to recognise every format: magic at the start, zip's directory at the end


def sniff(path: Path, size: int) -> str | None:
    """The checksummed format of a file by its content (start and end), or None."""
    if size > MAX_BYTES:
        return None
    try:
        with open_input(path, size) as f:
            head = read_upto(f, HEAD, path)
            if size > HEAD + TAIL:
                f.seek(size - TAIL)
                head += read_upto(f, TAIL, path)
            else:
                head += read_upto(f, size - len(head), path)
    except OSError as e:
        raise IOFailure(f"reading {path} failed: {e.strerror}") from None
    return formats.detect(head)


def _read_whole(path: Path, size: int) -> bytes:
    try:
        with open_input(path, size) as f:
            data = read_upto(f, size + 1, path)
    except OSError as e:
        raise IOFailure(f"reading {path} failed: {e.strerror}") from None
    if len(data) != size:
        raise IOFailure(f"{path} changed size while being read ({size} -> {len(data)} bytes)")
    return data


def salvage_hint(data: bytes, fmt: str) -> dict:
    """What `fragfix salvage` would get out of a file verified repair cannot restore: content bytes
    exact (decoded from input runs of 512 zeros do not mark lost) and in all, without guessing."""
    outs = salvage_data(data, fmt, losses_of(data, None, 512), SalvageConfig(fill=False))
    return {"exact": int(sum((st == EXACT).sum() for _, st in outs)), "content": int(sum(len(st) for _, st in outs))}


def repair_checksummed(job: Job, size: int, fmt: str, report, batch, force: bool, preserve: bool, budget_s: float,
                       accept_probable: bool, scorer_of=None, tick=None, blocks: bool = False,
                       others: list[Path] = ()) -> dict:
    """One checksummed file: checked, searched (merged first with the `others` of its size: other
    damaged copies of it, --reference), written if restored, reported. `scorer_of()` gives the
    search its scorer (the model's view); it is asked only for a file some check fails, so a run
    over intact archives never loads the model."""
    t0 = time.perf_counter()
    st = job.src.stat()
    data = _read_whole(job.src, size)
    copies = tuple(_read_whole(p, size) for p in others if p.stat().st_size == size)
    t1 = time.perf_counter()
    result = formats.check(data, fmt)  # most files on a disk are intact: checked once, and no model
    result.seconds = time.perf_counter() - t1
    if result.status != "intact" or copies:
        scorer = scorer_of() if scorer_of is not None and result.status != "intact" else None
        result = formats.repair(data, fmt, budget_s, scorer, tick, others=copies)
    take = result.status == "restored" or (result.status == "probable" and accept_probable)
    edits = result.edits if take else []
    removed = np.array(result.removed if take else [], np.int64)  # (text-mode damage: inserted CRs)
    out = result.output(data) if take else data
    info = result.to_dict()
    info["written"] = "repaired" if edits or len(removed) else "unchanged"
    if result.status == "damaged" and fmt in ("gzip", "zlib", "zip"):
        info["salvage"] = salvage_hint(data, fmt)
    report.begin_file({"input": str(job.src), "size": size,
                       "output": None if job.dst is None else str(job.dst), "format": info})
    sure = "verified" if result.status == "restored" else "probable"
    if edits:
        at = np.array([p for p, _ in edits], dtype=np.int64)
        old = np.frombuffer(data, np.uint8)[at]
        new = np.frombuffer(out, np.uint8)[at]  # (a result with edits removes no byte: offsets hold)
        conf = np.full(len(at), 1.0 - result.false_pass)
        report.changes(at, old, new, conf, np.zeros(len(at), bool), reason=sure)
    if len(removed):  # offsets in the input; "new": null, the byte is gone
        report.changes(removed, np.frombuffer(data, np.uint8)[removed], np.full(len(removed), -1),
                       np.full(len(removed), 1.0 - result.false_pass), np.zeros(len(removed), bool),
                       reason="removed")
    dropped = bool(preserve and edits and st.st_mode & SETID and job.dst is not None)
    if job.dst is not None:
        with atomic_write(job.dst, force=force, mode=kept_mode(st, bool(edits)) if preserve else None,
                          batch=batch) as f:
            f.write(out)
            if preserve:
                keep_times(f, st)
    totals = {**empty_totals(), "size": size, "fragments": -(-size // 512), "changed": len(edits) + len(removed),
              "fragments_touched": len({p // 512 for p, _ in edits} | set((removed // 512).tolist())),
              "suspected": len(edits) + len(removed), "format_files": 1,
              "format_restored": int(bool(edits) or bool(len(removed))) if result.status == "restored" else 0,
              "format_probable": int(result.status == "probable"),
              "format_damaged": int(result.status == "damaged")}
    report.end_file(totals, {"seconds": round(time.perf_counter() - t0, 3)})
    out = {"input": str(job.src), "output": None if job.dst is None else str(job.dst), "totals": totals,
           "format": info, "dropped_setid": dropped}
    if blocks:
        m = BlockMap(size)
        m.add(sure, np.r_[np.array([p for p, _ in edits], np.int64), removed])
        if not edits and not len(removed):  # still damaged (or a probable repair not taken): where each check first fails
            m.add("checksum_fails", np.array([p.first_bad for p in result.parts
                                              if p.status != "intact" and p.first_bad is not None], np.int64))
        out["blocks"] = m.to_dict()
    return out
