"""`fragfix salvage`: the content of a damaged gzip, zlib or zip file, each byte exact, guessed or lost.

Where verified repair cannot restore a file (a zeroed sector, an overwritten block, a cut), the
content can still come out: everything before the loss exactly, everything after it once deflate
finds its step again, and the bytes that copy lost ones guessed by the per-file predictor from
their own contexts (rule/fill.py). Each output byte is one of:

- exact: decoded from input that is not lost (a member or entry whose CRC matches: verified);
- guessed: a lost byte's value inferred from its copies (with a probability);
- lost: nothing in the file says what it was (written as 0x00).

The input is read whole (an archive's content is held once more in memory). Losses come from a
ddrescue mapfile, runs of zeros, or where inflate fails. Outputs: the content as one file (gzip:
its members one after another, as `gzip -d` writes them; zlib) or a folder of entries (zip), a
JSON report with every range, and a ddrescue-style map of the content ('+' exact, '/' unchecked,
'?' guessed, '-' lost), all written in one batch: all of them or none.
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fragfix.errors import InvalidInput
from fragfix.files.atomic import Batch, check_distinct, check_output_folder, check_output_path
from fragfix.files.jobs import check_input, open_input, read_upto
from fragfix.files.mapfile import format_blocks, read_mapfile
from fragfix.files.unknown import runs, zero_run_mask
from fragfix.formats import salvage as fs
from fragfix.formats import tarlist
from fragfix.recovery.blockmap import BlockMap
from fragfix.rule.fill import guess_copies

EXACT, UNCHECKED, GUESSED, LOST = 0, 1, 2, 3
LABELS = ("exact", "unchecked", "guessed", "lost")
MAP_STATUS = ("+", "/", "?", "-")  # ddrescue's '/' (non-scraped): read, not proven
SURE = 0.9  # a guess at least this probable is counted as sure in the summary


@dataclass
class SalvageConfig:
    fill: bool = True       # guess the lost bytes that survive as copies
    zero_runs: int = 512    # input runs of at least this many zero bytes are lost (0: off)


def default_output(src: Path, fmt: str) -> Path:
    """file.tar.gz -> file.tar, file.tgz -> file.tar, file.gz -> file, x.zip -> x.salvaged/, else x.out."""
    name = src.name
    if fmt == "zip":
        return src.with_name(src.stem + ".salvaged")
    for ext, new in ((".tgz", ".tar"), (".gz", ""), (".z", ""), (".zz", "")):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return src.with_name(name[:-len(ext)] + new)
    return src.with_name(name + ".out")


def salvage_file(src: Path, output: Path | None, cfg: SalvageConfig, mapfile: Path | None = None,
                 report: Path | None = None, map_out: Path | None = None, force: bool = False,
                 plot: Path | None = None, draw=None) -> dict:
    """Salvage `src` into `output` (a file, or a folder for zip); returns the summary. With `plot`,
    `draw(maps, plot, batch, title=...)` draws each output's block map there, in the same batch."""
    t0 = time.perf_counter()
    if cfg.zero_runs < 0:
        raise InvalidInput(f"--zero-runs must not be negative, got {cfg.zero_runs}")
    size = check_input(src)
    if size == 0:
        raise InvalidInput(f"file is empty: {src}")
    with open_input(src, size) as f:
        d = read_upto(f, size, src)
    fmt = fs.detect(d)
    if fmt is None:
        raise InvalidInput(f"not a gzip, zlib or zip file (salvage reads deflate archives): {src}")
    output = Path(output) if output is not None else default_output(Path(src), fmt)
    _check_outputs(src, output, fmt, mapfile, (report, map_out, plot), force)
    losses = losses_of(d, mapfile, cfg.zero_runs)
    outs = salvage_data(d, fmt, losses, cfg)
    summary = {"input": str(src), "format": fmt, "output": str(output), "losses": [list(x) for x in losses],
               "outputs": [], "totals": dict.fromkeys(("size", *LABELS, "guessed_sure"), 0)}
    content = None
    if fmt != "zip":  # one content: the members one after another
        content = bytearray().join(it.data for it, _ in outs)
        state = np.concatenate([s for _, s in outs]) if outs else np.zeros(0, np.uint8)
        if fmt == "gzip" and tarlist.looks_like_tar(content):
            tar = tarlist.members(content, state == EXACT)
            summary["tar"] = {"members": len(tar), "whole": sum(m["whole"] for m in tar),
                              "not_whole": [m["name"] for m in tar if not m["whole"]]}
    paths = _entry_paths(output, [it.name for it, _ in outs]) if fmt == "zip" else [output] * len(outs)
    ranges = []
    for (it, st), path in zip(outs, paths):
        counts = np.bincount(st, minlength=len(LABELS))
        sure = int((it.guess_p[st[it.guess_pos] == GUESSED] >= SURE).sum()) if len(it.guess_pos) else 0
        row = {"name": it.name, "path": str(path), "size": len(it.data), "status": it.status,
               **{lab: int(c) for lab, c in zip(LABELS, counts)}, "guessed_sure": sure, "note": it.note,
               "stream": it.stream}
        summary["outputs"].append(row)
        ranges.append(_ranges(st, it))
        for k, v in zip(("size", *LABELS, "guessed_sure"), (len(it.data), *counts, sure)):
            summary["totals"][k] += int(v)
    with Batch(final=True) as batch:
        if content is not None:
            with batch.stage(output, force) as w:
                w.write(content)
        else:
            batch.mkdir(output)
            for (it, _), path in zip(outs, paths):
                if it.name.endswith("/") and not it.data:  # a folder entry
                    batch.mkdir(path)
                    continue
                batch.mkdir(path.parent)
                with batch.stage(path, force) as w:
                    w.write(it.data)
        if map_out is not None:
            blocks = [(r[0], r[1], MAP_STATUS[r[2]]) for r in _ranges(state) if r[2] != EXACT]
            with batch.stage(map_out, force) as w:
                w.write(format_blocks(blocks, len(content), f"salvaged content of {Path(src).name}: "
                                      "+ exact, / unchecked, ? guessed, - lost").encode())
        if plot is not None and draw is not None:
            draw(_maps(summary, outs, content, state if content is not None else None), plot, batch,
                 title=f"fragfix salvage: {summary['totals']['exact']:,} of {summary['totals']['size']:,} bytes exact",
                 plain="exact")
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        if report is not None:
            full = {**summary, "outputs": [{**row, "ranges": [list(r[:2]) + [LABELS[r[2]]] + list(r[3:]) for r in rg]}
                                           for row, rg in zip(summary["outputs"], ranges)]}
            with batch.stage(report, force) as w:
                w.write(json.dumps(full, indent=1).encode())
    return summary


