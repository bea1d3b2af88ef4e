"""The CLI's option layer: option groups several commands share, their help panels, and parsers.

Defaults come from the configs (`config.py`, no torch), never copied as literals, so `--help`
stays fast and a default lives in one place. A group (the repair gate, the runtime) is declared
once here; `shared("gate", "runtime")` adds its options to a command and hands them to it
collected, as `gate` and `runtime` dicts.
"""
from __future__ import annotations

import functools
import inspect
import math
from pathlib import Path

import typer

from fragfix.config import TrainConfig, ModelConfig, RepairConfig, Runtime

GATE, RUNTIME, IO, MAPS, FORMATS_PANEL, MODEL, DATA, TRAINING = (
    "Repair gate", "Runtime", "Input and output", "Mapfiles and unknown bytes", "Checksummed formats", "Model",
    "Data", "Training")
D, R, M = RepairConfig(), Runtime(), ModelConfig()
T = {name: f.default for name, f in TrainConfig.__dataclass_fields__.items()}

GROUPS = {
    "gate": {
        "rule": (str, typer.Option(D.rule, rich_help_panel=GATE, help=(
            "learned: learn the file under repair (its own contexts, mixed and calibrated on its intact "
            "bytes) and change a byte where the noisy channel makes damage likelier than not; model: the "
            "bundled model's gate (the options below marked 'model rule')."))),
        "certainty": (float, typer.Option(D.certainty, rich_help_panel=GATE, help=(
            "learned rule: change a byte only where the posterior that it is damaged reaches this "
            "(0.5: likelier damaged than not; higher: fewer changes, each surer)."))),
        "threshold": (float, typer.Option(D.threshold, rich_help_panel=GATE, help=(
            "model rule: replace a byte only when the best value's probability is at least this (text-like fragments)."))),
        "floor": (float, typer.Option(D.floor, rich_help_panel=GATE, help=(
            "model rule: replace a byte only when its own probability, with the context counts, is at most this "
            "(text-like fragments)."))),
        "model_floor": (float, typer.Option(D.model_floor, rich_help_panel=GATE, help=(
            "model rule: replace a byte only when the model alone gives it at most this probability."))),
        "one_bit_factor": (float, typer.Option(D.one_bit_factor, rich_help_panel=GATE, help=(
            "model rule: multiply both floors by this where the best value is one bit away from the byte (bit rot)."))),
        "binary_threshold": (float, typer.Option(D.binary_threshold, rich_help_panel=GATE, help=(
            "model rule: the threshold for fragments that do not look like text."))),
        "binary_floor": (float, typer.Option(D.binary_floor, rich_help_panel=GATE, help=(
            "model rule: the floor for fragments that do not look like text."))),
        "context": (str, typer.Option(",".join(map(str, D.context_orders)), rich_help_panel=GATE, help=(
            "model rule: context lengths (bytes each side) whose counts in the data sharpen the model; 'off': "
            "the model alone."))),
        "window_mb": (float, typer.Option(D.window_fragments / 2048, rich_help_panel=GATE, help=(
            "MB of data whose context counts are pooled (more: better guesses, more memory)."))),
        "damage_gate": (bool, typer.Option(D.damage_gate, rich_help_panel=GATE, help=(
            "model rule: scale the floors by the damage rate the data itself shows, and keep bytes the file itself "
            "uses in the same place (UTF-8 text, its own indentation); off: the model's belief alone."))),
        "clean_rate": (float, typer.Option(D.clean_rate, rich_help_panel=GATE, help=(
            "Clear errors per byte that clean data shows anyway: where the data shows no more, no byte "
            "changes (0: isolated errors in clean data are corrected too, at some risk; the learned rule then "
            "drops its margins on the damage rate)."))),
        "ref_rate": (float, typer.Option(D.ref_rate, rich_help_panel=GATE, help=(
            "model rule: the damage rate at which the floors apply as set; between the clean rate and this they "
            "scale linearly, above it they open up to 3 times."))),
        "passes": (int, typer.Option(D.passes, rich_help_panel=GATE, help=(
            "Repair passes over each window: 2 fixes a few more bytes where damage is dense, at twice the "
            "time."))),
        "aggressive": (bool, typer.Option(D.aggressive, rich_help_panel=GATE, help=(
            "Take the best value everywhere (model rule: the same as --threshold 0; learned rule: wherever "
            "another value is likelier than the byte read)."))),
    },
    "runtime": {
        "device": (str, typer.Option(R.device, rich_help_panel=RUNTIME, help="auto, cpu, cuda, cuda:N or mps.")),
        "precision": (str, typer.Option(R.precision, rich_help_panel=RUNTIME, help=(
            "auto (bf16 where fast), bf16 or fp32."))),
        "threads": (int, typer.Option(R.threads, rich_help_panel=RUNTIME, help=(
            "CPU threads, and the learned rule's worker processes (0: the cores available)."))),
    },
}


