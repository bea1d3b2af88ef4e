"""Which files `fragfix repair` reads and where each result goes: checks and planning, no model.

Every input and output is checked before any work starts, so a bad path fails fast and writes nothing.
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fragfix.files.atomic import Batch, check_distinct, check_output_path
from fragfix.files.reading import open_readonly
from fragfix.errors import InvalidInput, IOFailure


@dataclass
class Job:
    """One input and where its repair goes (None with --dry-run)."""
    src: Path
    dst: Path | None
    mapfile: Path | None = None
    map_out: Path | None = None
    folder: Path | None = None  # -o as a folder (several inputs, or -r): it and subfolders are ours to create


def check_input(path: Path) -> int:
    """A readable regular file: its size (0 for an empty one, which repairs to an empty file).
    Otherwise a one-line InvalidInput."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    if path.is_dir():
        raise InvalidInput(f"is a folder, expected a file (use -r for folders): {path}")
    if not path.is_file():
        raise InvalidInput(f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise InvalidInput(f"file is not readable (permission denied): {path}")
    return path.stat().st_size


def open_input(path: Path, size: int) -> BinaryIO:
    """An input opened for reading and checked again through its descriptor: still a regular file of
    the size checked before the run. O_NONBLOCK makes a FIFO swapped in meanwhile fail here instead
    of blocking the open forever (it changes nothing for regular files)."""
    try:
        fd = open_readonly(path)
    except OSError as e:
        raise InvalidInput(f"cannot open {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        os.close(fd)
        raise IOFailure(f"{path} changed before it could be read (now not a regular file of {size} bytes)")
    return os.fdopen(fd, "rb", buffering=0)


def read_upto(f, n: int, path: Path) -> bytes:
    """Up to n bytes (fewer only at the end of the file), through short reads; errors as IOFailure."""
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


def walk(folder: Path, recursive: bool = True) -> tuple[list[Path], list[dict]]:
    """The regular files under a folder, sorted (for determinism), and what was left out and why
    ({path, why}): symbolic links (they may lead out of the folder, or loop: named, never followed)
    and special files. The one folder walker: repair, train and evaluate all use it."""
    files, skipped = [], []
    for q in sorted(folder.rglob("*") if recursive else folder.glob("*")):
        if q.is_symlink():
            skipped.append({"path": str(q), "why": "symbolic link"})
        elif q.is_file():
            files.append(q)
        elif not q.is_dir():
            skipped.append({"path": str(q), "why": "not a regular file"})
    return files, skipped


def plan_jobs(inputs: list[Path], output: Path | None, recursive: bool, dry_run: bool,
              mapfile: Path | None = None, map_out: Path | None = None, files_from: Path | None = None,
              shard: tuple[int, int] | None = None) -> tuple[list[Job], list[dict]]:
    """Inputs + -o -> (jobs, skipped). One file: -o names the output file. Several, or -r, or a list
    (`files_from`): -o is a folder and each output keeps its path relative to the input folder it
    came from (a listed file: its path as listed). `shard` (K, N) keeps the files of shard K
    (shard_of). An empty file repairs to an empty file; links and special files in folders are
    skipped (and listed)."""
    # a file named on the command line keeps its name under -o; a listed one, its path as listed
    named = [(Path(p), None) for p in inputs]
    named += [(p, listed_name(p)) for p in (read_file_list(files_from) if files_from is not None else [])]
    inputs = [p for p, _ in named]
    if not inputs:
        raise InvalidInput("no input files given")
    pairs: list[tuple[Path, Path]] = []  # (file, path relative to its root)
    skipped: list[dict] = []  # {path, why}: files in folders left alone, and why
    for p, as_listed in named:
        if p.is_dir():
            if not recursive:
                raise InvalidInput(f"is a folder, expected a file (use -r for folders): {p}")
            files, left = walk(p)
            pairs += [(q, (as_listed or Path()) / q.relative_to(p)) for q in files]
            skipped += left
        else:
            pairs.append((p, as_listed or Path(p.name)))
    single = len(inputs) == 1 and not Path(inputs[0]).is_dir() and files_from is None and shard is None
    if (mapfile or map_out) and not single:
        raise InvalidInput("--mapfile and --map-out take exactly one input file")
    if map_out and dry_run:
        raise InvalidInput("--dry-run writes only the report; --map-out would write a file")
    if output is None and not dry_run:
        raise InvalidInput("an output is needed: -o OUTPUT (or --dry-run to write only the report)")
    if not single and not pairs:
        raise InvalidInput("no files found in the input folders")
    if shard is not None:  # before the checks: a shard reads (and stats) only its own files
        pairs = [(src, rel) for src, rel in pairs if shard_of(rel, shard[1]) == shard[0]]
    for src, _ in pairs:
        check_input(src)
    pairs, twice = _once(pairs)
    skipped += twice
    if single:
        return [Job(pairs[0][0], None if dry_run else output, mapfile, map_out)], skipped
    rels = [r for _, r in pairs]
    if len(set(rels)) != len(rels):
        raise InvalidInput("two inputs would write the same output name; repair them separately")
    if dry_run:
        return [Job(src, None) for src, _ in pairs], skipped
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"with several inputs, -o must be a folder: {output}")
    if not output.exists() and not output.parent.is_dir():
        raise InvalidInput(f"output folder's parent does not exist: {output.parent}")
    check_apart(output, [Path(p) for p in inputs if Path(p).is_dir()], "input folder")
    return [Job(src, output / rel, folder=output) for src, rel in pairs], skipped


def _once(pairs: list[tuple[Path, Path]]) -> tuple[list[tuple[Path, Path]], list[dict]]:
    """Inputs that are one file (a path and a link to it, two hard links) are repaired once: the
    first keeps its output, the others are skipped and named."""
    first: dict[tuple[int, int], Path] = {}
    keep, twice = [], []
    for src, rel in pairs:
        st = src.stat()
        seen = first.setdefault((st.st_dev, st.st_ino), src)
        if seen is src:
            keep.append((src, rel))
        else:
            twice.append({"path": str(src), "why": "the same file as another input (repaired once)",
                          "same_as": str(seen)})
    return keep, twice


def read_file_list(path: Path) -> list[Path]:
    """The paths in a list file, one per line ('-': standard input); blank lines are skipped, a
    line's end may be LF or CRLF. Names are taken as bytes, as the file system holds them."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except IsADirectoryError:
        raise InvalidInput(f"--files-from {path} is a folder; it must be a file with one path per line") from None
    except OSError as e:
        raise InvalidInput(f"cannot read --files-from {path}: {e.strerror}") from None
    if b"\0" in raw:
        raise InvalidInput(f"--files-from {path} holds NUL bytes; it must be text with one path per line")
    out = [Path(os.fsdecode(line.rstrip(b"\r"))) for line in raw.split(b"\n") if line.strip(b"\r")]
    if not out:
        raise InvalidInput(f"--files-from {path} lists no files")
    return out


def listed_name(p: Path) -> Path:
    """Where a listed file's output goes under -o: its path as listed, an absolute one without its
    root (as tar stores it). A path that climbs with '..' could land outside -o: refused."""
    if ".." in p.parts:
        raise InvalidInput(f"a listed path may not contain '..' (its output would leave -o): {p}")
    rel = Path(*p.parts[1:]) if p.is_absolute() else p
    if not rel.parts:
        raise InvalidInput(f"a listed path names no file: {p}")
    return rel


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N: this run repairs the K-th of N shards."""
    k, sep, n = text.partition("/")
    digits = sep and all(x.isascii() and x.isdigit() for x in (k, n))  # '3/8', not '3/²' or ' 3/8'
    if not (digits and 1 <= int(k) <= int(n)):
        raise InvalidInput(f"--shard must be K/N with 1 <= K <= N (the K-th of N shards, e.g. 3/8), got {text!r}")
    return int(k), int(n)


def shard_of(rel: Path, n: int) -> int:
    """The shard (1..n) of a file, by a hash of its output path: every machine computes the same
    split from the same names, whatever order it lists them in, and a file keeps its shard when
    others are added or removed (a re-run repeats no finished shard's work)."""
    digest = hashlib.blake2b(os.fsencode(str(rel)), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n + 1


def check_apart(output: Path, folders: list[Path], what: str) -> None:
    """An output folder inside an input folder (or holding one) is refused: the next run would read
    its own outputs as inputs (repair them again, train on checkpoints)."""
    out = output.resolve()
    for f in folders:
        d = f.resolve()
        if out == d or d in out.parents or out in d.parents:
            raise InvalidInput(f"the output folder {output} and the {what} {f} must not contain one another")


def check_outputs(jobs: list[Job], report: Path | None, force: bool, model: Path | None = None,
                  plot: Path | None = None, references: tuple[Path, ...] = ()) -> None:
    """Refuse clobbering before any work: existing outputs without force, outputs that are inputs,
    two outputs that are one file, an output that is the mapfile or the model."""
    inputs = tuple(j.src for j in jobs)
    single = [p for p in (report, plot) if p is not None]  # one per run, beside the per-file outputs
    writes = [p for j in jobs for p in (j.dst, j.map_out) if p is not None] + single
    reads = ([(p, "input file itself") for p in inputs] + [(j.mapfile, "mapfile") for j in jobs if j.mapfile]
             + ([(model, "model this command reads")] if model else []) + [(r, "reference") for r in references])
    check_distinct(writes, reads)
    for j in jobs:
        for out in (j.dst, j.map_out):
            # under an output folder, missing subfolders (and the folder itself) are ours to create
            if out is not None and (j.folder is None or out.parent.is_dir()):
                check_output_path(out, force, inputs)
    for out in single:
        check_output_path(out, force, inputs)


def make_output_folders(jobs: list[Job], batch: Batch) -> None:
    for parent in sorted({j.dst.parent for j in jobs if j.dst is not None}):
        batch.mkdir(parent)