def salvage_data(d: bytes, fmt: str, losses: list[tuple[int, int]], cfg: SalvageConfig
                 ) -> list[tuple[fs.Salvaged, np.ndarray]]:
    """Every member or entry of `d` salvaged past `losses`, with each byte's state (EXACT, GUESSED, LOST)."""
    return [_finish(it, cfg) for it in fs.salvage(d, fmt, losses)]


def _check_outputs(src, output, fmt, mapfile, others, force) -> None:
    """Outputs that would clobber data are refused before any work: the input, the mapfile, each other."""
    reads = [(Path(src), "input")] + ([(Path(mapfile), "mapfile")] if mapfile else [])
    report, map_out, plot = others
    if fmt == "zip":
        if map_out is not None:
            raise InvalidInput("--map-out maps one content file; a zip's entries go to a folder "
                               "(their ranges are in --report)")
        check_output_folder(output, force)
        if Path(src).resolve().is_relative_to(Path(output).resolve()):
            raise InvalidInput(f"output folder holds the input: {output}")
    else:
        check_output_path(output, force, (Path(src),))
    for p in others:
        if p is not None:
            check_output_path(p, force, (Path(src),))
    check_distinct([Path(p) for p in (output, *others) if p is not None], reads)


def losses_of(d: bytes, mapfile: Path | None, zero_runs: int) -> list[tuple[int, int]]:
    """Input ranges known lost: a mapfile's non-'+' blocks, runs of zeros; sorted and merged."""
    found = read_mapfile(mapfile, len(d)).bad_ranges() if mapfile else []
    if zero_runs > 0:
        found += runs(zero_run_mask(np.frombuffer(d, np.uint8), zero_runs))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(found):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _finish(it: fs.Salvaged, cfg: SalvageConfig) -> tuple[fs.Salvaged, np.ndarray]:
    """Each byte's state, with the lost bytes that survive as copies guessed (cfg.fill)."""
    st = np.zeros(len(it.data), np.uint8)
    if it.status == "unchecked":
        st[:] = UNCHECKED  # decoded whole, but its check fails: no byte of it is proven
    for a, b in it.unsure:
        st[a:b] = UNCHECKED
    for a, b in it.lost:
        st[a:b] = LOST
    st[it.unknown] = LOST
    if cfg.fill and len(it.unknown):
        data = np.frombuffer(bytes(it.data), np.uint8).copy()
        value, prob = guess_copies(data, st <= UNCHECKED, it.unknown, it.source)
        asked = prob > 0
        data[it.unknown[asked]] = value[asked]
        st[it.unknown[asked]] = GUESSED
        placed = it.source[asked] >= 0  # the lost byte itself, where its place is known
        data[it.source[asked][placed]] = value[asked][placed]
        st[it.source[asked][placed]] = GUESSED
        it.data = bytearray(data.tobytes())
        pos = np.r_[it.unknown[asked], it.source[asked][placed]]
        p = np.r_[prob[asked], prob[asked][placed]]
        it.guess_pos, first = np.unique(pos, return_index=True)  # a lost byte and its copies: one guess
        it.guess_p = p[first]
        if not (st == LOST).any() and it.crc is not None and zlib.crc32(it.data) == it.crc:
            st[:] = EXACT  # every guess together gives the stored CRC: proven
            it.status, it.note = "verified", "every lost byte guessed; the CRC proves the guesses"
    return it, st


