"""Which files `fragfix repair` reads and where each result goes: checks and planning, no model.

Every input and output is checked before any work starts, so a bad path fails fast and writes nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .atomic import check_distinct, check_output_path
from .errors import InvalidInput


@dataclass
class Job:
    """One input and where its repair goes (None with --dry-run)."""
    src: Path
    dst: Path | None
    mapfile: Path | None = None
    map_out: Path | None = None


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


def plan_jobs(inputs: list[Path], output: Path | None, recursive: bool, dry_run: bool,
              mapfile: Path | None = None, map_out: Path | None = None) -> tuple[list[Job], list[str]]:
    """Inputs + -o -> (jobs, skipped). One file: -o names the output file. Several, or -r: -o is a
    folder and each output keeps its path relative to the input folder it came from. Empty files
    found in folders are skipped (and listed); named ones are an error."""
    if not inputs:
        raise InvalidInput("no input files given")
    pairs: list[tuple[Path, Path]] = []  # (file, path relative to its root)
    skipped: list[str] = []
    for p in map(Path, inputs):
        if p.is_dir():
            if not recursive:
                raise InvalidInput(f"is a folder, expected a file (use -r for folders): {p}")
            for q in sorted(q for q in p.rglob("*") if q.is_file() and not q.is_symlink()):
                if q.stat().st_size == 0:
                    skipped.append(str(q))
                else:
                    pairs.append((q, q.relative_to(p)))
        else:
            pairs.append((p, Path(p.name)))
    single = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if (mapfile or map_out) and not single:
        raise InvalidInput("--mapfile and --map-out take exactly one input file")
    if output is None and not dry_run:
        raise InvalidInput("an output is needed: -o OUTPUT (or --dry-run to write only the report)")
    for src, _ in pairs:
        check_input(src)
    if single:
        return [Job(pairs[0][0], None if dry_run else output, mapfile, map_out)], skipped
    if not pairs:
        raise InvalidInput("no non-empty files found in the input folders")
    rels = [r for _, r in pairs]
    if len(set(rels)) != len(rels):
        raise InvalidInput("two inputs would write the same output name; repair them separately")
    if dry_run:
        return [Job(src, None) for src, _ in pairs], skipped
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"with several inputs, -o must be a folder: {output}")
    if not output.exists() and not output.parent.is_dir():
        raise InvalidInput(f"output folder's parent does not exist: {output.parent}")
    return [Job(src, output / rel) for src, rel in pairs], skipped


def check_outputs(jobs: list[Job], report: Path | None, force: bool, model: Path | None = None) -> None:
    """Refuse clobbering before any work: existing outputs without force, outputs that are inputs,
    two outputs that are one file, an output that is the mapfile or the model."""
    inputs = tuple(j.src for j in jobs)
    writes = [p for j in jobs for p in (j.dst, j.map_out) if p is not None] + ([report] if report else [])
    reads = ([(p, "input file itself") for p in inputs] + [(j.mapfile, "mapfile") for j in jobs if j.mapfile]
             + ([(model, "model this command reads")] if model else []))
    check_distinct(writes, reads)
    for j in jobs:
        for out in (j.dst, j.map_out):
            # with several inputs, subfolders of the (checked) output folder are ours to create
            if out is not None and (len(jobs) == 1 or out.parent.is_dir()):
                check_output_path(out, force, inputs)
    if report is not None:
        check_output_path(report, force, inputs)


def make_output_folders(jobs: list[Job]) -> None:
    for parent in sorted({j.dst.parent for j in jobs if j.dst is not None}):
        parent.mkdir(parents=True, exist_ok=True)
