import json
import pickle
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from fragfix.model.autoencoder import FragmentAutoencoder, ModelConfig
from fragfix.model.checkpoints import FORMAT, describe, load_model, save_model
from fragfix.cli.commands import app
from fragfix.errors import CheckpointError, FragfixError

runner = CliRunner()
SMALL = ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.safetensors"
    save_model(p, FragmentAutoencoder(SMALL), {"epoch": 3, "val_loss": 1.5})
    return p


def test_roundtrip_rebuilds_the_model_from_its_own_config(good):
    model, info = load_model(good)
    assert model.config == SMALL and info["epoch"] == 3 and info["fragfix_version"]
    d = describe(good)
    assert d["parameters"] == model.num_parameters() and d["model"]["channels"] == [8, 8, 16, 16]


def _meta(cfg: dict, version="1"):
    return {"format": FORMAT, "format_version": version, "model_config": json.dumps(cfg), "info": "{}"}


def bad_checkpoints(tmp_path, good):
    data = good.read_bytes()
    state = {k: v.contiguous() for k, v in FragmentAutoencoder(SMALL).state_dict().items()}
    wrong_shape = dict(state)
    wrong_shape["logits.bias"] = torch.zeros(255)
    wrong_dtype = {k: v.double() if k == "logits.bias" else v for k, v in state.items()}
    cases = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random": bytes(range(256)) * 40,
        "pickle": pickle.dumps({"state_dict": {"a": 1}}),
        "torch_save": None,
        "foreign": st_save({"w": torch.zeros(3)}),
        "other_version": st_save(state, metadata=_meta(SMALL.to_dict(), "99")),
        "bad_config": st_save(state, metadata=_meta({"head": "categorical", "channels": [8, 8], "bogus": 1})),
        "mismatched_config": st_save(state, metadata=_meta(ModelConfig().to_dict())),
        "wrong_shape": st_save(wrong_shape, metadata=_meta(SMALL.to_dict())),
        "wrong_dtype": st_save(wrong_dtype, metadata=_meta(SMALL.to_dict())),
        "huge_header": struct.pack("<Q", 1 << 40) + b"{}",
        "nan": st_save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                        for k, v in state.items()}, metadata=_meta(SMALL.to_dict())),
    }
    out = {}
    for name, blob in cases.items():
        p = tmp_path / f"{name}.safetensors"
        if blob is None:
            torch.save({"x": torch.zeros(2)}, p)
        else:
            p.write_bytes(blob)
        out[name] = p
    return out


def test_every_bad_checkpoint_is_refused_cleanly(tmp_path, good):
    for name, p in bad_checkpoints(tmp_path, good).items():
        with pytest.raises(CheckpointError):
            load_model(p)
        r = runner.invoke(app, ["info", str(p)])
        assert r.exit_code == 2, (name, r.output)
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_missing_and_folder_checkpoints(tmp_path):
    for p, msg in ((tmp_path / "nope.safetensors", "not found"), (tmp_path, "folder")):
        r = runner.invoke(app, ["info", str(p)])
        assert r.exit_code == 2 and msg in r.output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(tmp_path_factory, blob):
    p = tmp_path_factory.mktemp("rnd") / "x.safetensors"
    p.write_bytes(blob)
    with pytest.raises(FragfixError):
        load_model(p)


def test_info_shows_the_recipe_and_what_the_model_was_trained_on(tmp_path):
    p = tmp_path / "m.safetensors"
    data = {"train": {"files": 3, "fragments": 40}, "val": {"files": 1, "fragments": 5},
            "description": "the standard library and 2 core distributions",
            "held_out_kinds": [".md", ".csv"], "top_kinds": {".py": 2, ".h": 1}, "distributions": ["numpy==2.0"]}
    save_model(p, FragmentAutoencoder(ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)),
               {"data": data, "recipe": "python scripts/train_default_model.py", "train_seconds": 600})
    r = runner.invoke(app, ["info", str(p)], terminal_width=200)
    assert r.exit_code == 0, r.output
    for text in ("the standard library and 2 core distributions", "never trained on", ".md .csv", ".py 2, .h 1",
                 "numpy==2.0", "10 min", "python scripts/train_default_model.py"):
        assert text in r.output, text


def test_every_bad_checkpoint_is_refused_by_repair_before_any_work(tmp_path, good):
    """The default rule on a plain file never runs the model, but a --model of the user's own is
    checked at the start all the same: refused in one line, nothing written."""
    src = tmp_path / "plain.txt"
    src.write_bytes(b"a line of text\n" * 200)
    for name, p in bad_checkpoints(tmp_path, good).items():
        r = runner.invoke(app, ["repair", str(src), "-m", str(p), "-o", str(tmp_path / "out.txt")])
        assert r.exit_code == 2, (name, r.output)
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, (name, r.output)
        assert not (tmp_path / "out.txt").exists(), name


def test_damaged_weights_are_found_without_torch(tmp_path, good):
    """The header check reads every tensor's size and every float's finiteness with numpy: the
    bundled model's path (never loaded for plain files) refuses a damaged file too."""
    from fragfix.model.header import summary
    bad = bad_checkpoints(tmp_path, good)
    for name in ("nan", "truncated", "foreign", "other_version", "bad_config"):
        with pytest.raises(CheckpointError):
            summary(bad[name])
    assert summary(good)["head"] == "categorical"
