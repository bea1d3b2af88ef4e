"""The `fragfix` command line: options -> config -> library call -> rich rendering.

A thin layer (spaCy-style): each command parses options (options.py), builds a config, calls a
plain library function and draws what comes back (render*.py, pictures.py). Torch and the library
load lazily inside the commands, so `fragfix --help` stays fast. Errors become one line and an exit
code at the edge (edge.py), and only there.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from fragfix import __version__
from fragfix.cli.edge import STATE, OneLineErrors, SafeConsole, contract, err, shown
from fragfix.config import EvalConfig, ModelConfig
from fragfix.cli.options import (DATA, FORMATS_PANEL, IO, MAPS, MODEL, RUNTIME, TRAINING, D, M, R, T, check_plot,
                                 check_repair_options, gate_config, pair_references, parse_floats, parse_ints, shared)

E = EvalConfig()  # evaluate's defaults

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn what healthy data looks like, and repair damaged binary files.")


def command(fn):
    """A command of the app, run under fragfix's error contract (one line, a distinct exit code)."""
    wrapper = contract(fn)
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
    data_dir: List[Path] = typer.Option(..., "--data-dir", "-d", rich_help_panel=DATA,
                                        help="Folder(s) or files of clean data (repeatable)."),
    val_fraction: float = typer.Option(T["val_fraction"], rich_help_panel=DATA, help="Share of files held out for validation."),
    noise: str = typer.Option(T["noise"], rich_help_panel=DATA, help=(
        "Noise kinds with level ranges, KIND:LO-HI,... (KIND alone: 0.05); one is drawn per fragment.")),
    seed: int = typer.Option(T["seed"], rich_help_panel=DATA, help="Seed for the split, the order and the noise."),
    epochs: int = typer.Option(T["epochs"], rich_help_panel=TRAINING, help="Passes over the training fragments."),
    batch_size: int = typer.Option(T["batch_size"], "--batch-size", "-b", rich_help_panel=TRAINING,
                                   help="Fragments per step."),
    lr: float = typer.Option(T["lr"], "--lr", rich_help_panel=TRAINING, help="AdamW learning rate."),
    steps_per_epoch: int = typer.Option(T["steps_per_epoch"], rich_help_panel=TRAINING,
                                        help="Cap steps per epoch (0: a full pass)."),
    patience: int = typer.Option(T["patience"], rich_help_panel=TRAINING,
                                 help="Stop after this many epochs without improvement (0: never)."),
    head: str = typer.Option(M.head, rich_help_panel=MODEL, help="Output head: categorical (repairs) or sigmoid (original spec)."),
    channels: str = typer.Option(",".join(map(str, M.channels)), rich_help_panel=MODEL,
                                 help="Widths at 512,256,128,64 positions."),
    kernel_size: int = typer.Option(M.kernel_size, rich_help_panel=MODEL, help="Full-resolution convolution width (odd)."),
    embed_dim: int = typer.Option(M.embed_dim, rich_help_panel=MODEL, help="Byte embedding width (categorical head)."),
    stem: str = typer.Option(M.stem, rich_help_panel=MODEL, help="Full-resolution stem: full or separable (cheaper)."),
    refine: int = typer.Option(M.refine, rich_help_panel=MODEL, help="Full-resolution residual convs after the decoder."),
    out_dir: Path = typer.Option(Path(T["out_dir"]), "--out-dir", "-o", rich_help_panel=IO, help="Checkpoint folder."),
    resume: bool = typer.Option(T["resume"], rich_help_panel=IO, help="Continue from OUT_DIR/autoencoder_last.*."),
    force: bool = typer.Option(T["force"], "--force", "-f", rich_help_panel=IO, help="Replace checkpoints already in OUT_DIR."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=IO, help="Print the final summary as JSON on stdout."),
    device: str = typer.Option(T["device"], rich_help_panel=RUNTIME, help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(T["precision"], rich_help_panel=RUNTIME, help="fp32, bf16 or auto (bf16 where fast)."),
    threads: int = typer.Option(T["threads"], rich_help_panel=RUNTIME, help="CPU threads (0: the cores available)."),
    workers: int = typer.Option(T["workers"], rich_help_panel=RUNTIME, help="DataLoader worker processes."),
):
    """Train a denoising autoencoder on a folder of clean files."""
    from fragfix.errors import InvalidInput
    from fragfix.cli.render import draw_training
    from fragfix.training.loop import TrainConfig, train as run
    try:
        mcfg = ModelConfig(head=head, channels=parse_ints(channels, "--channels"), kernel_size=kernel_size,
                           embed_dim=embed_dim, stem=stem, refine=refine)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    cfg = TrainConfig(data=[str(p) for p in data_dir], out_dir=str(out_dir), epochs=epochs, batch_size=batch_size,
                      lr=lr, noise=noise, seed=seed, val_fraction=val_fraction, steps_per_epoch=steps_per_epoch,
                      patience=patience, device=device, precision=precision, threads=threads, workers=workers,
                      resume=resume, force=force, model=mcfg)
    old = [p for p in cfg.paths() if p.exists()] if force and not resume else []
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 draws and reports
        for _ in run(cfg):
            pass
        return
    summary = draw_training(_saying_replaced(run(cfg), old), err)
    if as_json and summary is not None:
        emit_json(summary)


