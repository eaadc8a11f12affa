"""``deterministic=true``: same machine, same threads -> bit-identical training (lossnet.train.determinism)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from lossnet.train.determinism import CUBLAS_WORKSPACE, deterministic_mode
from lossnet.train.engine import FitConfig, fit


class NoisyTask(nn.Module):
    """A conv autoencoder with dropout and noise from torch, NumPy's and Python's global
    generators: reruns agree only if every generator is seeded. Records whether deterministic
    algorithms were on while it trained."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.3),
                                 nn.ConvTranspose2d(8, 3, 3, padding=1))
        self.modes = set()

    def loss(self, batch):
        x = batch["image"]
        self.modes.add(torch.are_deterministic_algorithms_enabled())
        jitter = float(np.random.rand()) * 1e-2 + random.random() * 1e-2
        noisy = x + jitter * torch.randn_like(x)
        return (self.net(noisy) - x).pow(2).mean()


def _train(seed_offset: int):
    # the global generators are left in different states before each run
    random.seed(100 + seed_offset)
    np.random.seed(200 + seed_offset)
    torch.manual_seed(7)  # the model's initialisation, as the callers seed it
    task = NoisyTask()
    torch.manual_seed(300 + seed_offset)
    g = torch.Generator().manual_seed(1)
    data = {"image": torch.randint(0, 256, (24, 3, 8, 8), generator=g, dtype=torch.uint8)}
    cfg = FitConfig(epochs=3, batch_size=5, seed=4, progress=False, logger="none", deterministic=True)
    result = fit(task, data, cfg)
    return task, result


def test_two_deterministic_runs_are_bit_identical():
    threads = torch.get_num_threads()  # same threads in both runs
    a, ra = _train(0)
    b, rb = _train(1)
    assert torch.get_num_threads() == threads
    assert a.modes == b.modes == {True}
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka  # bit-identical, not merely close
    strip = [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in ra.history]
    assert strip == [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in rb.history]
    assert not torch.are_deterministic_algorithms_enabled()  # restored after fit


def test_without_the_flag_the_global_generators_leak_in():
    """The control: the same two runs without ``deterministic`` differ (NumPy's and Python's
    generators are not seeded by fit), so the test above would fail without the flag's seeding."""
    def run(offset):
        random.seed(100 + offset)
        np.random.seed(200 + offset)
        torch.manual_seed(7)
        task = NoisyTask()
        data = {"image": torch.randint(0, 256, (24, 3, 8, 8), generator=torch.Generator().manual_seed(1),
                                       dtype=torch.uint8)}
        fit(task, data, FitConfig(epochs=2, batch_size=5, seed=4, progress=False, logger="none"))
        return task

    a, b = run(0), run(1)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.modes == {False}


def test_deterministic_mode_restores_settings_and_sets_cublas(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with deterministic_mode(0, "cpu"):
        assert torch.are_deterministic_algorithms_enabled()
    import os

    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # only for CUDA
    with pytest.raises(RuntimeError, match="boom"):
        with deterministic_mode(0, torch.device("cuda")):  # sets the variable; no CUDA call made
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
            raise RuntimeError("boom")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    assert not torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own setting is kept
    with deterministic_mode(0, "cuda"):
        pass
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_flag_is_a_config_option_and_keeps_checkpoint_identity():
    assert FitConfig.from_section({"deterministic": True}).deterministic is True
    assert FitConfig(deterministic=True).identity() == FitConfig().identity()


@pytest.mark.parametrize("experiment", ["paper_a", "paper_b"])
def test_training_configs_carry_the_setting(experiment):
    from lossnet.experiments.runner import load_config

    assert FitConfig.from_section(load_config(experiment).encoder).deterministic is False
    cfg = load_config(experiment, ["encoder.deterministic=true"])
    assert FitConfig.from_section(cfg.encoder).deterministic is True


def test_benchmark4_config_carries_the_setting():
    from lossnet.benchmarks.autoencoding import load_defaults

    for scale in ("quick", "paper"):
        assert FitConfig.from_section(load_defaults(scale).encoder).deterministic is False
