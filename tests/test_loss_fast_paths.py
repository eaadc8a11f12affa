"""The speed paths of the losses give the plain formulas' values and gradients: the channels-last
trunk, one batched trunk call for both inputs, and the LPIPS head's hand-written backward."""

import pytest
import torch
import torch.nn.functional as F

import lossnet.losses as L
from lossnet.zoo import LossNetwork


def _imgs(n=2, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)


def _net(channels_last: bool, arch="alexnet", layers=(1, 4, 7)):
    torch.manual_seed(0)  # the same random weights for both layouts
    return LossNetwork(arch, layers=list(layers), weights=None, channels_last=channels_last)


@pytest.mark.parametrize("arch, layers", [("alexnet", (1, 4, 7)), ("resnet18", ("E", "S"))])
def test_channels_last_trunk_equals_contiguous_trunk(arch, layers):
    cl, plain = _net(True, arch, layers), _net(False, arch, layers)
    assert cl.memory_format == torch.channels_last and plain.memory_format == torch.contiguous_format
    x, _ = _imgs()
    for a, b in zip(cl.extract(x), plain.extract(x)):
        assert a.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all(f.is_contiguous() for f in cl(x))  # forward(): contiguous (N, C, H, W) maps
    xr = x.clone().requires_grad_(True)
    sum(f.square().mean() for f in cl.extract(xr)).backward()
    xp = x.clone().requires_grad_(True)
    sum(f.square().mean() for f in plain.extract(xp)).backward()
    torch.testing.assert_close(xr.grad, xp.grad, atol=1e-6, rtol=1e-4)


def _plain_head(a, b, w):
    return F.conv2d((L.unit_normalize(a) - L.unit_normalize(b)).square(), w.reshape(1, -1, 1, 1))[:, 0]


def test_lpips_head_backward_equals_autograd_of_the_formula():
    torch.manual_seed(0)
    a = torch.randn(2, 5, 3, 4, dtype=torch.double).relu()
    a[0, :, 0, 0] = 0  # an all-zero feature vector (ReLU): the norm's gradient is 0 there
    a.requires_grad_(True)
    b = torch.randn(2, 5, 3, 4, dtype=torch.double, requires_grad=True)
    w = torch.rand(5, dtype=torch.double, requires_grad=True)
    ours = L._LPIPSLayer.apply(a, b, w)[0]
    ref = _plain_head(a, b, w)
    torch.testing.assert_close(ours, ref)
    go = torch.randn_like(ref)
    for g1, g2 in zip(torch.autograd.grad(ours, (a, b, w), go), torch.autograd.grad(ref, (a, b, w), go)):
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
    a2 = torch.randn(1, 4, 2, 3, dtype=torch.double, requires_grad=True)
    b2, w2 = b[:1, :4, :2, :3].detach().requires_grad_(True), w[:4].detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *t: L._LPIPSLayer.apply(*t)[0], (a2, b2, w2))


def test_perceptual_distance_batched_path_equals_separate_calls():
    net = _net(True)
    dist = L.PerceptualDistance(net)
    x0, x1 = _imgs(3)
    with torch.no_grad():
        batched = dist(x0, x1)  # one trunk call on cat([x0, x1])
        separate = L.perceptual_distance(net.extract(x0), net.extract(x1))
    torch.testing.assert_close(batched, separate, atol=1e-6, rtol=1e-5)
    xr = x0.clone().requires_grad_(True)
    with_grad = dist(xr, x1)  # two calls, x1's without a graph
    torch.testing.assert_close(with_grad.detach(), batched, atol=1e-6, rtol=1e-5)
    with_grad.sum().backward()
    assert xr.grad.abs().sum() > 0


def test_perceptual_losses_batched_path_equals_graph_path():
    net = _net(True)
    x, y = _imgs(3, seed=1)
    xr = x.clone().requires_grad_(True)
    for loss in (L.PerceptualLoss(net), L.PerceptualLoss(net, reduction="none"), L.FeatureReconstructionLoss(net)):
        with torch.no_grad():
            batched = loss(x, y)
        graph = loss(xr, y)
        assert graph.requires_grad
        torch.testing.assert_close(graph.detach(), batched, atol=1e-6, rtol=1e-5)
    # the target never gets a gradient, even when it requires one
    yr = y.clone().requires_grad_(True)
    L.perceptual_loss(net, xr, yr).backward()
    assert yr.grad is None and xr.grad is not None
