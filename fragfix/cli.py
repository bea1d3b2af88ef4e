"""The `fragfix` command line: options -> config -> library call -> rich rendering.

A thin layer (spaCy-style): each command parses options, builds a config, calls a plain
library function and draws what comes back. Torch and the library load lazily inside the
commands, so `fragfix --help` stays fast. Every `FragfixError` becomes one line on stderr and
its exit code here, and only here; `--debug` shows tracebacks instead.
"""
from __future__ import annotations

import errno
import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import ExitCode, FragfixError
from .options import (ACCEPT_PROBABLE, AGGRESSIVE, BINARY_FLOOR, BINARY_THRESHOLD, CONTEXT, FLOOR, FORMAT_BUDGET,
                      FORMATS, MODEL_FLOOR, ONE_BIT_FACTOR, PASSES, THRESHOLD, WINDOW_MB, gate_config, parse_floats,
                      parse_ints)

try:  # typer >= 0.20 vendors click; older releases use it as a dependency
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover
    from click import exceptions as _cx


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (unknown option, missing argument, bad value) as one line too, exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _cx.ClickException as e:
            ctx = getattr(e, "ctx", None)
            where = ctx.command_path if ctx is not None else (prog_name or "fragfix")
            if e.format_message():  # empty when no arguments printed the help
                sys.stderr.write(f"fragfix: error: {e.format_message()} (see {where} --help)\n")
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.stderr.write("fragfix: interrupted\n")
            sys.exit(int(ExitCode.INTERRUPTED))
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn what healthy data looks like, and repair damaged binary files.")
err = Console(stderr=True, highlight=False)
STATE = {"debug": False}
PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.ENOENT)


def _raise_interrupt(signum, frame):
    # the first SIGINT/SIGTERM starts the cleanup; more of them, close behind, must not interrupt
    # it (a second KeyboardInterrupt inside an except block printed a traceback, or exit 143)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def command(fn):
    """Run a command with fragfix's error contract: one line and a distinct exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM cleans up like Ctrl-C
                signal.signal(sig, _raise_interrupt)
        except ValueError:  # not the main thread (some test runners)
            pass
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except FragfixError as e:
            if STATE["debug"]:
                raise
            err.print(f"[bold red]fragfix: error:[/] {escape(str(e))}", markup=True, soft_wrap=True)
            raise typer.Exit(int(e.exit_code))
        except KeyboardInterrupt:
            err.print("fragfix: interrupted; no partial output was left behind")
            raise typer.Exit(int(ExitCode.INTERRUPTED))
        except MemoryError:
            err.print("fragfix: error: out of memory (try a smaller --batch-size)")
            raise typer.Exit(int(ExitCode.IO))
        except OSError as e:
            if STATE["debug"]:
                raise
            err.print(f"fragfix: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), soft_wrap=True, markup=False)
            # a path the user typed that cannot name a file is bad input, not a failing machine
            raise typer.Exit(int(ExitCode.INVALID if e.errno in PATH_ERRNOS else ExitCode.IO))
        except Exception as e:  # a bug: still one line, and the way to see more
            if STATE["debug"]:
                raise
            err.print(f"fragfix: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                      soft_wrap=True, markup=False)
            raise typer.Exit(int(ExitCode.IO))
    app.command()(wrapper)
    return wrapper


def _version(value: bool):
    if value:
        typer.echo(f"fragfix {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    STATE["debug"] = debug


def emit_json(obj) -> None:
    """Machine-readable results go to stdout, alone."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