@command
def info(
    checkpoint: Optional[Path] = typer.Argument(None, help="A checkpoint (default: the bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
):
    """Describe a checkpoint: head, size, epoch, losses, data, when trained."""
    from fragfix.model.checkpoints import describe
    from fragfix.cli.render import draw_info
    from fragfix.model.bundled import resolve_model_path
    d = describe(resolve_model_path(checkpoint))
    if as_json:
        emit_json(d)
    else:
        draw_info(d, SafeConsole())


@command
@shared("gate", "runtime")
def repair(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Damaged file(s), or folders with -r."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", rich_help_panel=IO,
                                          help="Output file (one input) or folder (several)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", rich_help_panel=IO,
                                   help="Repair every file under input folders."),
    report: Optional[Path] = typer.Option(None, rich_help_panel=IO, help="Write a JSON report of every changed byte."),
    plot: Optional[Path] = typer.Option(None, rich_help_panel=IO,
                                        help="Draw a block map of what changed where (PNG; the plot extra)."),
    files_from: Optional[Path] = typer.Option(None, rich_help_panel=IO, help=(
        "Also repair the files listed in this file, one path per line ('-': standard input); each output "
        "keeps its path as listed under -o.")),
    shard: Optional[str] = typer.Option(None, rich_help_panel=IO, help=(
        "K/N: repair only the K-th of N shards of the files (split by a hash of their paths; every shard "
        "writes its own report, and the shards' totals add up).")),
    dry_run: bool = typer.Option(False, rich_help_panel=IO, help="Write nothing but the report."),
    force: bool = typer.Option(False, "--force", "-f", rich_help_panel=IO, help="Overwrite existing outputs."),
    preserve: bool = typer.Option(True, "--preserve/--no-preserve", rich_help_panel=IO,
                                  help="Copy the input's permission bits and modification time to the output."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=IO, help="Print the summary as JSON on stdout."),
    mapfile: Optional[Path] = typer.Option(None, rich_help_panel=MAPS,
                                           help="GNU ddrescue mapfile: bytes not '+' are unknown and filled."),
    correct_good: bool = typer.Option(D.correct_good, rich_help_panel=MAPS, help=(
        "With --mapfile, also correct suspected bit rot in the bytes it marks good ('+'); without it they "
        "are never changed.")),
    zero_runs: int = typer.Option(D.zero_runs, rich_help_panel=MAPS,
                                  help="Treat runs of at least N zero bytes as unknown (0: off)."),
    reference: Optional[List[Path]] = typer.Option(None, "--reference", rich_help_panel=MAPS, help=(
        "Another copy (repeatable): a second read of the disk or a backup fills unknown runs where 32 bytes "
        "each side match; damaged copies of a gzip, zlib, zip or PNG file merge, proven by its checksums.")),
    reference_mapfile: Optional[List[Path]] = typer.Option(None, "--reference-mapfile", rich_help_panel=MAPS, help=(
        "The ddrescue mapfile of the --reference in the same position (repeatable): a second read of the "
        "same disk then fills unknown bytes directly where it read them good.")),
    map_out: Optional[Path] = typer.Option(None, rich_help_panel=MAPS,
                                           help="Write the guessed byte ranges as a ddrescue mapfile."),
    formats: bool = typer.Option(D.formats, "--formats/--no-formats", rich_help_panel=FORMATS_PANEL, help=(
        "Repair gzip, zlib, zip and PNG files and the zlib streams of PDFs by search, accepted only when "
        "their own checksums pass.")),
    format_budget: float = typer.Option(D.format_budget, rich_help_panel=FORMATS_PANEL,
                                        help="Seconds of search per checksummed file."),
    accept_probable: bool = typer.Option(D.accept_probable, rich_help_panel=FORMATS_PANEL, help=(
        "Also write checksummed repairs that pass every check but were found among too many candidates "
        "to be called verified.")),
    model: Optional[Path] = typer.Option(None, "--model", "-m", rich_help_panel=RUNTIME,
                                         help="Checkpoint (default: the bundled model)."),
    batch_size: int = typer.Option(R.batch_fragments, "--batch-size", "-b", rich_help_panel=RUNTIME,
                                   help="Fragments per model call (0: 128 on CPU, 4096 on CUDA)."),
    gate: dict = None,
    runtime: dict = None,
):
    """Repair damaged files: a new file and a report of every byte changed; the input is never written."""
    from fragfix.model.bundled import resolve_model_path
    from fragfix.config import Runtime
    from fragfix.files.jobs import parse_shard, plan_jobs
    from fragfix.cli.render import byte_progress, draw_repair
    from fragfix.recovery.repair import repair_files
    cfg = gate_config(gate, zero_runs=zero_runs, formats=formats, format_budget=format_budget,
                      accept_probable=accept_probable, correct_good=correct_good)
    rt = Runtime(**runtime, batch_fragments=batch_size)
    check_repair_options(dry_run, output, plot, mapfile, reference, reference_mapfile)
    part = parse_shard(shard) if shard is not None else None
    jobs, skipped = plan_jobs(inputs or [], output, recursive, dry_run, mapfile, map_out, files_from, part)
    if plot is not None:
        from fragfix.errors import InvalidInput
        from fragfix.cli.pictures import repair_map, require  # matplotlib: only when --plot asks for it
        if dry_run:
            raise InvalidInput("--dry-run writes only the report; --plot would write a picture")
        require()  # a missing extra is a clear error before the run
    progress = byte_progress(err)
    with progress:
        task = progress.add_task("repairing", total=None)
        summary = repair_files(jobs, resolve_model_path(model), cfg, report, force,
                               progress=lambda n: progress.advance(task, n), preserve=preserve,
                               on_start=lambda total, m: progress.update(task, total=total), plot=plot, runtime=rt,
                               draw=None if plot is None else repair_map,
                               references=pair_references(reference, reference_mapfile),
                               on_search=lambda name, n: progress.update(task, description=(
                                   "repairing" if name is None else f"searching {escape(shown(name))}: {n:,} candidates")))
    summary["skipped"] = skipped
    if part is not None:
        summary["shard"] = {"k": part[0], "n": part[1], "files": len(jobs)}
    if as_json:
        emit_json(summary)
    draw_repair(summary, err)


