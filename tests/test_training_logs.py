"""Training logs (issue 21 item 7): each epoch once in every log after reruns, one name for one
number in history.csv and TensorBoard, epochs counted from 1, an optional per-step loss."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from lossnet.errors import ConfigError
from lossnet.train.engine import FitConfig, fit
from lossnet.train.loggers import COLUMNS

pytest.importorskip("tensorboard")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 4)

    def loss(self, batch):
        x = batch["x"]
        return (self.lin(x) - x).pow(2).mean()


def _data(n=20):
    return {"x": torch.randn(n, 4, generator=torch.Generator().manual_seed(0))}


def _cfg(**kw):
    return FitConfig(**{"epochs": 3, "batch_size": 4, "progress": False, **kw})


def _scalars(d, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(d / "tensorboard"))
    acc.Reload()
    return acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []


def _csv(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def test_hostile_rerun_from_scratch_leaves_each_epoch_once_in_tensorboard(tmp_path):
    """the same training twice into one log dir (no checkpoint: a fresh start) -> one event file, every epoch once in TensorBoard and history.csv"""
    for _ in range(2):
        fit(Tiny(), _data(), _cfg(logger="tensorboard", log_dir=str(tmp_path)))
    assert len(list((tmp_path / "tensorboard").iterdir())) == 1
    assert [e.step for e in _scalars(tmp_path, "val_loss")] == [1, 2, 3]
    assert [int(r["epoch"]) for r in _csv(tmp_path / "history.csv")] == [1, 2, 3]


def test_one_name_for_one_number_and_epochs_from_one(tmp_path):
    r = fit(Tiny(), _data(), _cfg(logger="tensorboard", log_dir=str(tmp_path)))
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    rows = _csv(tmp_path / "history.csv")
    assert list(rows[0]) == list(COLUMNS)
    for col in COLUMNS[1:]:  # every CSV column is a TensorBoard tag of the same name, same values
        ev = _scalars(tmp_path, col)
        assert [e.step for e in ev] == [int(x["epoch"]) for x in rows]
        assert [e.value for e in ev] == pytest.approx([float(x[col]) for x in rows], rel=1e-6)
    assert r.history[r.best_epoch]["epoch"] == r.best_epoch + 1


def test_per_step_loss_is_off_by_default_and_logged_when_asked(tmp_path):
    fit(Tiny(), _data(), _cfg(logger="tensorboard", log_dir=str(tmp_path / "off")))
    assert not (tmp_path / "off" / "steps.csv").exists() and not _scalars(tmp_path / "off", "step_loss")
    fit(Tiny(), _data(), _cfg(logger="tensorboard", log_dir=str(tmp_path / "on"), log_every_n_steps=2))
    rows = _csv(tmp_path / "on" / "steps.csv")
    # 16 training samples / batch 4 = 4 steps per epoch, 3 epochs -> steps 2, 4, ..., 12
    assert [int(x["step"]) for x in rows] == [2, 4, 6, 8, 10, 12]
    assert [int(x["epoch"]) for x in rows] == [1, 1, 2, 2, 3, 3]
    assert [e.step for e in _scalars(tmp_path / "on", "step_loss")] == [2, 4, 6, 8, 10, 12]


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_log_every_n_steps_must_be_a_non_negative_integer(bad):
    with pytest.raises(ConfigError, match="log_every_n_steps"):
        FitConfig(log_every_n_steps=bad)
