import json

import pytest
from typer.testing import CliRunner

from fragfix.model.autoencoder import ModelConfig
from fragfix.model.checkpoints import describe, load_model
from fragfix.cli.commands import app
from fragfix.training.loop import Epoch, Finished, TrainConfig, train

from conftest import TINY, make_corpus, text_bytes

runner = CliRunner()


@pytest.mark.parametrize("head", ["categorical", "sigmoid"])
def test_loss_falls_over_epochs_on_structured_data(tmp_path, corpus, head):
    cfg = TrainConfig(data=[str(corpus)], out_dir=str(tmp_path / "ck"), epochs=4, batch_size=16, lr=5e-3,
                      seed=0, threads=2, model=ModelConfig(head=head, **TINY))
    epochs = [e for e in train(cfg) if isinstance(e, Epoch)]
    losses = [e.train_loss for e in epochs]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0], losses
    assert epochs[-1].val_loss < epochs[0].val_loss
    assert (tmp_path / "ck" / "autoencoder_best.safetensors").is_file()
    model, info = load_model(tmp_path / "ck" / "autoencoder_last.safetensors")
    assert model.config.head == head and info["epoch"] == 4


def test_resume_continues_where_it_stopped(tmp_path, corpus):
    kw = dict(data=[str(corpus)], out_dir=str(tmp_path / "ck"), batch_size=16, seed=0, threads=2,
              model=ModelConfig(**TINY))
    list(train(TrainConfig(epochs=2, **kw)))
    events = list(train(TrainConfig(epochs=3, resume=True, **kw)))
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [3]
    assert events[0].resumed and events[0].start_epoch == 2
    assert describe(tmp_path / "ck" / "autoencoder_last.safetensors")["epoch"] == 3


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, corpus):
    import torch
    kw = dict(data=[str(corpus)], batch_size=16, seed=3, threads=2, model=ModelConfig(**TINY))
    list(train(TrainConfig(epochs=2, out_dir=str(tmp_path / "a"), **kw)))
    run = train(TrainConfig(epochs=2, out_dir=str(tmp_path / "b"), **kw))
    for ev in run:  # interrupted right after the first epoch's checkpoints
        if isinstance(ev, Epoch):
            run.close()
            break
    list(train(TrainConfig(epochs=2, out_dir=str(tmp_path / "b"), resume=True, **kw)))
    a, _ = load_model(tmp_path / "a" / "autoencoder_last.safetensors")
    b, _ = load_model(tmp_path / "b" / "autoencoder_last.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k


def test_early_stopping(tmp_path, corpus):
    cfg = TrainConfig(data=[str(corpus)], out_dir=str(tmp_path / "ck"), epochs=30, batch_size=16, lr=1e-9,
                      patience=1, steps_per_epoch=1, threads=2, model=ModelConfig(**TINY))
    fin = list(train(cfg))[-1]
    assert isinstance(fin, Finished) and fin.stopped_early and fin.epochs_run < 30


def test_original_verification_command(tmp_path, monkeypatch):
    """`fragfix train --epochs 1 --batch-size 4 --data-dir dataset/fragments/` writes the best model."""
    monkeypatch.chdir(tmp_path)
    make_corpus(tmp_path / "dataset" / "fragments", files=3, size=4096)
    r = runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "4", "--data-dir", "dataset/fragments/",
                            "--channels", "16,16,32,32", "--threads", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "checkpoints" / "autoencoder_best.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "autoencoder_last.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "autoencoder_last.resume.safetensors").is_file()
    assert not list((tmp_path / "checkpoints").glob("*.fragfix-tmp"))


def test_cli_train_then_info(tmp_path, corpus):
    ck = tmp_path / "ck"
    r = runner.invoke(app, ["train", "-d", str(corpus), "--epochs", "2", "-b", "16", "-o", str(ck),
                            "--channels", "16,16,32,32", "--head", "sigmoid", "--json", "--threads", "2"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["epochs"] == 2 and len(summary["history"]) == 2
    r = runner.invoke(app, ["info", str(ck / "autoencoder_best.safetensors"), "--json"])
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["model"]["head"] == "sigmoid" and d["data"]["train"]["files"] >= 1 and d["epoch"] >= 1
    tc = d["train_config"]  # the schedule and the loss's settings are recorded with the weights
    assert (tc["warmup"], tc["final_lr"], tc["grad_clip"], tc["clean_share"]) == (100, 0.05, 1.0, 0.125)
    r = runner.invoke(app, ["info", str(ck / "autoencoder_last.safetensors")])
    assert r.exit_code == 0 and "sigmoid" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs"),
    (["--batch-size", "0"], "batch size"),
    (["--head", "softmax"], "unknown head"),
    (["--noise", "salt:0.1"], "unknown noise kind"),
    (["--noise", "byte:1.5"], "within [0, 1]"),
    (["--channels", "a,b"], "--channels"),
    (["--val-fraction", "1"], "validation fraction"),
    (["--device", "tpu"], "device"),
])
def test_bad_train_options_are_one_line_errors(tmp_path, corpus, args, message):
    r = runner.invoke(app, ["train", "-d", str(corpus), "-o", str(tmp_path / "ck")] + args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").iterdir())


def test_resume_without_checkpoint_is_an_error(tmp_path, corpus):
    r = runner.invoke(app, ["train", "-d", str(corpus), "-o", str(tmp_path / "ck"), "--resume"])
    assert r.exit_code == 2 and "nothing to resume" in r.output


def test_damaged_resume_state_is_a_clear_error(tmp_path, corpus):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "autoencoder_last.resume.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}garbage")
    r = runner.invoke(app, ["train", "-d", str(corpus), "-o", str(ck), "--resume"])
    assert r.exit_code == 2 and "not a fragfix resume state (unreadable header)" in r.output and "Traceback" not in r.output


def test_an_interrupted_run_leaves_no_empty_checkpoint_folder(tmp_path):
    """Stopped before its first checkpoint, a run takes back the folder it made (and only that one)."""
    from fragfix.model.autoencoder import ModelConfig
    from fragfix.training.loop import Started, TrainConfig, train
    data = make_corpus(tmp_path / "data", files=3, size=4096)
    for out, made in ((tmp_path / "new" / "ck", False), (tmp_path / "there", True)):
        if made:
            out.mkdir()
        run = train(TrainConfig(data=[str(data)], out_dir=str(out), epochs=1, batch_size=4, model=ModelConfig(**TINY)))
        assert isinstance(next(run), Started) and out.is_dir()
        run.close()  # what an interrupt does to the generator
        assert out.is_dir() == made


def test_one_training_file_says_its_validation_is_a_tail_of_it(tmp_path):
    """With one file there is no held-out file: validation is its last fragments, and the run says so."""
    from typer.testing import CliRunner
    from fragfix.cli.commands import app
    (tmp_path / "only.txt").write_bytes(text_bytes(40_000, 1))
    r = CliRunner().invoke(app, ["train", "-d", str(tmp_path / "only.txt"), "-o", str(tmp_path / "ck"), "--epochs", "1",
                                 "-b", "8", "--channels", "8,8,16,16", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "one training file: validation is its last" in r.output and "not a held-out file" in r.output