def shared(*groups: str):
    """Add these groups' options to a command, after its own, and pass each group to it as one
    dict argument named after the group (the command declares `gate: dict`, `runtime: dict`)."""
    def deco(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name not in groups]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
                 for g in groups for name, (kind, opt) in GROUPS[g].items()]

        @functools.wraps(fn)
        def wrapper(**kw):
            for g in groups:
                kw[g] = {name: kw.pop(name) for name in GROUPS[g]}
            return fn(**kw)
        wrapper.__signature__ = sig.replace(parameters=own + extra)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        return wrapper
    return deco


def gate_config(gate: dict, **kw) -> RepairConfig:
    """The gate options (and any other RepairConfig fields) as a RepairConfig; bad values: one line."""
    from fragfix.errors import InvalidInput
    g = dict(gate)
    context, window_mb = g.pop("context"), g.pop("window_mb")
    orders = () if context.strip().lower() in ("off", "none", "0") else parse_floats(context, "--context")
    if any(not math.isfinite(o) or o != int(o) for o in orders):
        raise InvalidInput(f"--context must be whole numbers of bytes, got {context!r}")
    if not (window_mb > 0) or window_mb > 1024:
        raise InvalidInput(f"--window-mb must be within (0, 1024], got {window_mb}")
    return RepairConfig(**g, context_orders=tuple(int(o) for o in orders),
                        window_fragments=max(1, round(window_mb * 2048)), **kw)


def parse_floats(text: str, what: str) -> list[float]:
    from fragfix.errors import InvalidInput
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidInput(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not out:
        raise InvalidInput(f"{what} must list at least one number, got {text!r}")
    return out


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    from fragfix.errors import InvalidInput
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise InvalidInput(f"{what} must be comma-separated integers, got {text!r}") from None


__all__ = ["GATE", "RUNTIME", "IO", "MAPS", "FORMATS_PANEL", "MODEL", "DATA", "TRAINING", "D", "R", "M", "T",
           "GROUPS", "shared", "gate_config", "parse_floats", "parse_ints"]


def check_repair_options(dry_run, output, plot, mapfile, reference, reference_mapfile) -> None:
    """Options that would be ignored, or do other than they say, are errors before any work."""
    from fragfix.errors import InvalidInput
    if dry_run and output is not None:
        raise InvalidInput("--dry-run writes only the report; -o names an output it would not write")
    check_plot(plot)
    if reference_mapfile and mapfile is None:  # (a --reference alone may merge a checksummed file)
        raise InvalidInput("--reference-mapfile fills the unknown bytes a --mapfile names: "
                           "give the image's --mapfile too")


def check_plot(plot) -> None:
    """--plot draws a PNG: any other name is refused before any work."""
    from fragfix.errors import InvalidInput
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise InvalidInput(f"--plot draws a PNG picture: give a name ending in .png, not {plot}")


def pair_references(refs, maps) -> tuple:
    from fragfix.errors import InvalidInput
    refs, maps = list(refs or []), list(maps or [])
    if len(maps) > len(refs):
        raise InvalidInput("--reference-mapfile pairs with a --reference: give the reference first")
    return tuple(zip(refs, maps + [None] * (len(refs) - len(maps))))
