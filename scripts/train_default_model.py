"""Train the model bundled with fragfix, reproducibly, on the running Python's standard library.

    python scripts/train_default_model.py            # writes fragfix/models/default.safetensors

Fixed seed, fixed recipe; the held-out files (one in ten, by a hash of their path) are never
trained on, and `fragfix evaluate` measures on them by default.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fragfix.autoencoder import ModelConfig
from fragfix.checkpoints import load_model, save_model
from fragfix.sample import python_sample
from fragfix.training import Epoch, Finished, Started, Step, TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "python scripts/train_default_model.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps-per-epoch", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--channels", default="32,48,64,96")
    ap.add_argument("--refine", type=int, default=1)
    ap.add_argument("--work-dir", default=str(ROOT / "runs" / "default"))
    ap.add_argument("--out", default=str(ROOT / "fragfix" / "models" / "default.safetensors"))
    ap.add_argument("--resume", action="store_true", help="continue the run in --work-dir")
    ap.add_argument("--force", action="store_true", help="replace the checkpoints in --work-dir")
    a = ap.parse_args()
    train_files, val_files = python_sample(("text", "binary"))
    cfg = TrainConfig(data=[str(p) for p in train_files], val_data=[str(p) for p in val_files],
                      out_dir=a.work_dir, epochs=a.epochs, steps_per_epoch=a.steps_per_epoch,
                      batch_size=a.batch_size, max_val_fragments=1024, seed=0, precision="auto",
                      resume=a.resume, force=a.force,
                      model=ModelConfig(channels=tuple(int(c) for c in a.channels.split(",")), refine=a.refine))
    t0 = time.time()
    for ev in train(cfg):
        if isinstance(ev, Step) and ev.step % 50 == 0:
            print(f"epoch {ev.epoch} step {ev.step}/{ev.steps} loss {ev.loss:.4f} {ev.fragments_per_s:.0f} frag/s",
                  file=sys.stderr, flush=True)
        elif isinstance(ev, (Started, Epoch, Finished)):
            print(ev, file=sys.stderr, flush=True)
    model, info = load_model(Path(a.work_dir) / "autoencoder_best.safetensors")
    info.pop("path", None)
    info.pop("created", None)
    info["recipe"] = RECIPE + " " + " ".join(sys.argv[1:])
    info["data"]["description"] = (f"Python {sys.version.split()[0]} standard library: {len(train_files)} train files, "
                                   f"{len(val_files)} held out (sha256(relative path) % 10 == 0)")
    info["train_seconds"] = round(time.time() - t0)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    save_model(Path(a.out), model, info)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
