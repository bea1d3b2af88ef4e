"""Opening an input for reading without ever blocking: the one way fragfix opens a file it reads."""
from __future__ import annotations

import os
from pathlib import Path


def open_readonly(path: Path | str) -> int:
    """A read-only descriptor for `path`. O_NONBLOCK makes a FIFO (swapped in for a file, or named
    by mistake) fail at the first read instead of blocking the open forever; it changes nothing for
    regular files. OSError as os.open raises it: the caller words the message."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
