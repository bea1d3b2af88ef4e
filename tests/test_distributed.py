"""torchrun (2 CPU processes, gloo) and device selection; CUDA paths run where CUDA exists."""
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from fragfix.model.checkpoints import load_model
from fragfix.cli.commands import app
from fragfix.rule.decide import RepairConfig, repair_bytes
from fragfix.errors import InvalidInput
from fragfix.model.runtime import resolve_device

from conftest import make_corpus, text_bytes

runner = CliRunner()


def torchrun(*args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "fragfix", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_two_process_gloo_training_then_single_process_repair(tmp_path):
    data = make_corpus(tmp_path / "data", files=6, size=16384)
    ck = tmp_path / "ck"
    common = ["train", "-d", data, "-o", ck, "-b", "8", "--channels", "16,16,32,32", "--threads", "1"]
    r = torchrun(*common, "--epochs", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("best checkpoint:") == 1  # rank 0 alone reports
    assert sorted(p.name for p in ck.iterdir()) == ["autoencoder_best.safetensors", "autoencoder_last.resume.safetensors",
                                                     "autoencoder_last.safetensors"]
    r = torchrun(*common, "--epochs", "2", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming after epoch 1" in r.stderr
    model, info = load_model(ck / "autoencoder_last.safetensors")
    assert info["epoch"] == 2
    data = text_bytes(3000, 1)
    assert len(repair_bytes(model, data, RepairConfig())) == 3000


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "cuda:x"):
        with pytest.raises(InvalidInput):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_train_and_repair_match_cpu_in_kind(tmp_path):
    data = make_corpus(tmp_path / "data", files=4, size=16384)
    r = runner.invoke(app, ["train", "-d", str(data), "-o", str(tmp_path / "ck"), "--epochs", "1", "--device", "cuda",
                            "--precision", "auto", "--channels", "16,16,32,32"])
    assert r.exit_code == 0, r.output
    src = tmp_path / "in.bin"
    src.write_bytes(text_bytes(100_000, 2))
    for dev in ("cpu", "cuda"):
        r = runner.invoke(app, ["repair", str(src), "-o", str(tmp_path / f"o_{dev}"), "--device", dev,
                                "-m", str(tmp_path / "ck" / "autoencoder_best.safetensors")])
        assert r.exit_code == 0, r.output
        assert (tmp_path / f"o_{dev}").stat().st_size == 100_000


def test_automatic_threads_keep_to_omp_num_threads(monkeypatch):
    """0 (automatic) uses the cores available, at most OMP_NUM_THREADS: two programs sharing a machine
    each set to its share do not spin against each other; an explicit count is still checked
    against the cores themselves."""
    from fragfix.config import check_count
    from fragfix.machine import available_cores, default_cores
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_cores() == available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_cores() == 1 and check_count(available_cores(), "--threads") == available_cores()
    before = torch.get_num_threads()
    try:
        from fragfix.model.runtime import set_threads
        set_threads(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for junk in ("", "x", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert default_cores() == available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "0")
    assert default_cores() == 1
