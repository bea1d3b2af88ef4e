import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fragfix.training.noise import KINDS, NoiseGenerator, NoiseSpec, parse_noise


def clean(n=400, seed=0):
    return torch.randint(0, 256, (n, 512), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.2])
def test_byte_rate_matches_p(p):
    x = clean()
    out = NoiseGenerator(NoiseSpec("byte", p), seed=1)(x)
    rate = out.mask.float().mean().item()
    n = x.numel()
    assert abs(rate - p) < 5 * (p * (1 - p) / n) ** 0.5  # within 5 standard errors


@pytest.mark.parametrize("p", [0.001, 0.01])
def test_bitflip_bit_rate_matches_p(p):
    x = clean()
    out = NoiseGenerator(NoiseSpec("bitflip", p), seed=2)(x)
    flipped = torch.bitwise_xor(out.fragments, x)
    bits = sum(((flipped >> k) & 1).sum().item() for k in range(8))
    n = x.numel() * 8
    assert abs(bits / n - p) < 5 * (p / n) ** 0.5


@pytest.mark.parametrize("kind", ["burst", "zero"])
@pytest.mark.parametrize("p", [0.02, 0.1])
def test_run_kinds_cover_about_p(kind, p):
    x = torch.full((2000, 512), 0x41, dtype=torch.uint8)  # no zeros, so every zeroed byte shows
    out = NoiseGenerator(NoiseSpec(kind, p), seed=3)(x)
    covered = (out.erased if kind == "zero" else out.mask).float().mean().item()
    assert abs(covered - p) < 0.25 * p + 0.005
    if kind == "zero":
        assert (out.fragments[out.erased] == 0).all() and out.mask.equal(out.erased)


def test_gaussian_changes_about_expected_share():
    x = torch.full((200, 512), 128, dtype=torch.uint8)
    out = NoiseGenerator(NoiseSpec("gaussian", 0.01), seed=0)(x)
    # std 0.01 is 2.55 levels: most bytes move by at least one level after rounding
    assert 0.6 < out.mask.float().mean().item() < 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_noise_and_input_untouched(kind):
    x = clean(20)
    before = x.clone()
    a = NoiseGenerator(NoiseSpec(kind, 0.05), seed=42)(x)
    b = NoiseGenerator(NoiseSpec(kind, 0.05), seed=42)(x)
    c = NoiseGenerator(NoiseSpec(kind, 0.05), seed=43)(x)
    assert torch.equal(x, before)
    assert torch.equal(a.fragments, b.fragments) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.fragments, c.fragments)


def test_mixing_kinds_choice_and_all():
    x = clean(300)
    specs = [NoiseSpec("byte", 0.1), NoiseSpec("zero", 0.1)]
    out = NoiseGenerator(specs, seed=0, mix="choice")(x)
    zeroed_rows = out.erased.any(1)
    assert 0.3 < zeroed_rows.float().mean().item() < 0.7  # about half the fragments drew 'zero'
    both = NoiseGenerator(specs, seed=0, mix="all")(x)
    assert both.erased.any(1).float().mean() > 0.7  # 1.66 runs per fragment on average


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(KINDS), st.floats(0, 1), st.integers(0, 2**31), st.integers(1, 6))
def test_mask_is_exactly_the_changed_bytes(kind, p, seed, rows):
    x = clean(rows, seed % 1000)
    out = NoiseGenerator(NoiseSpec(kind, p), seed=seed)(x)
    assert torch.equal(out.mask, out.fragments != x)
    assert out.fragments.dtype == torch.uint8 and out.fragments.shape == x.shape


def test_level_range_and_parse():
    specs = parse_noise("byte:0.01-0.1,zero", "0.05")
    assert specs == [NoiseSpec("byte", 0.01, 0.1), NoiseSpec("zero", 0.05)]
    assert parse_noise("byte,bitflip", "0.01,0.1") == [NoiseSpec("byte", 0.01), NoiseSpec("byte", 0.1),
                                                       NoiseSpec("bitflip", 0.01), NoiseSpec("bitflip", 0.1)]
    for bad in ("salt", "byte:2", "byte:-0.1", "byte:x", "byte:nan", ""):
        with pytest.raises(ValueError):
            parse_noise(bad)