@command
def salvage(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="A damaged gzip (.gz, .tar.gz), zlib or zip file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", rich_help_panel=IO, help=(
        "The content: a file for gzip and zlib (default: the name without .gz; .tgz gives .tar), a new "
        "or empty folder of entries for zip (default: NAME.salvaged).")),
    report: Optional[Path] = typer.Option(None, rich_help_panel=IO,
                                          help="Write every output's ranges (exact, unchecked, guessed, lost) as JSON."),
    force: bool = typer.Option(False, "--force", "-f", rich_help_panel=IO, help="Overwrite existing outputs."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=IO, help="Print the summary as JSON on stdout."),
    mapfile: Optional[Path] = typer.Option(None, rich_help_panel=MAPS,
                                           help="GNU ddrescue mapfile of the input: bytes not '+' are lost."),
    zero_runs: int = typer.Option(512, rich_help_panel=MAPS, help=(
        "Treat runs of at least N zero bytes in the input as lost (a sector ddrescue could not read; 0: off).")),
    map_out: Optional[Path] = typer.Option(None, rich_help_panel=MAPS, help=(
        "Write a ddrescue-style map of the content: '+' exact, '/' unchecked, '?' guessed, '-' lost (gzip, zlib).")),
    fill: bool = typer.Option(True, "--fill/--no-fill", rich_help_panel=FORMATS_PANEL, help=(
        "Guess the lost bytes that later copies of them show, from the content's own text.")),
    plot: Optional[Path] = typer.Option(None, rich_help_panel=IO, help=(
        "Draw where the content is exact, unchecked, guessed or lost (PNG; the plot extra).")),
):
    """Recover the content of a compressed file past lost bytes: every byte exact, unchecked, guessed or lost."""
    from fragfix.cli.render_salvage import draw_salvage
    from fragfix.recovery.salvage import SalvageConfig, salvage_file
    check_plot(plot)
    draw = None
    if plot is not None:
        from fragfix.cli.pictures import repair_map, require  # matplotlib: only when --plot asks for it
        require()
        draw = repair_map
    with err.status("salvaging"):
        summary = salvage_file(input_path, output, SalvageConfig(fill=fill, zero_runs=zero_runs), mapfile,
                               report, map_out, force, plot, draw)
    if as_json:
        emit_json(summary)
    draw_salvage(summary, err)


