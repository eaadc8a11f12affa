"""The teacher-feature cache: computed once, keyed so stale features are never reused."""

from __future__ import annotations

import torch

from lossnet.train.cache import FeatureCache, compute_features
from lossnet.zoo import LossNetwork


def _images(n=6, seed=0):
    return torch.randint(0, 256, (n, 3, 64, 64), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_cache_computes_once_and_matches_direct_features(tmp_path):
    net = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    imgs = _images()
    cache = FeatureCache(directory=tmp_path, progress=False)
    f1 = cache.get(imgs, net)
    f2 = cache.get(imgs, net)
    assert cache.misses == 1 and cache.hits == 1 and f1 is f2
    with torch.no_grad():
        direct = net(imgs.float() / 255)[0]
    torch.testing.assert_close(f1, direct)
    # a new cache object (new process) reads the memory-mapped file instead of recomputing
    cache2 = FeatureCache(directory=tmp_path, progress=False)
    torch.testing.assert_close(cache2.get(imgs, net), f1)
    assert cache2.misses == 0 and len(list(tmp_path.glob("*.npy"))) == 1


def test_changed_setting_never_reuses_stale_features(tmp_path):
    cache = FeatureCache(directory=tmp_path, progress=False)
    imgs = _images()
    torch.manual_seed(0)
    base = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    cache.get(imgs, base)
    variants = [
        (_images(seed=1), base),  # other images
        (imgs, LossNetwork("alexnet", layers=["E"], weights=None, sigmoid=True)),  # other layer
        (imgs, LossNetwork("alexnet", layers=["S"], weights=base.body.state_dict(), sigmoid=False)),  # no sigmoid
    ]
    other_weights = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)  # other random weights
    variants.append((imgs, other_weights))
    for i, (im, net) in enumerate(variants):
        cache.get(im, net)
        assert cache.misses == 2 + i, f"variant {i} reused stale features"


def test_compute_features_rejects_float_images():
    import pytest

    net = LossNetwork("alexnet", layers=["E"], weights=None)
    with pytest.raises(ValueError, match="uint8"):
        compute_features(torch.rand(2, 3, 64, 64), net, progress=False)


def test_seeded_random_weights_key_on_their_parameters():
    """LossNetwork(weights="random", seed=...) (select, the SR VAE): the cache keys on the drawn parameters"""
    from lossnet.train.cache import net_identity

    a, b = (net_identity(LossNetwork("alexnet", layers=["E"], weights="random", seed=s)) for s in (0, 1))
    again = net_identity(LossNetwork("alexnet", layers=["E"], weights="random", seed=0))
    assert a["params"] == again["params"] != b["params"] and a["weights_sha"] is None


def test_sr_vae_random_perceptual_net_is_the_seeded_build():
    from omegaconf import OmegaConf

    from lossnet.experiments.sr_vae_task import build_perceptual_net

    cfg = OmegaConf.create({"perceptual": {"arch": "alexnet", "layer": "E", "weights": "random", "init_seed": 3}})
    net = build_perceptual_net(cfg)
    ref = LossNetwork("alexnet", layers=["E"], weights="random", seed=3)
    assert net.weights_source == "random(seed=3)"
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), ref.state_dict().values()))
