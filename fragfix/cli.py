"""The `fragfix` command line: options -> config -> library call -> rich rendering.

A thin layer (spaCy-style): each command parses options, builds a config, calls a plain
library function and draws what comes back. Torch and the library load lazily inside the
commands, so `fragfix --help` stays fast. Every `FragfixError` becomes one line on stderr and
its exit code here, and only here; `--debug` shows tracebacks instead.
"""
from __future__ import annotations

import functools
import json
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from . import __version__
from .errors import ExitCode, FragfixError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn what healthy data looks like, and repair damaged binary files.")
err = Console(stderr=True, highlight=False)
STATE = {"debug": False}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def command(fn):
    """Run a command with fragfix's error contract: one line and a distinct exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM cleans up like Ctrl-C
        except ValueError:  # not the main thread (some test runners)
            pass
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except FragfixError as e:
            if STATE["debug"]:
                raise
            err.print(f"[bold red]fragfix: error:[/] {e}", markup=True, soft_wrap=True)
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
            err.print(f"fragfix: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), soft_wrap=True)
            raise typer.Exit(int(ExitCode.IO))
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


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    from .errors import InvalidInput
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise InvalidInput(f"{what} must be comma-separated integers, got {text!r}") from None


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
    seed: int = typer.Option(0, help="Seed for split, order and noise."),
    val_fraction: float = typer.Option(0.1, help="Share of files held out for validation."),
    steps_per_epoch: int = typer.Option(0, help="Cap steps per epoch (0: a full pass)."),
    patience: int = typer.Option(0, help="Stop after this many epochs without improvement (0: never)."),
    out_dir: Path = typer.Option(Path("checkpoints"), "--out-dir", "-o", help="Checkpoint folder."),
    resume: bool = typer.Option(False, help="Continue from OUT_DIR/autoencoder_last.*."),
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
                           embed_dim=embed_dim)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    cfg = TrainConfig(data=[str(p) for p in data_dir], out_dir=str(out_dir), epochs=epochs, batch_size=batch_size,
                      lr=lr, noise=noise, seed=seed, val_fraction=val_fraction, steps_per_epoch=steps_per_epoch,
                      patience=patience, device=device, precision=precision, threads=threads, workers=workers,
                      resume=resume, model=mcfg)
    from .training import train as run
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


def main() -> None:
    app(prog_name="fragfix")
