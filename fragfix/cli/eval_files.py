"""The files `fragfix evaluate` writes (--plot, --json-out, --samples-dir): checked before the run,
written together after it (one atomic batch), never over anything the run reads."""
from __future__ import annotations

from pathlib import Path


def check_outputs(plot, json_out, samples_dir, force: bool, reads: list) -> None:
    """Every file evaluate will write, checked before the run: not over existing files without
    --force, never a path it reads, the samples folder new or empty, matplotlib there if needed."""
    from fragfix.files.atomic import check_distinct, check_output_folder, check_output_path
    for out in (plot, json_out):
        if out is not None:
            check_output_path(out, force)
    if samples_dir is not None:
        check_output_folder(samples_dir, force)
    check_distinct([o for o in (plot, json_out, samples_dir) if o is not None],
                   [(p, "model or data this command reads") for p in reads])
    # a file inside a data folder is data this command reads (and the next run would read the output)
    from fragfix.errors import InvalidInput
    for out in (plot, json_out, samples_dir):
        if out is None:
            continue
        o = Path(out).resolve()
        for d in (Path(r).resolve() for r in reads if Path(r).is_dir()):
            if d in o.parents or o == d or (out is samples_dir and d.is_relative_to(o)):
                raise InvalidInput(f"{out} is inside the data folder {d} (or holds it): write it elsewhere")
    if plot is not None:
        from fragfix.cli.pictures import require
        if Path(plot).suffix.lower() != ".png":
            raise InvalidInput(f"--plot draws a PNG picture: give a name ending in .png, not {plot}")
        require()  # a missing extra is a clear error before the run, not after it


def save_outputs(result: dict, samples_dir, plot, json_out, force: bool) -> list[str]:
    """Write evaluate's files, all together or none (one atomic batch); lines saying where they went."""
    import json
    from fragfix.files.atomic import Batch, atomic_write
    from fragfix.cli.pictures import evaluate_figure, save_samples
    with Batch(final=True) as batch:
        if samples_dir is not None:
            save_samples(result["samples"], samples_dir, batch)
        if plot is not None:
            evaluate_figure(result, plot, batch)
        if json_out is not None:
            with atomic_write(json_out, force=force, batch=batch) as f:
                f.write(json.dumps(result, indent=1).encode())
    return [f"{what} {path}" for what, path in (("samples saved in", samples_dir), ("plot:", plot),
                                                ("json:", json_out)) if path is not None]
