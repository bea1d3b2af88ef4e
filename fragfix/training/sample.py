"""The samples of real files present wherever fragfix runs: the Python installation.

`python_sample`: the running Python's standard library, split by file from a hash of the path
relative to the library root, so the same on every machine and Python version (a file new in one
version lands on the same side everywhere); `fragfix evaluate` measures on its held-out part.
`installation_sample`: the standard library plus the files of fragfix's core distributions, what
the bundled model trains on, with the same held-out stdlib files and whole kinds held out by group.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import sysconfig
from collections import Counter
from importlib import metadata
from pathlib import Path

TEXT = {".py", ".txt", ".decTest", ".xml", ".json", ".toml", ".pem", ".c", ".h", ".html", ".css", ".csv",
        ".rst", ".cfg", ".ini", ".def", ".expected", ".md", ".bat", ".ps1", ".sh", ".tcl", ".js", ".svg", ".pyi"}
BINARY = {".so", ".pyd", ".dll", ".exe", ".a", ".dylib"}
COMPRESSED = {".zip", ".whl", ".gz", ".bz2", ".xz", ".png", ".jpg", ".jpeg", ".gif", ".tar"}
HELD_OUT = 10  # one file in ten is held out


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def kind_of(path: Path) -> str:
    ext = path.suffix
    if ext in TEXT:
        return "text"
    if ext in BINARY or ".so" in path.suffixes:
        return "binary"
    if ext in COMPRESSED:
        return "compressed"
    return "other"


def held_out(rel: str) -> bool:
    return int(hashlib.sha256(rel.encode()).hexdigest()[:8], 16) % HELD_OUT == 0


def python_sample(kinds: tuple[str, ...] = ("text", "binary"), min_size: int = 512,
                  root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(train files, held-out files) of the standard library, sorted, without caches or site-packages."""
    root = root or stdlib_root()
    train, val = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__", "dist-packages"))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if kind_of(p) not in kinds or p.is_symlink():
                continue
            try:
                if p.stat().st_size < min_size or not os.access(p, os.R_OK):
                    continue
            except OSError:
                continue
            (val if held_out(p.relative_to(root).as_posix()) else train).append(p)
    return train, val


# ---- the whole installation: what the bundled model trains on ----------------------------------
# Whole kinds held out of the bundled model's training, one group per rotation: `fragfix evaluate`
# and the benchmark measure on them as data never seen. Group 0 (the bundled model's) holds kinds
# the installation has little of, so holding them out costs little training data.
HOLD_OUT_GROUPS = (
    ("web-and-tables", (".js", ".mjs", ".css", ".html", ".htm", ".svg", ".xml", ".csv", ".tsv", ".md")),
    ("c-family", (".c", ".h", ".hpp", ".cpp", ".cc", ".cuh", ".cu")),
    ("docs", (".rst", ".txt", ".dectest", ".afm")),
    ("config-data", (".json", ".toml", ".yaml", ".yml", ".cfg", ".ini")),
)
MAX_FILE_FRAGMENTS = 256  # at most 128 KB of each file: libtorch alone would otherwise be most of the data


def kind_name(path: Path) -> str:
    """A file's kind for hold-out and per-kind figures: its extension ('.so' for any shared library,
    '(none)' without one), lower case."""
    if ".so" in path.suffixes or path.suffix == ".so":
        return ".so"
    return path.suffix.lower() or "(none)"


def _looks_compressed(path: Path) -> bool:
    """High byte entropy over the first 4 KB: compressed, encrypted or packed data, which carries no
    structure the model can learn (and repair leaves alone anyway)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True
    n = len(head)
    return n == 0 or -sum(c / n * math.log2(c / n) for c in Counter(head).values()) > 7.0


def core_distributions() -> list[tuple[str, str]]:
    """(name, version) of fragfix's runtime dependencies, recursively, without extras: pinned wheels
    ship the same files everywhere, so training on them is reproducible."""
    seen: dict[str, str] = {}
    todo = ["fragfix"]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist.version
        for req in dist.requires or []:
            if "extra ==" in req:  # other markers: a dependency that does not apply is not installed
                continue
            todo.append(re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0])
    seen.pop("fragfix", None)
    return sorted(seen.items())


def eligible(p: Path, min_size: int) -> bool:
    """A regular, readable file of at least min_size bytes that is not compressed (by name or content)."""
    if p.is_symlink() or kind_of(p) == "compressed":
        return False
    try:
        if not p.is_file() or p.stat().st_size < min_size or not os.access(p, os.R_OK):
            return False
    except OSError:
        return False
    return kind_of(p) in ("text", "binary") and p.suffix not in (".exe", ".dll") or not _looks_compressed(p)


def installation_sample(hold_group: int | None = 0, min_size: int = 512) -> dict:
    """The files of the Python installation fragfix runs in: the standard library and the core
    distributions' files (`core_distributions`). Returns {"train", "held" (one file in ten by a
    hash of its path), "held_kinds" (every file of the hold-out group's kinds), "kinds" (trained
    kinds), "group", "distributions"}; each list sorted."""
    files: dict[str, Path] = {}
    root = stdlib_root()
    train, val = python_sample(("text", "binary", "other"), min_size, root)
    for p in train + val:
        files[p.relative_to(root).as_posix()] = p  # the same key as python_sample: the same held-out files
    dists = core_distributions()
    for name, version in dists:
        dist = metadata.distribution(name)
        for f in dist.files or []:
            if "__pycache__" in f.parts:
                continue
            files[f"dist:{name}/{f.as_posix()}"] = Path(dist.locate_file(f))
    hold = set(HOLD_OUT_GROUPS[hold_group][1]) if hold_group is not None else set()
    out = {"train": [], "held": [], "held_kinds": [], "kinds": set(),
           "group": HOLD_OUT_GROUPS[hold_group][0] if hold_group is not None else None,
           "distributions": dists}
    for rel in sorted(files):
        p = files[rel]
        if not eligible(p, min_size):
            continue
        if kind_name(p) in hold:
            out["held_kinds"].append(p)
        elif held_out(rel):
            out["held"].append(p)
        else:
            out["train"].append(p)
            out["kinds"].add(kind_name(p))
    out["kinds"] = sorted(out["kinds"])
    return out
