"""Encoders/decoders of papers A and B: shapes and the SPEC's layer layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lossnet.models import Autoencoder, FeatureDecoder, FeatureEncoder, ImageDecoder, ImageEncoder


@pytest.mark.parametrize("size,g", [(64, 1), (80, 2), (96, 3)])
def test_image_autoencoder_shapes(size, g):
    enc, dec = ImageEncoder(16, size, variational=True), ImageDecoder(16, size)
    assert dec.g == g
    mu, logvar = enc(torch.rand(2, 3, size, size))
    assert mu.shape == logvar.shape == (2, 16)
    out = dec(mu)
    assert out.shape == (2, 3, size, size) and 0 <= out.min() and out.max() <= 1


def test_layer_layout_matches_spec():
    enc = ImageEncoder(32)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(c, (4, 4), (2, 2)) for c in (32, 64, 128, 256)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules()) == 4
    dec = ImageDecoder(32)
    deconvs = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.out_channels, d.kernel_size[0]) for d in deconvs] == [(128, 5), (64, 5), (32, 6), (3, 6)]
    assert dec.fc[0].out_features == 1024 and isinstance(dec.deconv[-1], nn.Sigmoid)


def test_bad_size_is_rejected():
    with pytest.raises(ValueError, match="64 \\+ 16n"):
        ImageEncoder(8, 70)


def test_feature_mlps_and_vae_sampling():
    fe, fd = FeatureEncoder(100, 8, hidden=2048, variational=True), FeatureDecoder(8, 100)
    assert fe.body[0].out_features == 2048
    ae = Autoencoder(fe, fd)
    f = torch.rand(4, 100)
    ae.train()
    torch.manual_seed(0)
    out1, mu, _ = ae(f)
    torch.manual_seed(1)
    out2, _, _ = ae(f)
    assert not torch.allclose(out1, out2)  # reparameterised samples differ
    ae.eval()
    assert torch.equal(ae(f)[0], fd(mu))  # eval decodes mu
    assert torch.equal(ae.embed(f), mu)
