import os

import pytest
import torch

from fragfix.errors import InvalidInput
from fragfix.training.fragments import FragmentDataset, list_files, split_files


def write(p, n, byte=None):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(bytes((i * 7 + 3) % 256 if byte is None else byte for i in range(n)))
    return p


def test_fragments_padded_or_dropped(tmp_path):
    a = write(tmp_path / "a.bin", 1300)
    ds = FragmentDataset([a], partial="pad")
    assert len(ds) == 3 and ds.length(2) == 1300 - 1024
    assert ds[2][:276].tolist() == list(a.read_bytes()[1024:]) and ds[2][276:].sum() == 0
    assert torch.equal(ds[1], torch.tensor(list(a.read_bytes()[512:1024]), dtype=torch.uint8))
    assert len(FragmentDataset([a], partial="drop")) == 2


def test_folder_walk_is_recursive_sorted_and_notes_skips(tmp_path):
    write(tmp_path / "z" / "deep.bin", 600)
    write(tmp_path / "b.bin", 512)
    write(tmp_path / "empty.bin", 0)
    write(tmp_path / "short.bin", 100)
    files = list_files([tmp_path])
    assert [f.name for f in files] == ["b.bin", "empty.bin", "short.bin", "deep.bin"]
    ds = FragmentDataset(files, partial="drop")
    assert len(ds) == 2
    assert dict(ds.skipped) == {str(tmp_path / "empty.bin"): "empty", str(tmp_path / "short.bin"): "shorter than one fragment"}


def test_split_is_by_file_and_deterministic(tmp_path):
    files = [write(tmp_path / f"f{i}.bin", 512 * (i + 2)) for i in range(10)]
    tr, va = split_files(files, 0.3, seed=5)
    tr2, va2 = split_files(files, 0.3, seed=5)
    assert {s.path for s in tr.spans}.isdisjoint({s.path for s in va.spans})
    assert [s.path for s in va.spans] == [s.path for s in va2.spans] and len(va.spans) == 3
    _, va3 = split_files(files, 0.3, seed=6)
    assert [s.path for s in va3.spans] != [s.path for s in va.spans]


def test_single_file_split_uses_a_contiguous_tail(tmp_path):
    f = write(tmp_path / "one.bin", 512 * 10)
    tr, va = split_files([f], 0.2, seed=0)
    assert len(tr) == 8 and len(va) == 2
    assert torch.equal(va[0], FragmentDataset([f])[8])


def test_missing_and_empty_inputs_give_clear_errors(tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        list_files([tmp_path / "nope"])
    write(tmp_path / "e.bin", 0)
    with pytest.raises(InvalidInput, match="no usable fragments"):
        split_files(list_files([tmp_path]), 0.1, 0, partial="drop")
    with pytest.raises(InvalidInput, match="validation fraction"):
        split_files([write(tmp_path / "x.bin", 2048)], 1.5, 0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_skipped(tmp_path):
    f = write(tmp_path / "locked.bin", 2048)
    f.chmod(0)
    ds = FragmentDataset([f])
    assert len(ds) == 0 and ds.skipped == [(str(f), "unreadable")]
