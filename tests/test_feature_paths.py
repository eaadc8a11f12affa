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


def _count_hashes(monkeypatch) -> list:
    """Every images_fingerprint call made by train_encoder and the cache, by the size hashed."""
    import lossnet.train.cache as cache_mod
    import lossnet.train.procedures as proc_mod

    calls, real = [], cache_mod.images_fingerprint

    def counting(images):
        calls.append(len(images))
        return real(images)

    monkeypatch.setattr(cache_mod, "images_fingerprint", counting)
    monkeypatch.setattr(proc_mod, "images_fingerprint", counting)
    return calls


class _Fixed:
    """A cache of the other kind: ``get(images, net)`` hands out fixed targets, no key needed."""

    def get(self, images, net):
        return torch.rand(len(images), 192, 7, 7, generator=torch.Generator().manual_seed(0))


def test_images_are_hashed_at_most_once(monkeypatch, tmp_path):
    """The images are hashed for a cache key or a checkpoint's identity, once; not at all when
    neither is used (hashing 200 MB of images takes ~0.15 s, a fixed cost per call)."""
    net, _ = _counting_net()
    fc = FitConfig(epochs=1, batch_size=8, progress=False, device="cpu", logger="none")
    calls = _count_hashes(monkeypatch)
    for proc, cache, ckpt, expected in [
            ("I-F-FP", None, None, 0), ("I-I-PS", None, None, 0), ("I-I-PW", "memory", None, 0),
            ("I-F-FP", "memory", None, 1), ("I-F-FP", None, "ckpt", 1), ("I-F-FP", "memory", "ckpt", 1),
            ("I-I-PW", None, "ckpt", 1), ("I-F-FP", "fixed", None, 0), ("I-F-FP", "fixed", "ckpt", 1)]:
        calls.clear()
        c = {None: None, "memory": FeatureCache(directory=None, progress=False), "fixed": _Fixed()}[cache]
        d = tmp_path / f"{proc}-{cache}-{ckpt}" if ckpt else None
        train_encoder(_images(), EncoderConfig(procedure=proc, z=4, hidden=16), fc, loss_net=net, cache=c, ckpt_dir=d)
        assert calls == [24] * expected, (proc, cache, ckpt, calls)


def test_features_without_a_cache_equal_the_cached_ones(tmp_path, capsys):
    """train_encoder without a cache computes the same features (and so trains the same model)
    as with one, and a checkpoint written without a cache resumes with one."""
    net, _ = _counting_net()
    fc = FitConfig(epochs=2, batch_size=8, progress=False, device="cpu", logger="none", seed=3)
    cfg = EncoderConfig(procedure="I-F-FP", z=4, hidden=16)
    a = train_encoder(_images(), cfg, fc, loss_net=net)
    b = train_encoder(_images(), cfg, fc, loss_net=net, cache=FeatureCache(directory=None, progress=False),
                      ckpt_dir=tmp_path)
    assert [r["val_loss"] for r in a.result.history] == [r["val_loss"] for r in b.result.history]
    c = train_encoder(_images(), cfg, fc, loss_net=net, ckpt_dir=tmp_path)
    assert c.result.history == b.result.history  # resumed (timings included), not trained again
    assert "not resuming" not in capsys.readouterr().err