def _maps(summary: dict, outs, content, state) -> dict:
    """Block maps of the content (gzip, zlib: one; zip: one per entry) in the shape repair draws."""
    kinds = {LOST: "left_unknown", GUESSED: "filled", UNCHECKED: "unchecked"}

    def one(name: str, st: np.ndarray, verified: bool) -> dict:
        m = BlockMap(len(st))
        for s, kind in kinds.items():
            m.add(kind, np.flatnonzero(st == s))
        if verified:
            m.add("verified", np.arange(len(st)))
        return {"input": name, "blocks": m.to_dict()}
    if content is not None:
        files = [one(Path(summary["output"]).name, state, all(it.status == "verified" for it, _ in outs))]
    else:
        files = [one(it.name, st, it.status == "verified") for it, st in outs if len(st)]
    return {"files": files, "totals": summary["totals"]}


def _ranges(st: np.ndarray, it: fs.Salvaged | None = None) -> list[tuple]:
    """[start, end, state) runs of equal state; a guessed run also carries the lowest probability
    of its guesses (`it`'s)."""
    if not len(st):
        return []
    cut = np.flatnonzero(np.diff(st)) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(st)]
    out = [(int(a), int(b), int(st[a])) for a, b in zip(starts, ends)]
    if it is None or not len(it.guess_pos):
        return out
    done = []
    for a, b, s in out:
        if s == GUESSED:
            lo, hi = np.searchsorted(it.guess_pos, [a, b])
            done.append((a, b, s, round(float(it.guess_p[lo:hi].min()), 4) if hi > lo else None))
        else:
            done.append((a, b, s))
    return done


def _entry_paths(folder: Path, names: list[str]) -> list[Path]:
    """Safe, distinct paths under `folder` for zip entry names: no absolute paths, no '..', no
    empty parts (a name never leaves the folder), a number added where two would collide."""
    out, seen = [], set()
    for k, name in enumerate(names):
        parts = [p for p in name.replace("\\", "/").replace("\0", "_").split("/") if p not in ("", ".", "..")]
        rel = Path(*parts) if parts else Path(f"entry-{k}")
        cand, i = rel, 1
        while str(cand).lower() in seen:
            cand, i = rel.with_name(f"{rel.name}~{i}"), i + 1
        seen.add(str(cand).lower())
        out.append(Path(folder) / cand)
    return out
