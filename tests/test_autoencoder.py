import torch

from fragfix.model.autoencoder import UNKNOWN, FragmentAutoencoder, ModelConfig, encode_input


def test_sigmoid_head_keeps_the_fragment_shape_and_range():
    m = FragmentAutoencoder(ModelConfig(head="sigmoid"))
    x = torch.rand(1, 512)  # one (1, 512) fragment, as the original spec has it
    y = m(x)
    assert y.shape == (1, 512)
    assert 0.0 <= y.min().item() and y.max().item() <= 1.0
    assert m(torch.rand(5, 1, 512)).shape == (5, 1, 512)


def test_categorical_head_gives_256_logits_per_position():
    m = FragmentAutoencoder(ModelConfig(head="categorical"))
    assert m(torch.randint(0, 256, (512,))).shape == (256, 512)
    assert m(torch.randint(0, 257, (3, 512))).shape == (3, 256, 512)  # 256 = UNKNOWN token accepted
    logits, det = m(torch.randint(0, 256, (2, 512)), detector=True)
    assert logits.shape == (2, 256, 512) and det.shape == (2, 512)


def test_encoder_is_three_stride_two_convs_and_decoder_three_transposed():
    m = FragmentAutoencoder()
    assert [c.stride for c in m.enc] == [(2,), (2,), (2,)]
    assert all(isinstance(d, torch.nn.ConvTranspose1d) for d in m.dec) and len(m.dec) == 3
    h = m.embed(torch.zeros(1, 512, dtype=torch.long)).transpose(1, 2)
    h = m.stem_pw(m.stem_dw(h))
    sizes = []
    for c in m.enc:
        h = c(h)
        sizes.append(h.shape[-1])
    assert sizes == [256, 128, 64]


def test_parameter_count_is_reported_and_config_rebuilds_model():
    cfg = ModelConfig(channels=(16, 16, 32, 32))
    a, b = FragmentAutoencoder(cfg), FragmentAutoencoder(ModelConfig(**cfg.to_dict()))
    assert a.num_parameters() == b.num_parameters() > 1000


def test_unknown_token_encoding():
    frags = torch.full((1, 512), 7, dtype=torch.uint8)
    unknown = torch.zeros(1, 512, dtype=torch.bool)
    unknown[0, 10:20] = True
    x = encode_input(frags, unknown, "categorical")
    assert (x[0, 10:20] == UNKNOWN).all() and (x[0, :10] == 7).all()


def test_bad_config_values_are_refused():
    import pytest
    for bad in (dict(head="softmax"), dict(channels=(1, 2)), dict(kernel_size=4), dict(fragment_size=256)):
        with pytest.raises(ValueError):
            ModelConfig(**bad)
