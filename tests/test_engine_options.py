"""The engine's fast paths (precision, channels_last, compile) and its standard loggers."""

from __future__ import annotations

import csv
import sys

import pytest
import torch
from torch import nn

from lossnet.errors import ConfigError
from lossnet.train.engine import FitConfig, Frozen, checkpoint_identity, fit


class ConvTask(nn.Module):
    """A conv autoencoder-ish task with a frozen conv 'loss network'; records what it saw."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 3, 1)
        self.teacher = Frozen(nn.Conv2d(3, 2, 3))
        self.seen = []

    def loss(self, batch):
        x = batch["image"]
        h = self.conv(x)
        out = self.head(h)
        self.seen.append({"dtype": h.dtype, "batch_cl": x.is_contiguous(memory_format=torch.channels_last),
                          "weight_cl": self.conv.weight.is_contiguous(memory_format=torch.channels_last),
                          "teacher_cl": self.teacher.net.weight.is_contiguous(memory_format=torch.channels_last)})
        return (self.teacher(out) - self.teacher(x)).pow(2).mean()


def _data(n=16):
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)}


def _cfg(**kw):
    return FitConfig(**{"epochs": 2, "batch_size": 4, "progress": False, "logger": "none", **kw})


def test_bf16_autocasts_training_and_evaluation_on_cpu():
    t32, tbf = ConvTask(), ConvTask()
    r32 = fit(t32, _data(), _cfg())
    rbf = fit(tbf, _data(), _cfg(precision="bf16"))
    assert {s["dtype"] for s in t32.seen} == {torch.float32}
    assert {s["dtype"] for s in tbf.seen} == {torch.bfloat16}  # train and validation passes
    assert tbf.conv.weight.dtype == torch.float32  # master weights stay float32
    for a, b in zip(r32.history, rbf.history):  # same training, to bfloat16 accuracy
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=0.05)


def test_bad_precision_and_16_mixed_on_cpu_are_config_errors():
    with pytest.raises(ConfigError, match="precision must be one of"):
        fit(ConvTask(), _data(), _cfg(precision="8"))
    with pytest.raises(ConfigError, match="needs CUDA"):
        fit(ConvTask(), _data(), _cfg(precision="16-mixed", device="cpu"))
    assert FitConfig(precision=32).precision == "32"  # a YAML int is accepted


def test_precision_is_part_of_the_checkpoint_identity(tmp_path, capfd):
    base = checkpoint_identity(_cfg())
    assert checkpoint_identity(_cfg(precision="bf16")) != base
    # fast paths and loggers do not change the result: a checkpoint resumes across them
    assert checkpoint_identity(_cfg(channels_last=True, compile=True, logger="csv", log_dir="x")) == base
    fit(ConvTask(), _data(), _cfg(), ckpt_dir=tmp_path)
    r = fit(ConvTask(), _data(), _cfg(precision="bf16", epochs=3), ckpt_dir=tmp_path)
    assert r.resumed_from == 0 and "changed: fit" in capfd.readouterr().err
    r = fit(ConvTask(), _data(), _cfg(precision="bf16", epochs=3), ckpt_dir=tmp_path)
    assert r.resumed_from == 3


def test_channels_last_reaches_task_batches_and_loss_network():
    t, ref = ConvTask(), ConvTask()
    r = fit(t, _data(), _cfg(channels_last=True))
    r_ref = fit(ref, _data(), _cfg())
    assert all(s["batch_cl"] and s["weight_cl"] and s["teacher_cl"] for s in t.seen)
    assert not any(s["batch_cl"] or s["weight_cl"] for s in ref.seen)
    assert t.conv.weight.is_contiguous()  # handed back in the default format
    for a, b in zip(r.history, r_ref.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_compile_trains_the_same_and_falls_back_when_unavailable(monkeypatch, capfd):
    calls = []
    real = torch.compile

    def eager_compile(fn, **kw):  # the engine's wiring, without building C++ kernels in a unit test
        calls.append(fn)
        return real(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    ref = fit(ConvTask(), _data(), _cfg())
    r = fit(ConvTask(), _data(), _cfg(compile=True))
    assert len(calls) == 1
    for a, b in zip(r.history, ref.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)

    def broken(fn, **kw):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", broken)
    r = fit(ConvTask(), _data(), _cfg(compile=True))
    assert "torch.compile is unavailable" in capfd.readouterr().err
    for a, b in zip(r.history, ref.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)

    def fails_at_first_call(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", fails_at_first_call)
    r = fit(ConvTask(), _data(), _cfg(compile=True))
    assert "torch.compile failed" in capfd.readouterr().err and len(r.history) == 2


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _crash_after_logging_epoch(monkeypatch, k):
    """Make the engine die after epoch ``k`` was logged, before its checkpoint was written."""
    from lossnet.train import engine

    seen = []

    def fault(name):
        if name == "epoch":
            seen.append(1)
            if len(seen) == k + 1:
                raise RuntimeError("injected crash")

    monkeypatch.setattr(engine, "fault_point", fault)


def test_csv_history_matches_the_run_and_survives_resume(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _crash_after_logging_epoch(m, 2)
        with pytest.raises(RuntimeError, match="injected"):
            fit(ConvTask(), _data(), _cfg(epochs=4, logger="csv"), ckpt_dir=tmp_path)
    rows = _csv(tmp_path / "history.csv")
    assert [int(x["epoch"]) for x in rows] == [1, 2, 3]  # epoch 3 logged, not checkpointed
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "lr", "train_seconds", "val_seconds"]
    r = fit(ConvTask(), _data(), _cfg(epochs=4, logger="csv"), ckpt_dir=tmp_path)
    assert r.resumed_from == 2
    rows = _csv(tmp_path / "history.csv")
    assert [int(x["epoch"]) for x in rows] == [1, 2, 3, 4]  # the re-run epoch 3 once
    assert [float(x["val_loss"]) for x in rows] == pytest.approx([h["val_loss"] for h in r.history])
    assert [float(x["train_seconds"]) for x in rows] == pytest.approx([h["train_seconds"] for h in r.history])
    assert {float(x["lr"]) for x in rows} == {1e-3}


def test_log_dir_and_logger_none(tmp_path):
    fit(ConvTask(), _data(), _cfg(logger="csv", log_dir=str(tmp_path / "logs")))
    assert len(_csv(tmp_path / "logs" / "history.csv")) == 2
    fit(ConvTask(), _data(), _cfg(logger="none"), ckpt_dir=tmp_path / "ck")
    assert not (tmp_path / "ck" / "history.csv").exists()
    with pytest.raises(ConfigError, match="logger must be one of"):
        fit(ConvTask(), _data(), _cfg(logger="wandb"))


def test_tensorboard_events_hold_the_history(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the test extra

    with monkeypatch.context() as m:
        _crash_after_logging_epoch(m, 2)
        with pytest.raises(RuntimeError, match="injected"):
            fit(ConvTask(), _data(), _cfg(epochs=4, logger="tensorboard"), ckpt_dir=tmp_path)
    r = fit(ConvTask(), _data(), _cfg(epochs=4, logger="tensorboard"), ckpt_dir=tmp_path)  # resumed at 2
    assert r.resumed_from == 2
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train_loss", "val_loss", "lr", "train_seconds", "val_seconds"} <= set(acc.Tags()["scalars"])
    val = acc.Scalars("val_loss")  # one name for one number: the history.csv column
    assert [e.step for e in val] == [1, 2, 3, 4]  # the crashed run's epoch 3 once
    assert [e.value for e in val] == pytest.approx([h["val_loss"] for h in r.history], rel=1e-6)
    assert len(_csv(tmp_path / "history.csv")) == 4


def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        fit(ConvTask(), _data(), _cfg(logger="tensorboard"))


def test_batch_indices_go_where_every_tensor_is_or_to_the_cpu():
    """Indices follow the data only when all of it is on one device: a CPU index tensor indexes
    tensors on any device, a device index cannot index a CPU tensor (hand-built mixed dicts)."""
    from lossnet.train.runtime import data_device

    cpu, meta = torch.zeros(2), torch.zeros(2, device="meta")
    assert data_device({"a": cpu, "b": cpu.clone()}) == torch.device("cpu")
    assert data_device({"a": meta, "b": meta.clone()}) == torch.device("meta")
    assert data_device({"a": meta, "b": cpu}) == torch.device("cpu")
    assert data_device({"a": cpu, "b": meta}) == torch.device("cpu")


def test_data_fit_on_a_cuda_device_within_a_quarter_of_its_free_memory(monkeypatch):
    """One rule for what may live on the GPU (training data, teacher features): at most
    DATA_ON_DEVICE_FRACTION of the free memory, CUDA only (free memory faked: no GPU needed)."""
    from lossnet.train import runtime

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4000, 8000))
    assert runtime.DATA_ON_DEVICE_FRACTION == 0.25
    assert runtime.fits_on_device(1000, "cuda") and runtime.fits_on_device(1000, torch.device("cuda", 1))
    assert not runtime.fits_on_device(1001, "cuda")
    assert not runtime.fits_on_device(0, "cpu") and not runtime.fits_on_device(0, "meta")