def _saying_replaced(events, old: list):
    """train's events, saying which checkpoints --force replaces once the run has passed its checks
    (its first event), not before a check refuses it."""
    for ev in events:
        if old:
            err.print(escape(f"--force: replacing {', '.join(str(p) for p in old)}"))
            old = []
        yield ev


@command
@shared("gate", "runtime")
def evaluate(
    data_dir: Optional[List[Path]] = typer.Option(None, "--data-dir", "-d", rich_help_panel=DATA,
                                                   help="Held-out files or folders (default: held-out Python stdlib files)."),
    noise: str = typer.Option(",".join(E.kinds), rich_help_panel=DATA, help=(
        "Noise kinds, KIND or KIND:LEVEL, comma-separated (a bare KIND at every --levels level; the "
        "grammar of train's --noise, without ranges).")),
    levels: str = typer.Option(",".join(f"{v:g}" for v in E.levels), rich_help_panel=DATA,
                               help="Noise levels, comma-separated."),
    max_fragments: int = typer.Option(E.max_fragments, rich_help_panel=DATA,
                                      help="Fragments to evaluate on (spread evenly over the data)."),
    seed: int = typer.Option(E.seed, rich_help_panel=DATA, help="Noise seed: the same seed prints the same numbers."),
    zero_as_unknown: bool = typer.Option(E.zero_as_unknown, rich_help_panel=DATA,
                                         help="Give zeroed runs as unknown, as a ddrescue mapfile would."),
    formats: bool = typer.Option(False, "--formats", rich_help_panel=DATA, help=(
        "Also score checksummed files (gzip, zlib, zip, PNG made from held-out text): restored and verified "
        "by damage kind, and false verified claims.")),
    format_files: int = typer.Option(4, rich_help_panel=DATA, help="Files per format with --formats."),
    format_budget: float = typer.Option(5.0, rich_help_panel=DATA, help="Seconds of search per file with --formats."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", rich_help_panel=MODEL,
                                         help="Checkpoint (default: the bundled model)."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", rich_help_panel=MODEL,
                                                 help="More checkpoints to put side by side (repeatable)."),
    samples: int = typer.Option(0, rich_help_panel=IO, help="Show N damaged fragments as original / damaged / repaired hex."),
    samples_dir: Optional[Path] = typer.Option(None, rich_help_panel=IO,
                                               help="Save the samples in this new or empty folder (text, and PNG with the plot extra)."),
    plot: Optional[Path] = typer.Option(None, rich_help_panel=IO,
                                        help="Draw error rates against noise level, and errors removed (PNG; the plot extra)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", rich_help_panel=IO,
                                            help="Write every figure and its settings as JSON."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=IO, help="Print the JSON on stdout."),
    force: bool = typer.Option(False, "--force", "-f", rich_help_panel=IO, help="Overwrite existing output files."),
    gate: dict = None,
    runtime: dict = None,
):
    """Corrupt held-out data at several noise kinds and levels, repair it, and show how much was fixed."""
    from fragfix.config import Runtime
    from fragfix.evaluation.evaluate import evaluate as run
    from fragfix.cli.render import grid_progress
    from fragfix.cli.eval_files import check_outputs, save_outputs
    from fragfix.cli.render_eval import draw_formats, draw_samples, draw_table
    from fragfix.model.runtime import set_threads
    from fragfix.errors import InvalidInput
    rt = Runtime(**runtime)
    if samples < 0:
        raise InvalidInput(f"--samples must not be negative, got {samples}")
    if formats and (format_files < 1 or not 0 < format_budget <= 3600):  # before the run, not after it
        raise InvalidInput("--format-files must be at least 1 and --format-budget within (0, 3600]")
    cfg = EvalConfig(data=[str(p) for p in data_dir] if data_dir else None,
                     models=[str(model) if model else None] + [str(c) for c in compare or []],
                     noise=noise, levels=parse_floats(levels, "--levels"),
                     max_fragments=max_fragments, seed=seed, zero_as_unknown=zero_as_unknown,
                     samples=max(samples, 4 if samples_dir else 0), repair=gate_config(gate), runtime=rt)
    check_outputs(plot, json_out, samples_dir, force, reads=[p for p in [model, *(compare or []), *(data_dir or [])]
                                                              if p is not None])
    set_threads(rt.threads)
    progress = grid_progress(err)
    with progress:
        task = progress.add_task("evaluating", total=len(cfg.cells))
        result = run(cfg, progress=lambda done, total: progress.update(task, completed=done, total=total))
    if formats:
        from fragfix.model.bundled import resolve_model_path
        from fragfix.evaluation.formats_grid import held_out_samples, score_grid
        from fragfix.model.inference import load_scorer, model_scorer
        surprise = model_scorer(load_scorer(resolve_model_path(model), rt.device, rt.precision)[0])  # as repair uses it
        with grid_progress(err) as progress:
            task = progress.add_task("checksummed files", total=None)
            result["formats"] = {"files": format_files, "budget_s": format_budget, "rows": score_grid(
                held_out_samples(format_files, seed), format_budget, seed,
                progress=lambda done, total: progress.update(task, completed=done, total=total), scorer=surprise)}
    draw_table(result, err)
    if formats:
        draw_formats(result["formats"], err)
    draw_samples(result["samples"][:samples], err)
    for line in save_outputs(result, samples_dir, plot, json_out, force):
        err.print(line, markup=False)
    if as_json:
        emit_json(result)


def main() -> None:
    app(prog_name="fragfix")
