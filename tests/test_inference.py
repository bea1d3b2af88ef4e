"""The trunk computes what the Conv1d modules compute, and its CPU inference form does too."""
import pytest
import torch
import torch.nn.functional as F

from fragfix.model.autoencoder import FragmentAutoencoder, ModelConfig
from fragfix.model.inference import cpu_trunk


@pytest.mark.parametrize("stem,refine", [("full", 1), ("separable", 0), ("full", 3)])
def test_cpu_trunk_matches_features_detector_and_head(stem, refine):
    torch.manual_seed(0)
    model = FragmentAutoencoder(ModelConfig(channels=(8, 12, 16, 24), embed_dim=4, stem=stem, refine=refine)).eval()
    x = torch.randint(0, 257, (3, 512))
    with torch.no_grad():
        h = model.features(x)  # (3, c0, 512)
        det = model.detect(h)
        at = (torch.tensor([0, 2, 2]), torch.tensor([0, 7, 511]))
        logits = model.head_at(h, at)
    t = cpu_trunk(model, bf16=False)
    hf = t.features(x)  # (3, 1, 512, c0)
    assert hf.shape == (3, 1, 512, 8)
    torch.testing.assert_close(hf.squeeze(1).transpose(1, 2), h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t.detect(hf), det, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t.head_at(hf, at), logits, atol=1e-5, rtol=1e-5)
    hb = cpu_trunk(model, bf16=True).features(x)
    assert hb.dtype == torch.bfloat16
    torch.testing.assert_close(hb.float().squeeze(1).transpose(1, 2), h, atol=0.1, rtol=0.05)


def test_cpu_trunk_follows_weight_updates():
    model = FragmentAutoencoder(ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1))
    x = torch.randint(0, 256, (2, 512))
    first = cpu_trunk(model, bf16=False)
    assert cpu_trunk(model, bf16=False) is first  # cached while the weights stand still
    with torch.no_grad():
        model.refiners[0].weight.add_(1.0)  # what an optimizer step does: an in-place update
    again = cpu_trunk(model, bf16=False)
    assert again is not first
    torch.testing.assert_close(again.features(x).squeeze(1).transpose(1, 2), model.features(x).detach(),
                               atol=1e-5, rtol=1e-5)


def modules_forward(model, x):
    """The reference: every layer through its own nn.Conv1d / nn.ConvTranspose1d forward."""
    h = model.embed(x).transpose(1, 2) if model.config.head == "categorical" else x
    h = F.gelu(model.stem_pw(model.stem_dw(h)))
    skips = [h]
    for conv in model.enc:
        h = F.gelu(conv(h))
        skips.append(h)
    skips.pop()
    for conv in model.mid:
        h = h + F.gelu(conv(h))
    for deconv in model.dec:
        h = F.gelu(deconv(h)) + skips.pop()
    for conv in model.refiners:
        h = h + F.gelu(conv(h))
    return h


@pytest.mark.parametrize("head,stem,mid", [("categorical", "full", 2), ("categorical", "separable", 3),
                                           ("sigmoid", "full", 1)])
def test_trunk_is_the_modules_own_convolutions(head, stem, mid):
    torch.manual_seed(1)
    model = FragmentAutoencoder(ModelConfig(head=head, channels=(8, 12, 16, 24), embed_dim=4, stem=stem, mid_layers=mid))
    x = torch.randint(0, 257, (2, 512)) if head == "categorical" else torch.rand(2, 1, 512)
    torch.testing.assert_close(model.features(x), modules_forward(model, x), atol=1e-5, rtol=1e-5)
    # gradients reach the modules' parameters through the views
    model.features(x).sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith(("logits", "detector", "out")))
