"""The losses, distances and metrics as lpips / piq / torchmetrics users meet them (issue 21 items
1, 2, 4, 5, 6, 9; issue 20 item 7; issue 22 item 5): LPIPS by default, custom backbones, state
dicts, torchmetrics conventions, torch.compile, autocast and input edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

import lossnet
import lossnet.checks
from lossnet import losses as L
from lossnet.errors import ConfigError, UserError
from lossnet.eval.torchmetrics import DeepPerceptualSimilarity, PerceptualDistanceMetric
from lossnet.zoo import LossNetwork
from lossnet.zoo import weights as W


def _photos(sr_dir, size=128, n=4):
    """Real photographs (CSet5): centre crops ``size`` px, float (n, 3, size, size) in [0, 1]."""
    out = []
    for p in sorted((sr_dir / "CSet5").glob("*.png"))[:n]:
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255
        h, w = a.shape[:2]
        t, l = (h - size) // 2, (w - size) // 2
        out.append(torch.from_numpy(a[t:t + size, l:l + size]).permute(2, 0, 1))
    return torch.stack(out)


def _lpips_ref(arch: str, lp_name: str):
    """The `lpips` package's LPIPS(net=lp_name) with lossnet's trunk weights (it cannot download)."""
    import lpips

    ref = lpips.LPIPS(pretrained=True, net=lp_name, pnet_rand=True, verbose=False).eval()
    tv = {k.replace("features.", ""): v for k, v in W.load_state_dict(arch)[0].items()}
    for s in [getattr(ref.net, f"slice{k}") for k in range(1, ref.net.N_slices + 1)]:
        for name, mod in s.named_children():
            if isinstance(mod, nn.Conv2d):
                mod.weight.data.copy_(tv[f"{name}.weight"])
                mod.bias.data.copy_(tv[f"{name}.bias"])
    return ref


# ----------------------------------------------------------------------------------------------
# Item 1: the default is LPIPS; the uniform variant is explicit
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,lp_name", [("alexnet", "alex"), ("vgg16", "vgg")])
def test_default_distance_and_metric_equal_the_lpips_package_on_photographs(offline_weights, sr_dir, arch, lp_name):
    x = _photos(sr_dir, 64)
    x0, x1 = x, x.roll(1, 0)
    ref = _lpips_ref(arch, lp_name)
    with torch.no_grad():
        theirs = ref(x0 * 2 - 1, x1 * 2 - 1).flatten()
        for name in (arch, lp_name):
            torch.testing.assert_close(L.PerceptualDistance(name)(x0, x1), theirs, atol=1e-6, rtol=1e-5)
    m = PerceptualDistanceMetric(lp_name, normalize=True)  # torchmetrics' spelling: [0, 1] input
    m.update(x0[:2], x1[:2])
    m.update(x0[2:], x1[2:])
    assert float(m.compute()) == pytest.approx(float(theirs.mean()), rel=1e-5)
    m_pm1 = PerceptualDistanceMetric(net_type=lp_name, normalize=False)  # torchmetrics' default: [-1, 1]
    m_pm1.update(x0 * 2 - 1, x1 * 2 - 1)
    assert float(m_pm1.compute()) == pytest.approx(float(theirs.mean()), rel=1e-5)


def test_uniform_weighting_is_an_explicit_choice_and_differs_from_lpips(offline_weights, sr_dir):
    x = _photos(sr_dir, 64, n=2)
    with torch.no_grad():
        lp = L.PerceptualDistance("alexnet")(x, x.flip(0))
        uni = L.PerceptualDistance("alexnet", weighting="uniform")
        u = uni(x, x.flip(0))
        net = LossNetwork("alexnet", layers=list(L.LPIPS_LAYERS["alexnet"]))  # ImageNet normalisation
        torch.testing.assert_close(u, L.perceptual_distance(net(x), net(x.flip(0))))
    assert (u > 2 * lp).all()  # the old default reported a number ~4x LPIPS
    assert "uniform" in repr(uni) and "lpips" in repr(L.PerceptualDistance("alexnet"))
    assert L.PerceptualDistance("alexnet", lpips_weights=False).weighting == "uniform"
    with pytest.raises(ConfigError, match="contradicts"):
        L.PerceptualDistance("alexnet", lpips_weights=True, weighting="uniform")
    with pytest.raises(ConfigError, match="LPIPS channel weights exist"):
        L.PerceptualDistance("efficientnet_lite0", weighting="lpips")
    with pytest.raises(ConfigError, match="weighting must be"):
        L.PerceptualDistance("alexnet", weighting="lpip")


def test_squeezenet_default_is_lpips_squeeze_given_the_same_trunk():
    """Offline there are no ImageNet SqueezeNet weights: the same random trunk in both."""
    import lpips
    from torchvision.models import squeezenet1_1

    torch.manual_seed(0)
    tv = squeezenet1_1()
    ref = lpips.LPIPS(pretrained=True, net="squeeze", pnet_rand=True, verbose=False).eval()
    for k in range(1, ref.net.N_slices + 1):
        for name, mod in getattr(ref.net, f"slice{k}").named_children():
            mod.load_state_dict(tv.features[int(name)].state_dict())
    ours = L.PerceptualDistance("squeeze", weights=tv.state_dict())
    assert ours.weighting == "lpips" and ours.net.normalize == "lpips"
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ours(x0, x1), ref(x0 * 2 - 1, x1 * 2 - 1).flatten(), atol=1e-6, rtol=1e-5)


def test_squeezenet_lpips_needs_its_trunk_and_says_how_to_get_it():
    ws = L.load_lpips_channel_weights("squeezenet1_1")  # shipped with the lpips package
    assert [w.numel() for w in ws] == [64, 128, 256, 384, 384, 512, 512]
    if W.status("squeezenet1_1").available:
        pytest.skip("squeezenet1_1 trunk weights are available here")
    with pytest.raises(Exception, match="weights fetch|--file|download") as e:
        L.PerceptualDistance("squeeze")
    assert "squeezenet1_1" in str(e.value)


# ----------------------------------------------------------------------------------------------
# Item 2: custom backbones are LossNetwork.from_module; anything else is refused
# ----------------------------------------------------------------------------------------------


def _holders():
    return [lambda n: L.PerceptualLoss(n), lambda n: L.PerceptualDistance(n), lambda n: L.FeatureReconstructionLoss(n),
            lambda n: PerceptualDistanceMetric(n), lambda n: DeepPerceptualSimilarity(n),
            lambda n: L.perceptual_loss(n, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                     st.builds(nn.Conv2d, st.just(3), st.integers(1, 4), st.integers(1, 3)),
                     st.builds(lambda k: nn.Sequential(nn.Conv2d(3, k, 3), nn.ReLU()), st.integers(1, 4))),
       which=st.integers(0, 5))
def test_every_loss_distance_and_metric_refuses_anything_but_a_loss_network(obj, which):
    with pytest.raises(ConfigError, match=r"LossNetwork\.from_module"):
        _holders()[which](obj)


def test_loss_network_refuses_a_module_naming_from_module():
    with pytest.raises(ConfigError, match=r"LossNetwork\.from_module"):
        LossNetwork(nn.Sequential(nn.Conv2d(3, 4, 3)))


def _assert_frozen(net: LossNetwork, module: nn.Module) -> None:
    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(3, 3, 1)
            self.loss = L.PerceptualLoss(net)

    parent = Parent().train()
    assert not net.training and not module.training
    assert all(not p.requires_grad for p in module.parameters())
    assert {id(p) for p in parent.parameters()} == {id(p) for p in parent.head.parameters()}  # optimiser-safe
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    parent.loss(x, torch.rand(2, 3, 64, 64)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_from_module_torchvision_model_by_node_names():
    from torchvision.models import resnet18

    model = resnet18(weights=None).train()
    net = LossNetwork.from_module(model, layers=["layer1", "layer2"])
    f1, f2 = net(torch.rand(2, 3, 64, 64))
    assert f1.shape == (2, 64, 16, 16) and f2.shape == (2, 128, 8, 8)
    assert "layer3" not in dict(net.body.named_modules())  # cut after the deepest requested layer
    _assert_frozen(net, model)
    assert "custom:ResNet" in repr(L.PerceptualLoss(net)) and "layer2" in repr(L.PerceptualLoss(net))


def test_from_module_timm_features_only_and_plain_modules():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2))
    net = LossNetwork.from_module(model)  # the model returns its feature maps
    assert [f.shape[1] for f in net(torch.rand(1, 3, 64, 64))] == [64, 128]
    _assert_frozen(net, model)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
    snet = LossNetwork.from_module(seq, layers=[1], normalize=((0.5,) * 3, (0.25,) * 3))
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(snet(x)[0], seq[1](seq[0]((x - 0.5) / 0.25)))
    _assert_frozen(snet, seq)
    with pytest.raises(ConfigError, match="cannot extract layers"):
        LossNetwork.from_module(seq, layers=["nope"])


# ----------------------------------------------------------------------------------------------
# Item 4: the frozen network is not in a parent's state dict; old checkpoints still load
# ----------------------------------------------------------------------------------------------


def test_parent_state_dict_excludes_the_frozen_network_and_old_checkpoints_load(offline_weights):
    def parent():
        m = nn.Module()
        m.head = nn.Linear(2, 2)
        m.ps = L.PerceptualLoss("paper")
        m.lp = L.PerceptualDistance("alexnet")
        m.fr = L.FeatureReconstructionLoss(LossNetwork("alexnet", layers=["E"]))
        return m

    p = parent()
    assert sorted(p.state_dict()) == ["head.bias", "head.weight"]
    old = dict(p.state_dict())  # as written before: the networks' tensors under their old names
    for mod, attr in ((p.ps, "loss_net"), (p.lp, "net"), (p.fr, "loss_net")):
        name = {id(p.ps): "ps", id(p.lp): "lp", id(p.fr): "fr"}[id(mod)]
        old.update({f"{name}.{attr}.{k}": v for k, v in getattr(mod, attr).state_dict().items()})
    assert len(old) > 10
    q = parent()
    q.load_state_dict(old, strict=True)
    torch.testing.assert_close(q.head.weight, p.head.weight)
    with pytest.raises(RuntimeError, match="Unexpected"):
        q.load_state_dict({**old, "ps.other.weight": torch.zeros(1)}, strict=True)
    q.double().train()  # the frozen networks follow dtype / device moves and stay in eval mode
    assert next(q.ps.loss_net.parameters()).dtype == torch.float64 and not q.ps.loss_net.training


# ----------------------------------------------------------------------------------------------
# Item 5: metrics as torchmetrics users write them; names as lpips / piq users write them
# ----------------------------------------------------------------------------------------------


def test_metrics_are_exported_and_take_torchmetrics_dtype_conventions(offline_weights):
    assert lossnet.PerceptualDistanceMetric is PerceptualDistanceMetric
    assert {"DeepPerceptualSimilarity", "SuperResolutionScores", "DelineationScores"} <= set(lossnet.__all__)
    m = PerceptualDistanceMetric("alex")
    assert m.double() is m and next(m.net.net.parameters()).dtype == torch.float32  # torchmetrics: a no-op
    m.set_dtype(torch.float64)
    assert next(m.net.net.parameters()).dtype == torch.float64
    m.update(torch.rand(2, 3, 32, 32, dtype=torch.float64), torch.rand(2, 3, 32, 32, dtype=torch.float64))
    assert torch.isfinite(m.compute())
    with pytest.raises(ConfigError, match="contradicts"):
        PerceptualDistanceMetric("alex", normalize=True, input_range="[-1,1]")
    d = DeepPerceptualSimilarity("alexnet", layers=["S"], input_range="[-1,1]")
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    d.update(x * 2 - 1, y * 2 - 1)
    assert float(d.compute()) == pytest.approx(float(L.perceptual_loss(d.net, x, y)), rel=1e-5)
    assert "alexnet['S']" in repr(d) and "lpips v0.1" in repr(m)


def test_lpips_and_piq_style_names_resolve_once_in_the_zoo(offline_weights):
    assert LossNetwork("vgg", layers=["relu3_3"]).nodes == LossNetwork("vgg16", layers=[15]).nodes
    assert LossNetwork("alex", layers=["relu2"]).nodes == LossNetwork("alexnet", layers=["S"]).nodes
    assert L.PerceptualLoss("vgg16", layers=["relu2_2", "relu3_3"]).loss_net.nodes == ["features.8", "features.15"]
    with pytest.raises(ConfigError, match="relu3_3"):
        LossNetwork("vgg16", layers=["relu9_9"])
    with pytest.raises(ConfigError, match="only AlexNet and VGG"):
        LossNetwork("efficientnet_lite0", layers=["relu1"], weights=None)


# ----------------------------------------------------------------------------------------------
# Item 6: torch.compile keeps the free checks and says once that the value checks are off
# ----------------------------------------------------------------------------------------------


def test_compile_warns_once_and_keeps_shape_checks(monkeypatch):
    monkeypatch.setattr(lossnet.checks, "_COMPILE_WARNED", False)
    net = LossNetwork("alexnet", layers=["E"], weights=None)
    fn = torch.compile(lambda a, b: L.perceptual_loss(net, a, b), fullgraph=True, backend="eager")
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fn(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
        fn(torch.rand(1, 3, 32, 32) * 5, torch.rand(1, 3, 32, 32))  # out of range: not checked when compiled
    assert sum("value checks" in str(w.message) for w in rec) == 1
    with pytest.raises(Exception, match="3 channels"):
        fn(torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # eager still checks values
        L.perceptual_loss(net, torch.rand(1, 3, 32, 32) * 5, torch.rand(1, 3, 32, 32))


# ----------------------------------------------------------------------------------------------
# Item 9: gradient parity with lpips (measured) and autocast dtypes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,lp_name", [("alexnet", "alex"), ("vgg16", "vgg")])
def test_gradient_parity_with_lpips_on_photographs(offline_weights, sr_dir, arch, lp_name):
    """Relative L2 distance of d LPIPS / d x0, ours vs the lpips package, on real 128 px crops.

    Not exact: max-pooling ties (flat regions of 8-bit photos) send the gradient to a different
    window element in oneDNN's channels-last kernel than in the reference. Printed with -s.
    """
    x = _photos(sr_dir, 128)
    x1 = x.roll(1, 0)
    ref = _lpips_ref(arch, lp_name)
    a = x.clone().requires_grad_(True)
    ref(a * 2 - 1, x1 * 2 - 1).sum().backward()
    b = x.clone().requires_grad_(True)
    L.PerceptualDistance(arch)(b, x1).sum().backward()
    rel = float((a.grad - b.grad).norm() / a.grad.norm())
    print(f"gradient relative L2 vs lpips ({arch}, 4 CSet5 crops 128 px): {rel:.1e}")
    assert rel < 2e-2


def test_bf16_autocast_gives_the_same_dtype_from_distance_and_loss(offline_weights):
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = L.PerceptualDistance("alexnet")(x, y)
        p = L.PerceptualLoss("paper")(x, y)
    assert d.dtype == p.dtype == torch.float32
    torch.testing.assert_close(d, L.PerceptualDistance("alexnet")(x, y), atol=0.02, rtol=0.1)


# ----------------------------------------------------------------------------------------------
# Issue 20 item 7 (presets, seeded random weights) and issue 22 item 5 (inputs)
# ----------------------------------------------------------------------------------------------


def test_preset_conflicts_are_errors_and_random_weights_take_a_seed():
    with pytest.raises(ConfigError, match="preset 'paper' fixes"):
        LossNetwork("paper", layers=["L"], sigmoid=False)
    with pytest.raises(ConfigError, match="sigmoid"):
        LossNetwork("paper", sigmoid=False, weights="random")
    assert LossNetwork("paper", layers=["S"], sigmoid=True, weights="random").sigmoid  # agreeing is fine
    state = torch.random.get_rng_state()
    a, b = (LossNetwork("alexnet", layers=["S"], weights="random", seed=3) for _ in range(2))
    c = LossNetwork("alexnet", layers=["S"], weights="random", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    pa, pb, pc = (next(n.parameters()) for n in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    with pytest.raises(ConfigError, match="seed"):
        LossNetwork("alexnet", weights="imagenet", seed=1)
    assert issubclass(ConfigError, UserError)


def test_empty_batches_float64_and_duplicate_layers(offline_weights):
    net = LossNetwork("alexnet", layers=["S"])
    empty = torch.rand(0, 3, 32, 32)
    for call in (lambda: net(empty), lambda: L.PerceptualLoss(net)(empty, empty),
                 lambda: L.PerceptualDistance("alexnet")(empty, empty), lambda: L.pixel_loss(empty, empty)):
        with pytest.raises(ValueError, match="empty batch"):
            call()
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    xd = x.double().requires_grad_(True)
    loss = L.PerceptualLoss(net)(xd, y.double())
    loss.backward()
    assert xd.grad.dtype == torch.float64
    assert float(loss) == pytest.approx(float(L.PerceptualLoss(net)(x, y)), rel=1e-5)
    for layers in (["E", "E"], ["S", 4]):
        with pytest.raises(ConfigError, match="same layer twice"):
            LossNetwork("alexnet", layers=layers, weights=None)


@pytest.mark.parametrize("weighting", ["lpips", "uniform"])
def test_metrics_move_their_network_to_the_inputs_device_whatever_the_weighting(offline_weights, weighting):
    """A metric's network follows its inputs; a uniform PerceptualDistance has no tensors of its
    own, so the metric must find them on the network the distance holds (meta device: no GPU)."""
    m = PerceptualDistanceMetric("alexnet", weighting=weighting)
    m._follow(torch.empty(1, device="meta"))  # what update() does first
    assert {p.device.type for p in m.net.net.parameters()} == {"meta"}
    d = DeepPerceptualSimilarity("alexnet", layers=["S"])
    d._follow(torch.empty(1, device="meta"))
    assert {p.device.type for p in d.net.parameters()} == {"meta"}


def test_module_device_looks_through_held_networks():
    from lossnet.utils import module_device

    for make in (lambda n: L.PerceptualDistance(n, weighting="uniform"), L.PerceptualLoss):
        holder = make(LossNetwork("alexnet", layers=["S"], weights="random", seed=0))
        assert not list(holder.parameters()) and not list(holder.buffers())  # nothing of its own
        assert module_device(holder).type == "cpu"
        assert module_device(holder.to("meta")).type == "meta"  # found on the held network
    assert module_device(nn.Identity()).type == "cpu"


# Every string option of every loss module and its functional form: (name, valid values,
# build(value) for the module, call(value) for the functional form or None).
def _net():
    return LossNetwork("alexnet", layers=["S"], weights="random", seed=0)


_IMG = torch.rand(2, 3, 32, 32)
_OPTIONS = {
    "PixelLoss.kind": (("mse", "l1", "bce"), lambda v: L.PixelLoss(kind=v), lambda v: L.pixel_loss(_IMG, _IMG, kind=v)),
    "PixelLoss.reduction": (L.REDUCTIONS, lambda v: L.PixelLoss(reduction=v),
                            lambda v: L.pixel_loss(_IMG, _IMG, reduction=v)),
    "PixelLoss.input_range": (("[0,1]", "[-1,1]"), lambda v: L.PixelLoss(input_range=v),
                              lambda v: L.pixel_loss(_IMG, _IMG, input_range=v)),
    "PerceptualLoss.reduction": (L.REDUCTIONS, lambda v: L.PerceptualLoss(_net(), reduction=v),
                                 lambda v: L.perceptual_loss(_net(), _IMG, _IMG, reduction=v)),
    "PerceptualLoss.input_range": (("[0,1]", "[-1,1]"), lambda v: L.PerceptualLoss(_net(), input_range=v),
                                   lambda v: L.perceptual_loss(_net(), _IMG, _IMG, input_range=v)),
    "FeaturePredictionLoss.reduction": (L.REDUCTIONS, lambda v: L.FeaturePredictionLoss(reduction=v),
                                        lambda v: L.feature_prediction_loss(_IMG[:, 0], _IMG[:, 0], reduction=v)),
    "FeatureReconstructionLoss.reduction": (L.REDUCTIONS, lambda v: L.FeatureReconstructionLoss(_net(), reduction=v),
                                            None),
    "KLDivergence.reduction": (L.REDUCTIONS, lambda v: L.KLDivergence(reduction=v),
                               lambda v: L.kl_divergence(_IMG[:, 0, 0], _IMG[:, 0, 0], reduction=v)),
    "PerceptualDistance.reduction": (L.REDUCTIONS, lambda v: L.PerceptualDistance(_net(), reduction=v), None),
    "PerceptualDistance.weighting": (L.WEIGHTINGS, lambda v: L.PerceptualDistance(_net(), weighting=v), None),
    "PerceptualDistance.input_range": (("[0,1]", "[-1,1]"), lambda v: L.PerceptualDistance(_net(), input_range=v),
                                       None),
}


@pytest.mark.parametrize("option", sorted(_OPTIONS))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(max_size=8), st.sampled_from(["MSE", "Mean", "avg", "[0,255]", "", "lpips "])))
def test_every_bad_loss_option_is_one_config_error_naming_the_choices(option, value):
    valid, build, call = _OPTIONS[option]
    if value.replace(" ", "") in valid or value in valid:
        return
    for make in (build, call):
        if make is None:
            continue
        with pytest.raises(ConfigError) as e:
            make(value)
        assert repr(value) in str(e.value) and str(valid[0]) in str(e.value), str(e.value)


@pytest.mark.parametrize("option", sorted(_OPTIONS))
def test_every_loss_module_repr_names_its_settings(option):
    valid, build, _ = _OPTIONS[option]
    name = option.split(".")[1]
    for v in valid:
        if v == "lpips":
            continue  # LPIPS' channel weights need LPIPS' five layers (tested with the real networks above)
        assert f"{name}={v}" in repr(build(v)), repr(build(v))
