"""The sample of real files present wherever fragfix runs: the running Python's standard library.

The bundled model trains on it and `fragfix evaluate` measures on it by default. The held-out
split is by file, from a hash of the path relative to the library root, so it is the same on
every machine and Python version (a file new in one version lands on the same side everywhere).
"""
from __future__ import annotations

import hashlib
import os
import sysconfig
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
