"""The repair report: every changed byte (offset, old, new, confidence, why) plus totals.

Written as it goes, so a report of millions of changes needs no memory: the JSON is streamed
into an atomic writer and only becomes visible under its name when the run succeeds.
One input gives one file object at the top level; several give {"files": [...], "totals": ...}.
"""
from __future__ import annotations

import json
import math
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from fragfix.files.atomic import Batch, atomic_write

TOTAL_KEYS = ("size", "fragments", "fragments_touched", "changed", "suspected", "unknown_bytes",
              "unknown_filled", "copied",
              "clear_errors",  # bytes the data shows as clearly damaged (damage.py): the damage evidence
              # checksummed files (gzip, zlib, zip, PNG): checked, restored and verified, probable, left damaged
              "format_files", "format_restored", "format_probable", "format_damaged")


def empty_totals() -> dict:
    return {k: 0 for k in TOTAL_KEYS}


class ReportWriter:
    """Stream a report to `path` (or nowhere, when path is None) inside an ExitStack."""

    def __init__(self, path: Path | None, stack: ExitStack, force: bool, header: dict, many: bool,
                 batch: Batch | None = None):
        self.f = stack.enter_context(atomic_write(Path(path), force=force, batch=batch)) if path else None
        self.many = many
        self.header = header
        self._first_file = True
        self._first_change = True
        if self.f and many:
            self._w("{" + _fields(header) + ', "files": [')

    def _w(self, s: str) -> None:
        self.f.write(s.encode())

    def begin_file(self, meta: dict) -> None:
        if not self.f:
            return
        fields = _fields(meta if self.many else {**self.header, **meta})
        self._w(("" if self._first_file else ",") + "\n{" + fields + ', "changes": [')
        self._first_file = False
        self._first_change = True

    def changes(self, offsets: np.ndarray, old: np.ndarray, new: np.ndarray, conf: np.ndarray,
                unknown: np.ndarray, reason: str | None = None) -> None:
        """`reason`: one for every change (checksummed repairs); else unknown or suspected by byte."""
        if not self.f or len(offsets) == 0:
            return
        parts = []
        for o, a, b, c, u in zip(offsets.tolist(), old.tolist(), new.tolist(), conf.tolist(), unknown.tolist()):
            cs = "null" if math.isnan(c) else f"{c:.4f}"
            b = "null" if b < 0 else b  # a byte taken out (text-mode damage: an inserted CR)
            parts.append(f'{{"offset": {o}, "old": {a}, "new": {b}, "confidence": {cs}, '
                         f'"reason": "{reason or ("unknown" if u else "suspected")}"}}')
        self._w(("" if self._first_change else ",") + "\n" + ",\n".join(parts))
        self._first_change = False

    def end_file(self, totals: dict, extra: dict | None = None) -> None:
        if self.f:
            self._w('\n], "totals": ' + json.dumps(totals) + ("" if not extra else ", " + _fields(extra)) + "}")

    def close(self, totals: dict) -> None:
        if self.f and self.many:
            self._w('\n], "totals": ' + json.dumps(totals) + "}\n")
        elif self.f:
            self._w("\n")


def _fields(d: dict) -> str:
    return json.dumps(d)[1:-1]
