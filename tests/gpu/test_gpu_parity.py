"""Every loss, distance and metric of lossnet gives the CPU's value on CUDA (1e-5, TF32 off).

Networks are built with random weights from a fixed seed (no weight files needed) and copied to
CUDA, so both devices compute the same function; LPIPS' linear heads come from the lpips package.

Gradients are compared element by element in float64 (1e-5): in float32 a max-pooling window
whose two largest inputs differ by less than the kernels' rounding sends its gradient to the
other input on the other device (an equally valid subgradient; seen on an H200: 0.3-4 % of the
input-gradient entries of VGG-16 and LPIPS beyond 1e-5), so float32 gradients are compared by
their relative L2 difference (``GRAD_REL_L2``).
"""

from __future__ import annotations

import pytest
import torch

from gpu_env import DEV, GPU
from lossnet import losses
from lossnet.eval.metrics import position_error
from lossnet.eval.sr import psnr_ssim
from lossnet.zoo import LossNetwork

pytestmark = GPU
TOL = dict(rtol=1e-5, atol=1e-5)
GRAD_REL_L2 = 1e-2  # float32 input gradients, CPU vs CUDA (max-pooling near-ties; module docstring)


def _images(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)


def _net(arch="alexnet", layers=("M",), sigmoid=False):
    torch.manual_seed(0)
    return LossNetwork(arch, layers=list(layers), weights=None, sigmoid=sigmoid)


def _pair(make):
    """Two equal objects from ``make`` (same seed), the second on ``DEV``. Not ``copy.deepcopy``: a
    deep copy of a LossNetwork comes back in training mode (torch.fx GraphModule), which changes
    BatchNorm networks' output."""
    torch.manual_seed(0)
    a = make()
    torch.manual_seed(0)
    return a, make().to(DEV)


def _same(cpu, gpu):
    if isinstance(cpu, dict):
        assert cpu.keys() == gpu.keys()
        for k in cpu:
            _same(cpu[k], gpu[k])
        return
    if isinstance(cpu, (list, tuple)):
        for a, b in zip(cpu, gpu, strict=True):
            _same(a, b)
        return
    cpu = torch.as_tensor(cpu, dtype=torch.float64)
    gpu = torch.as_tensor(gpu.detach().cpu() if torch.is_tensor(gpu) else gpu, dtype=torch.float64)
    torch.testing.assert_close(gpu, cpu, **TOL)


def _grads(make_pair, loss, x, y):
    """Input gradients of ``loss(module, x, y)`` on the CPU and on ``DEV``: float64 element by
    element at 1e-5, float32 by relative L2 (module docstring); returns the float32 one."""
    a, b = make_pair()
    out = {}
    for dtype in (torch.float64, torch.float32):
        xc = x.to(dtype).clone().requires_grad_()
        xg = x.to(DEV, dtype).requires_grad_()
        loss(a.to(dtype), xc, y.to(dtype)).backward()
        loss(b.to(dtype), xg, y.to(DEV, dtype)).backward()
        out[dtype] = xc.grad, xg.grad.cpu()
    _same(out[torch.float64][0] * 1e3, out[torch.float64][1] * 1e3)  # gradients ~1e-4: at the loss's scale
    gc, gg = out[torch.float32]
    rel = float((gg.double() - gc.double()).norm() / gc.double().norm())
    assert rel < GRAD_REL_L2, rel
    return rel


@pytest.mark.parametrize("kind", ["mse", "l1"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pixel_loss(kind, reduction):
    x, y = _images()
    _same(losses.pixel_loss(x, y, kind, reduction), losses.pixel_loss(x.to(DEV), y.to(DEV), kind, reduction))


@pytest.mark.parametrize("arch,layers,sigmoid", [("alexnet", ("S",), True), ("vgg16", ("M",), False),
                                                 ("resnet18", ("L",), False), ("alexnet", ("E", "S", "M"), False)])
def test_perceptual_loss_and_gradient(arch, layers, sigmoid):
    net, gnet = _pair(lambda: _net(arch, layers, sigmoid))
    x, y = _images()
    _same(losses.perceptual_loss(net, x, y), losses.perceptual_loss(gnet, x.to(DEV), y.to(DEV)))
    _grads(lambda: _pair(lambda: _net(arch, layers, sigmoid)), losses.perceptual_loss, x, y)
    _same(losses.PerceptualLoss(net, reduction="none")(x, y), losses.PerceptualLoss(gnet, reduction="none")(x.to(DEV), y.to(DEV)))


def test_feature_prediction_reconstruction_kl():
    g = torch.Generator().manual_seed(3)
    pred, feat = torch.randn(8, 192 * 49, generator=g), torch.randn(8, 192, 7, 7, generator=g)
    for red in ("mean", "sum", "none"):
        _same(losses.feature_prediction_loss(pred, feat, red), losses.feature_prediction_loss(pred.to(DEV), feat.to(DEV), red))
    fa = [torch.randn(4, 8, 5, 5, generator=g), torch.randn(4, 16, 3, 3, generator=g)]
    fb = [torch.randn_like(f) for f in fa]
    for red in ("mean", "sum", "none"):
        _same(losses.feature_reconstruction_loss(fa, fb, [0.3, 0.7], red),
              losses.feature_reconstruction_loss([f.to(DEV) for f in fa], [f.to(DEV) for f in fb], [0.3, 0.7], red))
    mu, logvar = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g) * 0.3
    _same(losses.kl_divergence(mu, logvar), losses.kl_divergence(mu.to(DEV), logvar.to(DEV)))


@pytest.mark.parametrize("arch", ["alexnet", "vgg16"])
@pytest.mark.parametrize("spatial", [False, True])
def test_perceptual_distance_lpips_heads(arch, spatial):
    make = lambda: losses.PerceptualDistance(arch, lpips_weights=True, weights=None, spatial=spatial)  # noqa: E731
    d, gd = _pair(make)
    x, y = _images(size=64)
    _same(d(x, y), gd(x.to(DEV), y.to(DEV)))
    _grads(lambda: _pair(make), lambda m, a, b: m(a, b).mean(), x, y)


def test_torchmetrics_metrics():
    from lossnet.eval.torchmetrics import (SRPSNR, SRSSIM, DeepPerceptualSimilarity, DelineationScores,
                                          PerceptualDistanceMetric)

    x, y = _images(size=48)
    masks = (x[:, :1] > 0.7).float(), (y[:, :1] > 0.7).float()
    made = [(lambda: PerceptualDistanceMetric("alexnet", weights=None), (x, y)),
            (lambda: DeepPerceptualSimilarity(_net("resnet18", ("M",))), (x, y)),
            (lambda: SRPSNR(border=4), (x, y)), (lambda: SRSSIM(border=4), (x, y)),
            (DelineationScores, masks)]
    for make, (a, b) in made:
        metric, gm = _pair(make)
        metric.update(a, b)
        gm.update(a.to(DEV), b.to(DEV))
        _same(metric.compute(), gm.compute())


def test_psnr_ssim_and_position_error():
    x, y = _images(size=48)
    _same(list(psnr_ssim(x, y, border=4)), list(psnr_ssim(x.to(DEV), y.to(DEV), border=4)))
    g = torch.Generator().manual_seed(5)
    p, t = torch.rand(32, 2, generator=g) * 64, torch.rand(32, 2, generator=g) * 64
    _same(position_error(p, t), position_error(p.to(DEV), t.to(DEV)))