@command
def train(
    data_dir: List[Path] = typer.Option(..., "--data-dir", "-d", help="Folder(s) or files of clean data (repeatable)."),
    epochs: int = typer.Option(10, help="Passes over the training fragments."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Fragments per step."),
    lr: float = typer.Option(3e-3, "--lr", help="AdamW learning rate."),
    noise: str = typer.Option("byte:0.002-0.15,bitflip:0.0005-0.02,burst:0.005-0.1,zero:0.005-0.15",
                              help="Noise kinds with level ranges (KIND:LO-HI,...); one is drawn per fragment."),
    head: str = typer.Option("categorical", help="Output head: categorical (repairs) or sigmoid (original spec)."),
    channels: str = typer.Option("32,48,64,96", help="Widths at 512,256,128,64 positions."),
    kernel_size: int = typer.Option(9, help="Full-resolution convolution width (odd)."),
    embed_dim: int = typer.Option(16, help="Byte embedding width (categorical head)."),
    stem: str = typer.Option("full", help="Full-resolution stem: full or separable (cheaper)."),
    refine: int = typer.Option(1, help="Full-resolution residual convs after the decoder."),
    seed: int = typer.Option(0, help="Seed for split, order and noise."),
    val_fraction: float = typer.Option(0.1, help="Share of files held out for validation."),
    steps_per_epoch: int = typer.Option(0, help="Cap steps per epoch (0: a full pass)."),
    patience: int = typer.Option(0, help="Stop after this many epochs without improvement (0: never)."),
    out_dir: Path = typer.Option(Path("checkpoints"), "--out-dir", "-o", help="Checkpoint folder."),
    resume: bool = typer.Option(False, help="Continue from OUT_DIR/autoencoder_last.*."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace checkpoints already in OUT_DIR."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("fp32", help="fp32, bf16 or auto (bf16 where fast)."),
    threads: int = typer.Option(0, help="CPU threads (0: the cores available)."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON on stdout."),
):
    """Train a denoising autoencoder on a folder of clean files."""
    from .errors import InvalidInput
    from .render import draw_training
    try:
        from .autoencoder import ModelConfig
        from .training import TrainConfig
        mcfg = ModelConfig(head=head, channels=parse_ints(channels, "--channels"), kernel_size=kernel_size,
                           embed_dim=embed_dim, stem=stem, refine=refine)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    cfg = TrainConfig(data=[str(p) for p in data_dir], out_dir=str(out_dir), epochs=epochs, batch_size=batch_size,
                      lr=lr, noise=noise, seed=seed, val_fraction=val_fraction, steps_per_epoch=steps_per_epoch,
                      patience=patience, device=device, precision=precision, threads=threads, workers=workers,
                      resume=resume, force=force, model=mcfg)
    from .training import train as run
    if force and not resume:
        old = [p for p in cfg.paths() if p.exists()]
        if old:
            err.print(escape(f"--force: replacing {', '.join(str(p) for p in old)}"))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 draws and reports
        for _ in run(cfg):
            pass
        return
    summary = draw_training(run(cfg), err)
    if as_json and summary is not None:
        emit_json(summary)


@command
def info(
    checkpoint: Optional[Path] = typer.Argument(None, help="A checkpoint (default: the bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
):
    """Describe a checkpoint: head, size, epoch, losses, data, when trained."""
    from .checkpoints import describe
    from .render import draw_info
    from .bundled import resolve_model_path
    d = describe(resolve_model_path(checkpoint))
    if as_json:
        emit_json(d)
    else:
        draw_info(d, Console())


@command
def repair(
    inputs: List[Path] = typer.Argument(..., help="Damaged file(s), or folders with -r."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (one input) or folder (several)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Repair every file under input folders."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Checkpoint (default: the bundled model)."),
    threshold: float = THRESHOLD,
    floor: float = FLOOR,
    model_floor: float = MODEL_FLOOR,
    one_bit_factor: float = ONE_BIT_FACTOR,
    binary_threshold: float = BINARY_THRESHOLD,
    binary_floor: float = BINARY_FLOOR,
    context: str = CONTEXT,
    window_mb: float = WINDOW_MB,
    passes: int = PASSES,
    aggressive: bool = AGGRESSIVE,
    formats: bool = FORMATS,
    format_budget: float = FORMAT_BUDGET,
    accept_probable: bool = ACCEPT_PROBABLE,
    mapfile: Optional[Path] = typer.Option(None, help="GNU ddrescue mapfile: bytes not '+' are unknown and filled."),
    zero_runs: int = typer.Option(0, help="Treat runs of at least N zero bytes as unknown (0: off)."),
    report: Optional[Path] = typer.Option(None, help="Write a JSON report of every changed byte."),
    map_out: Optional[Path] = typer.Option(None, help="Write the guessed byte ranges as a ddrescue mapfile."),
    plot: Optional[Path] = typer.Option(None, help="Draw a block map of what changed where (PNG; the plot extra)."),
    dry_run: bool = typer.Option(False, help="Write nothing but the report."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    no_preserve: bool = typer.Option(False, help="Do not copy the input's permission bits and mtime."),
    batch_size: int = typer.Option(0, "--batch-size", "-b", help="Fragments per model call (0: 128 on CPU, 4096 on CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", help="auto (bf16 where fast), bf16 or fp32."),
    threads: int = typer.Option(0, help="CPU threads (0: the cores available)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
):
    """Repair damaged files: a new file and a report of every byte changed; the input is never written."""
    from .bundled import resolve_model_path
    from .render import byte_progress, draw_repair
    from .jobs import plan_jobs
    from .repair import repair_files
    from .runtime import set_threads
    cfg = gate_config(threshold, floor, model_floor, one_bit_factor, binary_threshold, binary_floor, context, window_mb,
                      passes, aggressive, zero_runs=zero_runs, batch_fragments=batch_size, device=device,
                      precision=precision, formats=formats, format_budget=format_budget,
                      accept_probable=accept_probable)
    jobs, skipped = plan_jobs(inputs, output, recursive, dry_run, mapfile, map_out)
    if plot is not None:
        from .errors import InvalidInput
        from .pictures import require
        if dry_run:
            raise InvalidInput("--dry-run writes only the report; --plot would write a picture")
        require()  # a missing extra is a clear error before the run
    set_threads(threads)
    progress = byte_progress(err)
    with progress:
        task = progress.add_task("repairing", total=None)
        summary = repair_files(jobs, resolve_model_path(model), cfg, report, force,
                               progress=lambda n: progress.advance(task, n), preserve=not no_preserve,
                               on_start=lambda total, m: progress.update(task, total=total), plot=plot)
    summary["skipped"] = skipped
    if as_json:
        emit_json(summary)
    draw_repair(summary, err)


@command
def evaluate(
    data_dir: Optional[List[Path]] = typer.Option(None, "--data-dir", "-d",
                                                   help="Held-out files or folders (default: held-out Python stdlib files)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Checkpoint (default: the bundled model)."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", help="More checkpoints to put side by side (repeatable)."),
    noise: str = typer.Option("byte,bitflip,burst,zero", help="Noise kinds, comma-separated."),
    levels: str = typer.Option("0.001,0.01,0.05,0.1", help="Noise levels, comma-separated."),
    max_fragments: int = typer.Option(2000, help="Fragments to evaluate on (spread evenly over the data)."),
    seed: int = typer.Option(0, help="Noise seed: the same seed prints the same numbers."),
    threshold: float = THRESHOLD,
    floor: float = FLOOR,
    model_floor: float = MODEL_FLOOR,
    one_bit_factor: float = ONE_BIT_FACTOR,
    binary_threshold: float = BINARY_THRESHOLD,
    binary_floor: float = BINARY_FLOOR,
    context: str = CONTEXT,
    window_mb: float = WINDOW_MB,
    passes: int = PASSES,
    aggressive: bool = AGGRESSIVE,
    zero_as_unknown: bool = typer.Option(True, help="Give zeroed runs as unknown, as a ddrescue mapfile would."),
    samples: int = typer.Option(0, help="Show N damaged fragments as original / damaged / repaired hex."),
    samples_dir: Optional[Path] = typer.Option(None, help="Save the samples there (text, and PNG with the plot extra)."),
    plot: Optional[Path] = typer.Option(None, help="Save a plot of error rate after repair against noise level."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write every figure and its settings as JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON on stdout."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing output files."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", help="auto (bf16 where fast), bf16 or fp32."),
    threads: int = typer.Option(0, help="CPU threads (0: the cores available)."),
):
    """Corrupt held-out data at several noise kinds and levels, repair it, and show how much was fixed."""
    from .atomic import Batch, atomic_write, check_distinct, check_output_folder, check_output_path
    from .evaluate import EvalConfig, evaluate as run
    from .render import grid_progress
    from .pictures import evaluate_figure, save_samples
    from .render_eval import draw_samples, draw_table
    from .runtime import set_threads
    rcfg = gate_config(threshold, floor, model_floor, one_bit_factor, binary_threshold, binary_floor, context, window_mb,
                       passes, aggressive, device=device, precision=precision)
    kinds = [k.strip() for k in noise.split(",") if k.strip()]
    cfg = EvalConfig(data=[str(p) for p in data_dir] if data_dir else None,
                     models=[str(model) if model else None] + [str(c) for c in compare or []],
                     kinds=kinds, levels=parse_floats(levels, "--levels"), max_fragments=max_fragments, seed=seed,
                     zero_as_unknown=zero_as_unknown, samples=max(samples, 4 if samples_dir else 0), repair=rcfg)
    for out in (plot, json_out):
        if out is not None:
            check_output_path(out, force)
    if samples_dir is not None:
        check_output_folder(samples_dir, force)
    check_distinct([o for o in (plot, json_out, samples_dir) if o is not None],
                   [(p, "model or data this command reads") for p in [model, *(compare or []), *(data_dir or [])]
                    if p is not None])
    if plot is not None:
        from .pictures import require
        require()  # a missing extra is a clear error before the run, not after it
    set_threads(threads)
    progress = grid_progress(err)
    with progress:
        task = progress.add_task("evaluating", total=len(cfg.kinds) * len(cfg.levels))
        result = run(cfg, progress=lambda done, total: progress.update(task, completed=done, total=total))
    draw_table(result, err)
    draw_samples(result["samples"][:samples], err)
    with Batch() as batch:  # the run's files appear together, or none of them
        if samples_dir is not None:
            save_samples(result["samples"], samples_dir, batch)
        if plot is not None:
            evaluate_figure(result, plot, batch)
        if json_out is not None:
            with atomic_write(json_out, force=force, batch=batch) as f:
                f.write(json.dumps(result, indent=1).encode())
    for what, path in (("samples saved in", samples_dir), ("plot:", plot), ("json:", json_out)):
        if path is not None:
            err.print(f"{what} {path}", markup=False)
    if as_json:
        emit_json(result)


def main() -> None:
    app(prog_name="fragfix")
