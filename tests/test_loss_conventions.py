"""Loss conventions users of lpips / piq / torchmetrics expect: reductions, spatial maps, input
ranges, cheap validation, torch.compile(fullgraph=True), checked LossNetwork input."""

import pytest
import torch

import lossnet.losses as L
from lossnet.zoo import LossNetwork
from lossnet.zoo import weights as W


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return LossNetwork("alexnet", layers=["E", "S"], weights=None)


def _imgs(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)


def test_reduction_none_gives_per_image_values_whose_mean_is_the_mean(net):
    x, y = _imgs()
    feats = torch.rand(3, 40)
    pred = torch.rand(3, 40)
    mu, lv = torch.rand(3, 5), torch.rand(3, 5)
    cases = [
        lambda r: L.pixel_loss(x, y, reduction=r),
        lambda r: L.pixel_loss(x, y, "l1", reduction=r),
        lambda r: L.perceptual_loss(net, x, y, reduction=r),
        lambda r: L.feature_prediction_loss(pred, feats, reduction=r),
        lambda r: L.feature_reconstruction_loss(net(x), net(y), reduction=r),
        lambda r: L.kl_divergence(mu, lv, reduction=r),
    ]
    for fn in cases:
        none, mean = fn("none"), fn("mean")
        assert none.shape == (3,)
        torch.testing.assert_close(none.mean(), mean)
        assert (none[0] != none[1]).item()  # really per image
    # sum = sum over every element (pixel, FP) / over the batch (feature reconstruction)
    torch.testing.assert_close(L.pixel_loss(x, y, reduction="sum"), ((x - y) ** 2).sum())
    torch.testing.assert_close(L.feature_reconstruction_loss(net(x), net(y), reduction="sum"),
                               L.feature_reconstruction_loss(net(x), net(y), reduction="none").sum())


def test_unknown_reduction_is_one_clear_error(net):
    x, y = _imgs()
    for call in (lambda: L.PixelLoss(reduction="max"), lambda: L.perceptual_loss(net, x, y, reduction="max"),
                 lambda: L.PerceptualDistance(net, reduction="max"), lambda: L.FeaturePredictionLoss("avg")):
        with pytest.raises(ValueError, match="reduction must be one of"):
            call()


def test_perceptual_distance_reductions_and_spatial_map(net):
    x0, x1 = _imgs()
    per_image = L.PerceptualDistance(net)(x0, x1)
    assert per_image.shape == (3,)
    torch.testing.assert_close(L.PerceptualDistance(net, reduction="mean")(x0, x1), per_image.mean())
    torch.testing.assert_close(L.PerceptualDistance(net, reduction="sum")(x0, x1), per_image.sum())
    m = L.PerceptualDistance(net, spatial=True)(x0, x1)
    assert m.shape == (3, 1, 32, 32) and (m >= 0).all()
    with pytest.raises(ValueError, match="spatial"):
        L.PerceptualDistance(net, spatial=True, reduction="mean")


@pytest.mark.parametrize("arch, lp_name", [("alexnet", "alex")])
def test_spatial_map_matches_lpips_package(offline_weights, arch, lp_name):
    import lpips

    ref = lpips.LPIPS(pretrained=True, net=lp_name, pnet_rand=True, verbose=False, spatial=True).eval()
    sd, _ = W.load_state_dict(arch)
    tv = {k.replace("features.", ""): v for k, v in sd.items()}
    for s in [ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5]:
        for name, mod in s.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.data.copy_(tv[f"{name}.weight"])
                mod.bias.data.copy_(tv[f"{name}.bias"])
    x0, x1 = _imgs(2, 64, seed=3)
    with torch.no_grad():
        theirs = ref(x0 * 2 - 1, x1 * 2 - 1)
        ours = L.PerceptualDistance(arch, lpips_weights=True, spatial=True)(x0, x1)
        ours_pm1 = L.PerceptualDistance(arch, lpips_weights=True, spatial=True, input_range="[-1,1]")(
            x0 * 2 - 1, x1 * 2 - 1)
    assert ours.shape == theirs.shape == (2, 1, 64, 64)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours_pm1, ours, atol=1e-6, rtol=1e-5)


def test_input_range_and_tolerance(net):
    x, y = _imgs()
    # an unclamped decoder's 1.001 / -0.001 is accepted unchanged; 1.05 is not
    assert torch.isfinite(L.perceptual_loss(net, (x * 1.002 - 0.001), y))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        L.perceptual_loss(net, x * 1.05, y)
    # [-1, 1] inputs give the same loss as the [0, 1] ones they encode
    torch.testing.assert_close(L.perceptual_loss(net, x * 2 - 1, y * 2 - 1, input_range="[-1,1]"),
                               L.perceptual_loss(net, x, y))
    torch.testing.assert_close(L.PixelLoss(input_range="[-1,1]")(x * 2 - 1, y * 2 - 1), L.pixel_loss(x * 2 - 1, y * 2 - 1,
                               input_range="[-1,1]"))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        L.pixel_loss(x * 3, y, input_range="[-1,1]")
    with pytest.raises(ValueError, match="input_range must be one of"):
        L.PerceptualLoss(net, input_range="[0,255]")


@pytest.mark.parametrize("bad, match", [
    (torch.rand(1, 3, 16, 16) * 255, r"values in \[0, 1\]"),
    (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
    ((torch.rand(1, 3, 16, 16) - 0.45) / 0.22, r"values in \[0, 1\]"),  # already ImageNet-normalised
    (torch.rand(1, 1, 16, 16), "3 channels"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "float"),
])
def test_bad_input_loss_network_forward_is_checked_like_the_losses(net, bad, match):
    """LossNetwork(x) with 0-255 floats / NaN / normalised / 1-channel / uint8 -> one ValueError, as the losses."""
    with pytest.raises(ValueError, match=match):
        net(bad)
    net.validate = False  # only the free metadata checks remain
    try:
        if bad.is_floating_point() and bad.shape[1] == 3:
            net(bad)
    finally:
        net.validate = True


def test_validate_false_skips_value_checks_but_not_shapes(net):
    x, y = _imgs()
    assert torch.isfinite(L.pixel_loss(x * 2, y, validate=False))
    with pytest.raises(ValueError, match="shape mismatch"):
        L.pixel_loss(x, y[:, :, :16], validate=False)


@pytest.mark.parametrize("which", ["ps", "fp", "lpips"])
def test_compile_fullgraph_matches_eager(net, which):
    x, y = _imgs(2, 32, seed=5)
    pred, feats = torch.rand(2, 50), torch.rand(2, 50)
    dist = L.PerceptualDistance(net)
    fn = {"ps": lambda a, b: L.perceptual_loss(net, a, b),
          "fp": lambda a, b: L.feature_prediction_loss(pred * a.mean(), feats),
          "lpips": lambda a, b: dist(a, b)}[which]
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, y), fn(x, y))
