"""The six procedures and the VAE variants on the one engine; kill-and-resume; export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lossnet.train.cache import FeatureCache
from lossnet.train.engine import FitConfig, fit, split_indices
from lossnet.train.procedures import PROCEDURES, EncoderConfig, load_encoder, train_encoder
from lossnet.zoo import LossNetwork


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 64, 64), generator=g, dtype=torch.uint8)
    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    return images, net, FeatureCache(directory=None, progress=False)


@pytest.mark.parametrize("name,variational", [(p, False) for p in PROCEDURES] + [("I-I-PW", True), ("I-I-PS", True)])
def test_every_procedure_trains(tiny, name, variational, tmp_path):
    images, net, cache = tiny
    cfg = EncoderConfig(procedure=name, z=8, variational=variational, hidden=64)
    tr = train_encoder(images, cfg, FitConfig(epochs=2, batch_size=8, progress=False), loss_net=net, cache=cache)
    h = tr.result.history
    assert len(h) == 2 and all(torch.isfinite(torch.tensor(r["val_loss"])) for r in h)
    assert tr.result.best_epoch in (0, 1) and tr.result.epoch_seconds > 0
    emb = tr.embed(images, cache.get(images, net))
    assert emb.shape == (24, 8)
    tr.export(tmp_path / name)
    loaded = load_encoder(tmp_path / name)
    src = cache.get(images, net).float() if tr.uses_features else images.float() / 255
    torch.testing.assert_close(loaded.embed(src), emb)


def test_features_are_computed_once_across_procedures(tiny):
    images, net, _ = tiny
    cache = FeatureCache(directory=None, progress=False)
    for name in ("I-F-FP", "F-F-FP", "I-I-PS"):
        train_encoder(images, EncoderConfig(procedure=name, z=4, hidden=32), FitConfig(epochs=1, batch_size=12,
                      progress=False), loss_net=net, cache=cache)
    assert cache.misses == 1 and cache.hits == 2


def test_only_ps_runs_the_loss_network_during_training(tiny):
    images, net, cache = tiny
    cache.get(images, net)
    calls = []
    h = net.register_forward_hook(lambda *a: calls.append(1))
    try:
        for name in ("I-I-PW", "I-F-FP", "F-F-FP", "F-I-PW"):
            train_encoder(images, EncoderConfig(procedure=name, z=4, hidden=32),
                          FitConfig(epochs=1, batch_size=12, progress=False), loss_net=net, cache=cache)
        assert not calls
        train_encoder(images, EncoderConfig(procedure="I-I-PS", z=4), FitConfig(epochs=1, batch_size=12, progress=False),
                      loss_net=net, cache=cache)
        assert calls
    finally:
        h.remove()


def test_unknown_procedure():
    with pytest.raises(ValueError, match="unknown procedure"):
        EncoderConfig(procedure="X-Y-Z") and train_encoder(torch.zeros(4, 3, 64, 64, dtype=torch.uint8),
                                                           EncoderConfig(procedure="X-Y-Z"), FitConfig(),
                                                           loss_net=None)


def test_split_is_seeded_80_20():
    tr, va = split_indices(100, 0.2, seed=3)
    assert len(tr) == 80 and len(va) == 20 and set(tr.tolist()).isdisjoint(va.tolist())
    tr2, va2 = split_indices(100, 0.2, seed=3)
    assert torch.equal(va, va2)


def test_best_validation_epoch_is_kept():
    class Task(torch.nn.Module):
        """Validation loss is the distance of w to 1; training pushes w past it."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def loss(self, batch):
            if self.training:
                return -self.w.sum()  # keeps increasing w
            return (self.w - 1).abs().sum()

    t = Task()
    res = fit(t, {"x": torch.zeros(10, 1)}, FitConfig(epochs=30, batch_size=10, lr=0.1, progress=False))
    best_w = 0.1 * (res.best_epoch + 1)
    assert abs(t.w.item() - best_w) < 0.02 and res.best_val < 0.06
    assert res.history[-1]["val_loss"] > res.best_val


def test_separate_validation_set_and_score():
    """``val_data`` + ``validate``: all of data trains; the score (lower is better) picks the epoch."""
    seen = []

    class Task(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def loss(self, batch):
            seen.append(len(batch["x"]))
            return -self.w.sum()

    def score(task, val, device):  # best when w is closest to the validation target
        assert not task.training and not torch.is_grad_enabled()
        return (task.w - val["x"].mean()).abs().item()

    t = Task()
    res = fit(t, {"x": torch.zeros(10, 1)}, FitConfig(epochs=12, batch_size=10, lr=0.1, progress=False),
              val_data={"x": torch.full((3, 1), 0.5)}, validate=score)
    assert seen == [10] * 12  # no 80/20 split: every sample trains
    assert res.best_epoch == 4 and abs(t.w.item() - 0.5) < 0.02
    with pytest.raises(ValueError, match="lacks the keys"):
        fit(Task(), {"x": torch.zeros(4, 1)}, FitConfig(epochs=1, progress=False), val_data={"y": torch.zeros(2, 1)})


SCRIPT = textwrap.dedent("""
    import sys, torch
    from lossnet.train.cache import FeatureCache
    from lossnet.train.engine import FitConfig
    from lossnet.train.procedures import EncoderConfig, train_encoder
    from lossnet.zoo import LossNetwork
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 64, 64), generator=g, dtype=torch.uint8)
    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    tr = train_encoder(images, EncoderConfig(procedure="I-I-PS", z=8), FitConfig(epochs=int(sys.argv[2]), batch_size=8,
                       progress=False), loss_net=net, cache=FeatureCache(directory=None, progress=False),
                       ckpt_dir=sys.argv[1])
    torch.save({k: v for k, v in tr.model.state_dict().items()}, sys.argv[1] + "/final.pt")
    print("resumed_from", tr.result.resumed_from, flush=True)
""")


def _run(ckpt: Path, epochs: int, **kw):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(ckpt), str(epochs)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _epochs_done(ckpt: Path) -> int:
    try:
        return len(torch.load(ckpt / "last.pt", weights_only=True)["history"])
    except Exception:  # not written yet, or mid-rename
        return 0


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a training run after its first checkpoint; rerunning continues from there and ends
    with exactly the weights of an uninterrupted run."""
    epochs = 6
    killed = tmp_path / "killed"
    killed.mkdir()
    p = _run(killed, epochs)
    deadline = time.time() + 240
    while _epochs_done(killed) < 2 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = _epochs_done(killed)
    assert 2 <= done < epochs
    assert not (killed / "final.pt").exists()

    out = subprocess.run([sys.executable, "-c", SCRIPT, str(killed), str(epochs)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"resumed_from {done}" in out.stdout
    assert _epochs_done(killed) == epochs

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(fresh), str(epochs)], capture_output=True, text=True)
    assert out.returncode == 0 and "resumed_from 0" in out.stdout
    a = torch.load(killed / "final.pt", weights_only=True)
    b = torch.load(fresh / "final.pt", weights_only=True)
    for k in b:
        torch.testing.assert_close(a[k], b[k], msg=f"{k} differs after resume")


def test_frozen_network_follows_the_input_and_stays_out_of_the_state():
    from lossnet.train.engine import Frozen

    class Task(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.teacher = Frozen(torch.nn.Linear(2, 2))

    t = Task()
    assert list(t.state_dict()) == ["w"] and not any(p.requires_grad for p in t.teacher.net.parameters())
    x = torch.rand(3, 2, dtype=torch.float64)
    t.teacher.net.double()
    assert t.teacher(x).shape == (3, 2)
