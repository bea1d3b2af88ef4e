"""Context counts: exact against brute force, unknown bytes never vote, and repairs they enable."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fragfix.model.autoencoder import FragmentAutoencoder, ModelConfig
from fragfix.rule.context import OrderCounts, posterior
from fragfix.rule.decide import RepairConfig, decide


def brute(buf, known, j, k, b):
    """c(b) and n for query j: other positions i with the same known context and a known middle."""
    n = len(buf)
    if not (k <= j < n - k) or not all(known[j - k:j]) or not all(known[j + 1:j + k + 1]):
        return 0, 0
    ctx = lambda i: (bytes(buf[i - k:i]), bytes(buf[i + 1:i + k + 1]))
    same = [i for i in range(k, n - k) if i != j and known[i - k:i + k + 1].all() and ctx(i) == ctx(j)]
    return sum(buf[i] == b for i in same), len(same)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 3))
def test_counts_match_brute_force(seed, k, alphabet):
    rng = np.random.default_rng(seed)
    buf = rng.integers(0, alphabet + 1, 300).astype(np.uint8)  # small alphabets: contexts repeat
    known = rng.random(300) > 0.05
    q = rng.choice(300, 25, replace=False)
    oc = OrderCounts(buf, known, q, k)
    cand = rng.integers(0, alphabet + 1, (25, 3))
    c, n = oc.lookup(slice(None), cand, buf[q].astype(np.int64))
    for i, j in enumerate(q):
        for m in range(3):
            assert (c[i, m], n[i, 0]) == brute(buf, known, j, k, cand[i, m]), (j, cand[i, m])
    # scanning only a lower order's hits finds the same counts (a longer context implies the shorter)
    chained = OrderCounts(buf, known, q, k, sources=OrderCounts(buf, known, q, max(1, k - 1)).hits)
    for a, b in zip(chained.lookup(slice(None), cand, buf[q].astype(np.int64)), (c, n)):
        assert np.array_equal(a, b)


def test_posterior_overrides_an_unsure_model_only_where_context_repeats():
    text = np.frombuffer(b"alpha beta gamma; " * 40 + b"unique tail xyz", dtype=np.uint8).copy()
    text[100] = ord("Q")  # inside a "beta"/"gamma" that occurs 39 more times
    q = np.array([100, len(text) - 2])
    uniform_b = np.tile(np.arange(8, dtype=np.uint8), (2, 1))
    uniform_p = np.full((2, 8), 1 / 256, dtype=np.float32)
    best, p_best, p_obs = posterior(text, np.ones(len(text), bool), q, uniform_b, uniform_p,
                                    np.full(2, 1 / 256, np.float32), (3, 4), 1.0)
    truth = (b"alpha beta gamma; " * 40)[100]
    assert best[0] == truth and p_best[0] > 0.9 and p_obs[0] < 1e-3
    assert p_best[1] < 0.1  # "xyz" has no repeated context: the model's flat guess stands


def test_decide_repairs_from_context_alone_and_leaves_clean_text_alone():
    torch.manual_seed(0)
    model = FragmentAutoencoder(ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)).eval()
    with torch.no_grad():
        model.detector.bias.fill_(5.0)  # an untrained model with a detector that looks everywhere
    clean = torch.frombuffer(bytearray(b"the quick brown fox jumps over the lazy dog. " * 46)[:2048],
                             dtype=torch.uint8).view(4, 512).clone()
    damaged = clean.clone()
    damaged[1, 200] = ord("#")
    damaged[3, 17] ^= 0x20
    cfg = RepairConfig(rule="model", damage_gate=False)  # the per-byte rule alone (the damage gate: test_damage.py)
    assert torch.equal(decide(model, damaged, None, cfg).fragments, clean)
    assert not decide(model, clean, None, cfg).changed.any()
    assert torch.equal(decide(model, damaged, None, RepairConfig(rule="model", context_orders=())).fragments, damaged)


def test_cli_gate_defaults_are_the_library_defaults():
    """The CLI's gate options, at their defaults, give exactly the library's RepairConfig (the
    context and window options are converted, so this is a round trip, not a copy)."""
    from fragfix.cli import options as o
    assert o.gate_config({name: opt.default for name, (_, opt) in o.GROUPS["gate"].items()}) == RepairConfig()


def test_unknown_runs_are_filled_with_the_string_that_fills_the_same_gap_elsewhere():
    torch.manual_seed(0)
    model = FragmentAutoencoder(ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)).eval()
    line = b"for item in records: total += item.value  # sum\n"
    clean = torch.frombuffer(bytearray((line * 43)[:2048]), dtype=torch.uint8).view(4, 512).clone()
    damaged, unknown = clean.clone(), torch.zeros(4, 512, dtype=torch.bool)
    for r, a, n in ((0, 100, 12), (2, 300, 5), (3, 480, 16)):  # runs of 5-16 unknown bytes
        damaged[r, a:a + n] = 0
        unknown[r, a:a + n] = True
    d = decide(model, damaged, unknown, RepairConfig(rule="model"))
    assert torch.equal(d.fragments, clean)
    assert (d.confidence[unknown] == 1.0).all()  # every source agreed
    # without context the untrained model guesses the bytes one by one, and gets them wrong
    assert not torch.equal(decide(model, damaged, unknown, RepairConfig(rule="model", context_orders=())).fragments, clean)


def test_one_bit_corrections_get_higher_floors():
    """A model that always says 'a' (0.6) and finds 'A' (one bit away) and 'b' (two bits) unlikely
    (0.002): 'A' is corrected only when one-bit corrections get the higher floor; 'b' never is."""
    model = FragmentAutoencoder(ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)).eval()
    p = torch.full((256,), (1 - 0.6 - 2 * 0.002) / 253)
    p[ord("a")], p[ord("A")], p[ord("b")] = 0.6, 0.002, 0.002
    with torch.no_grad():
        model.logits.weight.zero_()
        model.logits.bias.copy_(p.log())
        model.detector.bias.fill_(5.0)
    frags = torch.full((1, 512), ord("a"), dtype=torch.uint8)
    frags[0, 10], frags[0, 20] = ord("A"), ord("b")
    plain = RepairConfig(rule="model", context_orders=(), one_bit_factor=1.0, damage_gate=False)
    assert not decide(model, frags, None, plain).changed.any()
    d = decide(model, frags, None, RepairConfig(rule="model", context_orders=(), one_bit_factor=3.0, damage_gate=False))
    assert d.changed.nonzero().tolist() == [[0, 10]] and d.fragments[0, 10] == ord("a")


def test_a_second_pass_starts_from_the_first_ones_output(trained):
    from conftest import text_bytes
    from fragfix.model.checkpoints import load_model
    model, _ = load_model(trained)
    clean = torch.frombuffer(bytearray(text_bytes(64 * 512, 5)), dtype=torch.uint8).view(64, 512)
    damaged = clean.clone()
    hit = torch.rand(damaged.shape, generator=torch.Generator().manual_seed(0)) < 0.08
    damaged[hit] = torch.randint(0, 256, (int(hit.sum()),), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    one = RepairConfig()
    first = decide(model, damaged, None, one)
    twice = decide(model, damaged, None, RepairConfig(passes=2))
    assert torch.equal(twice.fragments, decide(model, first.fragments, None, one).fragments)
    assert torch.equal(twice.changed, twice.fragments != damaged)
    assert (twice.fragments != clean).sum() <= (first.fragments != clean).sum()


@pytest.mark.parametrize("tail", [0, 1])
def test_a_gap_whose_right_context_ends_at_the_window_edge_is_filled(tail):
    """The gap's k known bytes on the right end exactly at the window's last byte (tail = 0; k the
    shortest order, so no other order can stand in): its context is whole, and the gap is filled
    from the other places with that context."""
    from fragfix.rule.context import GAP_ORDERS, fill_gaps
    k = min(GAP_ORDERS)
    s = np.frombuffer(b"the cat sat on the mat. " * 40 + b"x" * tail, np.uint8).copy()
    n = len(s)
    a = n - tail - k - 3  # a 3-byte gap, then k known bytes, then `tail` more
    known = np.ones(n, bool)
    known[a:a + 3] = False
    q = np.arange(a, a + 3)
    top_b = np.zeros((3, 1), np.int64)
    top_p = np.full((3, 1), 1e-3)
    rows, vals, _ = fill_gaps(np.where(known, s, 0).astype(np.uint8), known, q, top_b, top_p)
    assert rows.tolist() == [0, 1, 2] and bytes(vals) == bytes(s[a:a + 3])


def test_floors_open_where_damage_is_dense_without_the_one_bit_factor():
    """The damage gate opens the floors up to max_scale where the data shows dense damage: a byte the
    model gives 0.03 (above model_floor 0.02, within 3x) is corrected there even with
    one_bit_factor 1, and not where the gate is off (the filter before the head once cut at
    model_floor * one_bit_factor, so the floors never opened)."""
    model = FragmentAutoencoder(ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)).eval()
    p = torch.full((256,), (1 - 0.8 - 0.03) / 254)  # every other byte a clear error (p <= 1e-3)
    p[ord("a")], p[ord("A")] = 0.8, 0.03
    with torch.no_grad():
        model.logits.weight.zero_()
        model.logits.bias.copy_(p.log())
        model.detector.bias.fill_(5.0)
    rng = np.random.default_rng(0)
    frags = torch.full((64, 512), ord("a"), dtype=torch.uint8)
    flat = frags.view(-1)
    hit = rng.choice(np.arange(1, flat.numel() - 1), 1500, replace=False)  # ~4.6% damage: the scale tops out
    flat[hit] = torch.from_numpy(rng.choice([v for v in range(256) if v not in b"aA"], len(hit)).astype(np.uint8))
    far = int(np.setdiff1d(np.arange(100, 30000), np.concatenate([hit - 4, hit, hit + 4]))[7])
    flat[far] = ord("A")
    kw = dict(rule="model", context_orders=(), one_bit_factor=1.0, floor=0.02, model_floor=0.02)
    dense = decide(model, frags, None, RepairConfig(**kw))
    assert dense.changed.view(-1)[far] and dense.fragments.view(-1)[far] == ord("a")
    assert not decide(model, frags, None, RepairConfig(damage_gate=False, **kw)).changed.view(-1)[far]
