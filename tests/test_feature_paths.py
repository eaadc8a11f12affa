"""Where teacher features are (not) computed: I-I-PW never runs the loss network on data; the
feature shape comes from shapes alone."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensor

from lossnet.train.cache import FeatureCache, feature_shape
from lossnet.train.engine import FitConfig
from lossnet.train.procedures import EncoderConfig, train_encoder
from lossnet.zoo import LossNetwork


def _images(n=24, size=64, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _counting_net():
    net = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    real = []
    net.body.register_forward_pre_hook(lambda m, a: real.append(a[0].shape[0]) if not isinstance(a[0], FakeTensor) else None)
    return net, real


def test_feature_shape_from_shapes_alone():
    net, real = _counting_net()
    for size in (64, (64, 96)):
        h, w = (size, size) if isinstance(size, int) else size
        with torch.no_grad():
            expected = tuple(net(torch.rand(1, 3, h, w))[0].shape[1:])
        real.clear()
        assert feature_shape(net, size) == expected and real == []


def test_ii_pw_never_runs_the_loss_network():
    net, real = _counting_net()
    cache = FeatureCache(directory=None, progress=False)
    fc = FitConfig(epochs=1, batch_size=8, progress=False, device="cpu", logger="none")
    enc = train_encoder(_images(), EncoderConfig(procedure="I-I-PW", z=4, hidden=16), fc, loss_net=net, cache=cache)
    assert real == [] and cache.misses == cache.hits == 0 and enc.feature_seconds < 1.0
    ps = train_encoder(_images(), EncoderConfig(procedure="I-I-PS", z=4, hidden=16), fc, loss_net=net, cache=cache)
    assert cache.misses == 1 and sum(real) > 0  # PS does run it (targets once, reconstructions per batch)
    assert enc.feat_shape == ps.feat_shape == (192, 7, 7)
