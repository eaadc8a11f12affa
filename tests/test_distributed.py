"""Data-parallel training (torchrun / DistributedDataParallel) on the CPU with gloo, tiny data.

* 2 processes (``torch.multiprocessing`` with a gloo group) train the same as 1 process on the
  same global batch (weights and history), with uneven shares of the last batch, a custom
  ``validate`` and resuming from rank 0's checkpoint; BatchNorm on the CPU keeps the ranks equal.
* ``lossnet pretrain`` and ``lossnet run`` under ``python -m torch.distributed.run
  --nproc-per-node 2``: a killed pretraining resumes from rank 0's checkpoint; one results row
  per cell, one checkpoint, one export; a rerun recomputes nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lossnet import distributed
from lossnet.train.engine import FitConfig, fit

REPO = Path(__file__).resolve().parents[1]


class Regressor(nn.Module):
    """A tiny deterministic task: MSE of an MLP (optionally with BatchNorm) on (x, y)."""

    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), *([nn.BatchNorm1d(16)] if bn else []), nn.Tanh(), nn.Linear(16, 1))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def loss(self, b):
        return ((self.net(b["x"]) - b["y"]) ** 2).mean()


def _data(n: int = 71) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=g)
    return {"x": x, "y": x.sum(1, keepdim=True).sin()}


def _mae(task, v, device):  # a custom validation score that is a mean over samples
    return (task.net(v["x"].to(device)) - v["y"].to(device)).abs().mean().item()


# 71 samples: 57 train / 14 validation; global batch 10 -> a last batch of 7 (shares 4 + 3)
CFG = dict(batch_size=10, lr=1e-2, progress=False, device="cpu")


def _trained(ckpt: Path) -> dict:
    """What one process computes (1 or 2 processes): plain fit, custom validate, resume, BatchNorm."""
    out = {}
    t = Regressor()
    r = fit(t, _data(), FitConfig(epochs=3, **CFG))
    out["plain"] = ({k: v.clone() for k, v in t.state_dict().items()}, r.history, r.best_epoch)
    t = Regressor()
    r = fit(t, _data(), FitConfig(epochs=3, **CFG), validate=_mae)
    out["validate"] = ({k: v.clone() for k, v in t.state_dict().items()}, r.history, r.best_epoch)
    # resume: 2 epochs, then the same run asked for 3 picks up rank 0's checkpoint (identity without epochs)
    ident = {"run": "resume"}
    t = Regressor()
    fit(t, _data(), FitConfig(epochs=2, **CFG), ckpt_dir=ckpt, identity=ident)
    state = torch.load(ckpt / "last.pt", weights_only=True)
    state["identity"]["fit"] = FitConfig(epochs=3, **CFG).identity()  # "asked for one more epoch"
    distributed.barrier()
    if distributed.is_main():
        torch.save(state, ckpt / "last.pt")
    t = Regressor()
    r = fit(t, _data(), FitConfig(epochs=3, **CFG), ckpt_dir=ckpt, identity=ident)
    out["resumed"] = ({k: v.clone() for k, v in t.state_dict().items()}, r.history, r.resumed_from)
    t = Regressor(bn=True)
    fit(t, _data(), FitConfig(epochs=2, **CFG))
    out["bn"] = {k: v.clone() for k, v in t.state_dict().items()}
    return out


def _worker(rank: int, port: int, tmp: str) -> None:  # runs in a spawned process
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        assert distributed.world_size() == 2 and distributed.rank() == rank
        out = _trained(Path(tmp) / "ckpt2")
        torch.save(out, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(1-process result, [rank 0 result, rank 1 result]) of :func:`_trained`."""
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(tmp)), nprocs=2, join=True)
    one = _trained(tmp / "ckpt1")
    return one, [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def _losses(history):
    return [(h["epoch"], h["train_loss"], h["val_loss"]) for h in history]


@pytest.mark.parametrize("case", ["plain", "validate", "resumed"])
def test_two_processes_train_as_one_on_the_same_global_batch(runs, case):
    one, ranks = runs
    for r in ranks:
        _close(one[case][0], r[case][0])
        for (e1, t1, v1), (e2, t2, v2) in zip(_losses(one[case][1]), _losses(r[case][1]), strict=True):
            assert e1 == e2 and t1 == pytest.approx(t2, rel=1e-5) and v1 == pytest.approx(v2, rel=1e-5)
        assert one[case][2] == r[case][2]  # best epoch / resumed epochs
    assert ranks[0][case][1] == ranks[1][case][1]  # the same history (reduced values) on every rank


def test_resume_under_two_processes_reads_rank0s_checkpoint(runs):
    one, ranks = runs
    assert one["resumed"][2] == 2 and [r["resumed"][2] for r in ranks] == [2, 2]
    assert len(ranks[0]["resumed"][1]) == 3


def test_cpu_batchnorm_ranks_end_with_rank0s_statistics(runs):
    """No SyncBatchNorm on the CPU: per-rank batch statistics, yet every rank holds the same
    weights and running statistics (rank 0's), and they differ from the 1-process run."""
    one, ranks = runs
    _close(ranks[0]["bn"], ranks[1]["bn"])
    assert not torch.allclose(one["bn"]["net.1.running_mean"], ranks[0]["bn"]["net.1.running_mean"])


def test_single_process_helpers_are_no_ops():
    assert "WORLD_SIZE" not in os.environ or os.environ["WORLD_SIZE"] == "1"
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert not torch.distributed.is_initialized()
    with distributed.main_first() as main:
        assert main
    x = torch.arange(5)
    assert distributed.shard(x) is x and distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert [len(distributed.shard(x, 2, i)) for i in range(2)] == [3, 2]


# --------------------------------------------------------------------------------------------
# The commands under torchrun
# --------------------------------------------------------------------------------------------


_DRIVER = """
import sys
from lossnet import cli, distributed
pretrain, run = sys.argv[1].split("\\x1f"), sys.argv[2].split("\\x1f")
for args in (pretrain, run, run):  # run twice: the second time finds every cell done
    assert cli.main(args) == 0
    print(f"rank {distributed.rank()} of {distributed.world_size()} finished {args[0]}", flush=True)
"""


def _torchrun(tmp_path: Path, args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("LOSSNET_FAULT", None)
    if fault:
        env["LOSSNET_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def test_commands_under_torchrun_write_once_and_resume(tmp_path, offline_weights, random_png_folder):
    """`lossnet pretrain` killed in its 2nd epoch, then resumed; `lossnet run` twice; 2 processes each."""
    imgs = random_png_folder(20)
    enc, out = tmp_path / "enc", tmp_path / "b"
    pretrain = ["pretrain", "--images", str(imgs), "--out", str(enc), "--procedure", "F-F-FP", "--z", "8",
                "--epochs", "3", "--batch-size", "8", "--loss-net", "alexnet", "--layer", "E", "--keep-checkpoint"]
    run = ["run", "paper_b", "lunarlander.rollouts=[2,2,2]", "lunarlander.steps=30", "data.max_encoder=24",
           "data.max_probe=16", "data.max_test=16", "encoder.epochs=1", "encoder.batch_size=8", "encoder.hidden=16",
           "probe.epochs=2", "probe.batch_size=8", "threads=1", "progress=false", "loss_net.weights=random",
           "baseline.simple_cnn=false", "procedures=[I-I-PW,F-F-FP]", "z=[4]", "repeats=1", "workers=1",
           "keep_checkpoints=true", f"collection={tmp_path / 'll'}", f"out={out}"]
    # every rank SIGKILLs itself after its 2nd training epoch, before that epoch's checkpoint
    p = _torchrun(tmp_path, ["-m", "lossnet.cli", *pretrain], fault="epoch:2")
    assert p.returncode != 0 and not (enc / "encoder.safetensors").exists()
    killed = torch.load(enc / "checkpoint" / "last.pt", weights_only=True)["history"]
    assert 1 <= len(killed) <= 2  # epoch 0's checkpoint (rank 0 may have written epoch 1's before the kill)
    (tmp_path / "driver.py").write_text(_DRIVER)
    p = _torchrun(tmp_path, [str(tmp_path / "driver.py"), "\x1f".join(pretrain), "\x1f".join(run)])
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    for r in (0, 1):
        assert sum(line == f"rank {r} of 2 finished run" for line in lines) == 2
    # rank 0 alone prints, exports, writes: one report line per command
    assert sum("exported to" in line for line in lines) == 1
    assert lines.count(str(out)) == 2
    assert sorted(f.name for f in enc.iterdir()) == ["checkpoint", "config.json", "encoder.safetensors",
                                                     "history.csv"]  # no .lock left after success
    with open(enc / "history.csv") as f:  # rank 0's log: one row per epoch, the resumed run's epochs not repeated
        assert [r.split(",")[0] for r in f.read().splitlines()[1:]] == ["1", "2", "3"]
    assert [f.name for f in (enc / "checkpoint").iterdir()] == ["last.pt"]  # one checkpoint, no rank temp files
    assert not (enc / ".lock").exists() and (out / ".lock").read_text() == ""  # released (pretrain removes it)
    history = torch.load(enc / "checkpoint" / "last.pt", weights_only=True)["history"]
    assert len(history) == 3 and history[:len(killed)] == killed  # resumed: the killed run's epochs kept as they were
    assert "not resuming" not in p.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["procedure"] for r in rows) == ["F-F-FP", "I-I-PW"]  # one row per cell, after two runs
    assert len({r["cell_id"] for r in rows}) == 2
    assert sorted(f.name for f in (out / "cells").glob("*/last.pt")) == ["last.pt"] * 2
    assert (out / "report.md").exists()


def test_other_ranks_write_no_rows_and_take_no_lock(tmp_path, monkeypatch):
    """What rank 1 does: the table and the lock are rank 0's (simulated with is_main -> False)."""
    from lossnet.runs.lock import run_lock
    from lossnet.runs.table import ResultsTable

    monkeypatch.setattr(distributed, "is_main", lambda: False)
    table = ResultsTable(tmp_path)
    with run_lock(tmp_path):
        table.append({"cell_id": "a"})
    assert table.rows() == [] and not (tmp_path / ".lock").exists() and not table.csv_path.exists()


def test_sweep_under_torchrun_needs_one_local_job(monkeypatch):
    from lossnet.benchmarks.sweep import run_sweep
    from lossnet.errors import ConfigError

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    with pytest.raises(ConfigError, match="set jobs=1 launcher=local"):
        run_sweep("autoencoding", ["jobs=2"])
