"""Training on CUDA: bf16 and 16-mixed steps converge, torch.compile and channels_last give the
eager / contiguous result, the six procedures train on CUDA as on the CPU (TF32 off)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gpu_env import DEV, GPU, ON_CUDA, needs_cuda
from lossnet.train.engine import FitConfig, fit
from lossnet.train.procedures import PROCEDURES, EncoderConfig, train_encoder
from lossnet.zoo import LossNetwork

pytestmark = GPU


class Toy(nn.Module):
    """A conv net with BatchNorm regressing each image's mean colour (N, 3); loss = MSE."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                 nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def loss(self, b):
        return (self.net(b["image"]) - b["target"]).pow(2).mean()


def _data(n=256, size=16):
    g = torch.Generator().manual_seed(1)
    img = torch.rand(n, 3, size, size, generator=g) * torch.rand(n, 3, 1, 1, generator=g)
    return {"image": img, "target": img.mean((2, 3)) * 4}


def _fit(epochs=8, **kw):
    cfg = dict(epochs=epochs, batch_size=32, lr=1e-3, progress=False, device=DEV, logger="none")
    return fit(Toy(), _data(), FitConfig(**{**cfg, **kw})).history


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_low_precision_training_converges(precision):
    if precision == "16-mixed" and not ON_CUDA:
        pytest.skip("16-mixed needs CUDA")
    ref, low = _fit(), _fit(precision=precision)
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in low)
    assert low[-1]["val_loss"] < 0.25 * low[0]["val_loss"], low  # it learns
    assert low[-1]["val_loss"] < 2.0 * ref[-1]["val_loss"] + 1e-3, (low[-1], ref[-1])  # about as well as float32


def _close(a, b, rel):
    """Training losses within ``rel``; validation losses (BatchNorm running statistics, which
    amplify float rounding early in training) within 10 x ``rel``."""
    for x, y in zip(a, b, strict=True):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=rel)
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=10 * rel)


def test_channels_last_equals_contiguous():
    _close(_fit(epochs=3), _fit(epochs=3, channels_last=True), 1e-3)


def test_compile_equals_eager(capfd):
    a, b = _fit(epochs=3), _fit(epochs=3, compile=True)
    assert "compile=true: torch.compile" not in capfd.readouterr().err  # it compiled (no fallback)
    _close(a, b, 1e-3)


@pytest.mark.parametrize("proc", list(PROCEDURES))
def test_procedures_train_on_device_as_on_cpu(proc):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 64, 64), dtype=torch.uint8, generator=g)
    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    runs = {}
    for dev in ("cpu", DEV):
        fc = FitConfig(epochs=2, batch_size=16, progress=False, device=dev, logger="none")
        enc = train_encoder(images, EncoderConfig(procedure=proc, z=8, hidden=64), fc, loss_net=net)
        assert next(enc.model.parameters()).device.type == torch.device(dev).type
        runs[dev] = enc.result.history
    for a, b in zip(runs["cpu"], runs[DEV], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)


def test_data_on_device_gives_the_same_batches_and_training(monkeypatch):
    """Runtime.place moves the data to CUDA once and batches are gathered there (no copy per step):
    the same batch tensors, bit for bit, as gathering on the CPU and copying; and the same training
    up to CUDA's run-to-run differences (nondeterministic cuDNN/atomic kernels: two runs of this toy
    differed by up to 4e-3 relative after 3 epochs on an H200, with or without placement)."""
    from lossnet.train import runtime

    rt = runtime.Runtime.create(FitConfig(device=DEV))
    data = {**_data(), "u8": torch.randint(0, 256, (256, 3, 4, 4), dtype=torch.uint8)}
    placed = rt.place(data)
    if ON_CUDA:
        assert all(v.is_cuda for v in placed.values())
    idx = torch.randperm(256, generator=torch.Generator().manual_seed(2))[:40]
    a, b = rt.batch(placed, idx.to(runtime.data_device(placed))), rt.batch(data, idx)
    for k in data:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)

    def run():
        h = fit(Toy(), _data(), FitConfig(epochs=3, batch_size=32, lr=1e-3, progress=False, device=DEV,
                                          logger="none")).history
        return [r[k] for r in h for k in ("train_loss", "val_loss")]

    on_device = run()
    monkeypatch.setattr(runtime, "DATA_ON_DEVICE_FRACTION", 0.0)  # nothing fits: copied per batch
    assert on_device == pytest.approx(run(), rel=2e-2)


@needs_cuda
def test_cuda_is_used_and_fast_settings_combine():
    """bf16 + channels_last + compile together on CUDA (the expected fast setting)."""
    h = _fit(precision="bf16", channels_last=True, compile=True)
    assert h[-1]["val_loss"] < 0.25 * h[0]["val_loss"]
    assert torch.cuda.max_memory_allocated() > 0


def test_teacher_features_stay_on_the_device_when_they_fit(monkeypatch):
    """compute_features(keep_on_device=True) returns the features where they were computed when
    they fit (no copy to the host and back), else on the CPU; the values are the same."""
    from lossnet.train import runtime
    from lossnet.train.cache import compute_features

    images = torch.randint(0, 256, (40, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    net = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    kept = compute_features(images, net, batch_size=16, device=DEV, progress=False, keep_on_device=True)
    assert kept.device.type == torch.device(DEV).type
    monkeypatch.setattr(runtime, "DATA_ON_DEVICE_FRACTION", 0.0)  # nothing fits
    host = compute_features(images, net, batch_size=16, device=DEV, progress=False, keep_on_device=True)
    assert host.device.type == "cpu"
    torch.testing.assert_close(kept.cpu(), host, rtol=0, atol=0)
