"""Command-line options that several commands share: the repair gate, and number lists.

Kept out of cli.py so the commands stay short; like cli.py it imports no torch at import time.
The gate's defaults mirror `decide.RepairConfig` (a test keeps them equal).
"""
from __future__ import annotations

import math

import typer

THRESHOLD = typer.Option(0.5, help="Replace a byte only when the best value has at least this probability ...")
FLOOR = typer.Option(1e-3, help="... the observed byte at most this (text-like fragments; model and context) ...")
MODEL_FLOOR = typer.Option(0.02, help="... and at most this by the model alone.")
ONE_BIT_FACTOR = typer.Option(3.0, help="Both floors this many times higher where the best value differs from the "
                                        "observed byte in one bit (bit rot flips single bits).")
BINARY_THRESHOLD = typer.Option(0.95, help="The threshold for fragments that do not look like text.")
BINARY_FLOOR = typer.Option(1e-5, help="The floor for fragments that do not look like text.")
CONTEXT = typer.Option("3,4", help="Context lengths (bytes each side) whose counts in the data sharpen the model; "
                                   "'off': the model alone.")
WINDOW_MB = typer.Option(2.0, help="MB of data whose context counts are pooled (more: better guesses, more memory).")
PASSES = typer.Option(1, help="Repair passes over each window: 2 fixes a few more bytes where damage is dense, "
                                "at twice the time.")
AGGRESSIVE = typer.Option(False, help="Take the best value everywhere (same as --threshold 0).")
FORMATS = typer.Option(True, "--formats/--no-formats",
                       help="Repair gzip, zlib, zip and PNG files by search, accepted only when their own checksums "
                            "pass (--no-formats: treat them like any other file).")
FORMAT_BUDGET = typer.Option(30.0, help="Seconds of search per checksummed file.")
ACCEPT_PROBABLE = typer.Option(False, help="Also write checksummed repairs that pass every check but were found "
                                           "among too many candidates to be called verified.")


def gate_config(threshold, floor, model_floor, one_bit_factor, binary_threshold, binary_floor, context, window_mb,
                passes, aggressive, **kw):
    """The gate options as a RepairConfig (bad values: one-line errors)."""
    from .decide import RepairConfig
    from .errors import InvalidInput
    orders = () if context.strip().lower() in ("off", "none", "0", "") else parse_floats(context, "--context")
    if any(not math.isfinite(o) or o != int(o) for o in orders):
        raise InvalidInput(f"--context must be whole numbers of bytes, got {context!r}")
    if not (window_mb > 0) or window_mb > 1024:
        raise InvalidInput(f"--window-mb must be within (0, 1024], got {window_mb}")
    return RepairConfig(threshold=threshold, floor=floor, model_floor=model_floor, one_bit_factor=one_bit_factor,
                        binary_threshold=binary_threshold, binary_floor=binary_floor,
                        context_orders=tuple(int(o) for o in orders),
                        window_fragments=max(1, round(window_mb * 2048)), passes=passes, aggressive=aggressive,
                        **kw)


def parse_floats(text: str, what: str) -> list[float]:
    from .errors import InvalidInput
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidInput(f"{what} must be comma-separated numbers, got {text!r}") from None


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    from .errors import InvalidInput
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise InvalidInput(f"{what} must be comma-separated integers, got {text!r}") from None
