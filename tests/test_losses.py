"""Every loss against a hand-computed value, and the input checks."""

from __future__ import annotations

import pytest
import torch

from lossnet import losses as L
from lossnet.errors import ConfigError
from lossnet.zoo import LossNetwork


def test_pixel_losses_hand_computed():
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    y = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    assert L.pixel_loss(x, y, "mse").item() == pytest.approx(2 / 3)
    assert L.pixel_loss(x, y, "mse", "sum").item() == pytest.approx(2.0)
    assert L.pixel_loss(x, y, "l1").item() == pytest.approx(2 / 3)
    p = torch.full((1, 3, 1, 1), 0.25)
    t = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    import math

    bce = -(2 * math.log(0.25) + math.log(0.75)) / 3
    assert L.PixelLoss("bce")(p, t).item() == pytest.approx(bce, rel=1e-6)


def test_feature_prediction_loss_hand_computed():
    pred = torch.tensor([[1.0, 2.0, 0.0, 0.0]])
    target = torch.zeros(1, 1, 2, 2)  # flattened to 4 features
    assert L.feature_prediction_loss(pred, target).item() == pytest.approx(5 / 4)
    assert L.FeaturePredictionLoss("sum")(pred, target).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        L.feature_prediction_loss(pred, torch.zeros(1, 5))


def test_perceptual_loss_is_mse_of_features_and_accepts_cached_targets():
    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["E", "S"], weights=None)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    fx, fy = net(x), net(y)
    want = sum(((a - b) ** 2).mean() for a, b in zip(fx, fy))
    assert L.perceptual_loss(net, x, y).item() == pytest.approx(want.item(), rel=1e-5)
    assert L.perceptual_loss(net, x, target_features=fy).item() == pytest.approx(want.item(), rel=1e-5)
    want_sum = sum(((a - b) ** 2).sum() for a, b in zip(fx, fy))
    assert L.PerceptualLoss(net, reduction="sum")(x, y).item() == pytest.approx(want_sum.item(), rel=1e-5)
    xr = x.clone().requires_grad_(True)
    L.perceptual_loss(net, xr, y).backward()
    assert xr.grad.abs().sum() > 0
    assert L.perceptual_loss(net, y, y).item() == 0.0


def test_feature_reconstruction_loss_hand_computed():
    a = [torch.tensor([1.0, 1.0]).view(1, 2, 1, 1), torch.ones(1, 1, 2, 2)]
    b = [torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 2, 2)]
    # layer 1: ||.||^2 = 2, /(C H W = 2) = 1; layer 2: 4 / 4 = 1
    assert L.feature_reconstruction_loss(a, b).item() == pytest.approx(2.0)
    assert L.feature_reconstruction_loss(a, b, layer_weights=[0.5, 2.0]).item() == pytest.approx(2.5)


def test_perceptual_distance_hand_computed():
    f0 = [torch.tensor([3.0, 0.0]).view(1, 2, 1, 1)]
    f1 = [torch.tensor([0.0, 5.0]).view(1, 2, 1, 1)]
    # unit-normalised: (1, 0) vs (0, 1): squared diff (1, 1)
    assert L.perceptual_distance(f0, f1).item() == pytest.approx(2.0)
    assert L.perceptual_distance(f0, f1, [torch.tensor([0.5, 0.25])]).item() == pytest.approx(0.75)
    # spatial mean over 2 pixels, one identical
    g0 = [torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]])]
    g1 = [torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])]
    assert L.perceptual_distance(g0, g1).item() == pytest.approx(1.0)


def test_kl_divergence_hand_computed():
    mu, lv = torch.zeros(2, 3), torch.zeros(2, 3)
    assert L.kl_divergence(mu, lv).item() == 0.0
    assert L.kl_divergence(torch.ones(2, 3), lv).item() == pytest.approx(0.5)
    assert L.KLDivergence("sum")(torch.ones(2, 3), lv).item() == pytest.approx(1.5)
    # logvar = log 2, mu = 0: -0.5 (1 + ln2 - 2)
    import math

    lv2 = torch.full((1, 1), math.log(2.0))
    assert L.kl_divergence(torch.zeros(1, 1), lv2).item() == pytest.approx(-0.5 * (1 + math.log(2) - 2))


@pytest.mark.parametrize("bad,match", [
    (torch.rand(2, 3, 8, 8) * 2, r"\[0, 1\]"),
    (torch.full((2, 3, 8, 8), float("nan")), "NaN"),
    (torch.rand(3, 3, 8, 8), "batch mismatch"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "float"),
    (torch.rand(2, 1, 8, 8), "3 channels"),
    (torch.rand(2, 3, 8), "dimensions"),
])
def test_input_checks_give_one_clear_value_error(bad, match):
    good = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=match):
        L.pixel_loss(bad, good)


def test_bad_options():
    with pytest.raises(ValueError, match="kind"):
        L.PixelLoss("huber")
    with pytest.raises(ValueError, match="reduction"):
        L.kl_divergence(torch.zeros(1, 1), torch.zeros(1, 1), "max")


def test_feature_reconstruction_loss_with_precomputed_targets():
    from lossnet.losses import FeatureReconstructionLoss

    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["E", "S"], weights=None)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = FeatureReconstructionLoss(net)
    with torch.no_grad():
        ft = net(y)
    assert torch.allclose(loss(x, y, ft), loss(x, y))
    assert not torch.allclose(loss(x, y, [f + 1 for f in ft]), loss(x, y))  # the given features are used


def test_layer_weights_and_loss_network_weights_have_distinct_names():
    """layer_weights are the w_n of Eqs. 3/5; weights= goes to the loss network (here: seeded random)"""
    from lossnet.losses import FeatureReconstructionLoss

    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = FeatureReconstructionLoss("alexnet", layer_weights=[0.5, 2.0], layers=["E", "S"], weights="random", seed=0)
    net = LossNetwork("alexnet", layers=["E", "S"], weights="random", seed=0)
    assert loss.loss_net.weights_source == "random(seed=0)" and loss.layer_weights == [0.5, 2.0]
    expect = L.feature_reconstruction_loss(net(x), net(y), layer_weights=[0.5, 2.0])
    torch.testing.assert_close(loss(x, y), expect)
    with pytest.raises(ConfigError, match="layer_weights"):
        FeatureReconstructionLoss(net, layer_weights=[1.0])
