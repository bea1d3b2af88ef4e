"""Shared fixtures: small structured corpora the tests generate, and a tiny trained model."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several test processes (pytest -n): one core's worth each,
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # or their thread pools spin against each other (set before torch)

WORDS = ("the quick brown fox jumps over lazy dog data file byte repair model sector disk "
         "archive rotted bits fragment value table index record header").split()


def text_bytes(n: int, seed: int) -> bytes:
    """Deterministic text-like bytes: words, punctuation and line structure, like source or prose."""
    rng = random.Random(seed)
    out = []
    size = 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) + ".\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def make_corpus(folder: Path, files: int = 6, size: int = 8192, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (folder / f"doc{i}.txt").write_bytes(text_bytes(size, seed * 1000 + i))
    return folder


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path / "corpus")


TINY = dict(channels=(16, 16, 32, 32), embed_dim=8, mid_layers=1)


@pytest.fixture(scope="session")
def untrained(tmp_path_factory) -> Path:
    """A tiny model with random weights: enough for the plumbing (lengths, reports, safety)."""
    from fragfix.model.autoencoder import FragmentAutoencoder, ModelConfig
    from fragfix.model.checkpoints import save_model
    p = tmp_path_factory.mktemp("untrained") / "untrained.safetensors"
    save_model(p, FragmentAutoencoder(ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)), {})
    return p


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A small categorical model trained for a few seconds on text-like data (8 epochs: every test that
    uses it passes as with 25); shared by the session."""
    from fragfix.model.autoencoder import ModelConfig
    from fragfix.training.loop import Finished, TrainConfig, train
    root = tmp_path_factory.mktemp("trained")
    data = make_corpus(root / "data", files=8, size=32768, seed=7)
    cfg = TrainConfig(data=[str(data)], out_dir=str(root / "ck"), epochs=8, batch_size=32, lr=1e-2,
                      noise="byte:0.01-0.1,zero:0.01-0.1", seed=0,
                      model=ModelConfig(channels=(32, 32, 48, 64), embed_dim=16, mid_layers=2))
    *_, fin = train(cfg)
    assert isinstance(fin, Finished)
    return Path(fin.best_path)
