"""Data parallel on the GPUs present (torchrun, NCCL, SyncBatchNorm) and the GPU-per-worker launcher.

* ``torchrun --nproc-per-node <GPUs>`` around :func:`lossnet.train.engine.fit` on a BatchNorm task:
  the group uses NCCL for CUDA tensors, each rank trains on ``cuda:LOCAL_RANK``, BatchNorm becomes
  ``nn.SyncBatchNorm`` when there are >= 2 ranks, every rank ends with the same weights and history,
  and these equal one process on the same global batch (SyncBatchNorm: the global batch's statistics).
  One GPU: one rank, which joins no process group (no SyncBatchNorm: NCCL refuses two ranks on one
  GPU); the group lossnet would create (``cpu:gloo,cuda:nccl``) is checked on its own, one rank
  all-reducing a CUDA and a CPU tensor.
* :func:`lossnet.runs.launch.run_pool`: each local worker sees exactly one GPU (its own
  ``CUDA_VISIBLE_DEVICES``) and computes there.

CPU dry run (``LOSSNET_GPU_TESTS_ON=cpu``): 2 gloo ranks on the CPU, fake GPU ids for the launcher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpu_env import DEV, GPU, ON_CUDA, DeviceReportBench, needs_cuda

pytestmark = GPU
SRC = Path(__file__).resolve().parents[2] / "src"

_DRIVER = r'''
import json, sys
import torch
from torch import nn
from lossnet import distributed
from lossnet.train.engine import FitConfig, fit

torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
converted = []
_orig = nn.SyncBatchNorm.convert_sync_batchnorm
def _spy(module, *a, **k):
    out = _orig(module, *a, **k)
    converted.append(sum(isinstance(m, nn.SyncBatchNorm) for m in out.modules()))
    return out
nn.SyncBatchNorm.convert_sync_batchnorm = _spy

class Task(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 1))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    def loss(self, b):
        return ((self.net(b["x"]) - b["y"]) ** 2).mean()

g = torch.Generator().manual_seed(1)
x = torch.randn(400, 8, generator=g)
data = {"x": x, "y": x.sum(1, keepdim=True).sin()}
task = Task()
r = fit(task, data, FitConfig(epochs=4, batch_size=64, lr=1e-2, progress=False, device=sys.argv[1], logger="none"))
dev = next(task.parameters()).device
out = {"rank": distributed.rank(), "world": distributed.world_size(), "device": str(dev),
       "local_rank": distributed.local_rank(),
       "backend": str(torch.distributed.get_backend()) if distributed.is_distributed() else None,
       "sync_bn": converted, "history": [(h["train_loss"], h["val_loss"]) for h in r.history],
       "state": {k: v.detach().cpu().double().flatten().tolist() for k, v in task.state_dict().items()
                 if v.is_floating_point()}}
with open(sys.argv[2] + f"/rank{distributed.rank()}.json", "w") as f:
    json.dump(out, f)
'''


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", **extra}
    env.pop("LOSSNET_FAULT", None)
    return env


def _run_driver(tmp: Path, nproc: int | None) -> list[dict]:
    """The driver's per-rank results: under torchrun with ``nproc`` ranks, or one plain process (None)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "driver.py").write_text(_DRIVER)
    launch = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    p = subprocess.run([sys.executable, *launch, str(tmp / "driver.py"), DEV, str(tmp)], env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    return [json.loads(f.read_text()) for f in sorted(tmp.glob("rank*.json"))]


def test_ddp_under_torchrun_on_every_gpu_with_syncbatchnorm(tmp_path):
    n = torch.cuda.device_count() if ON_CUDA else 2
    ranks = _run_driver(tmp_path / "ddp", n)
    (one,) = _run_driver(tmp_path / "one", None)
    assert [r["rank"] for r in ranks] == list(range(n)) and all(r["world"] == n for r in ranks)
    for r in ranks:
        if ON_CUDA:
            assert r["device"] == f"cuda:{r['local_rank']}"
            # one GPU: one rank, which joins no process group (nothing to synchronise)
            assert ("nccl" in r["backend"]) if n > 1 else r["backend"] is None, r["backend"]
            assert r["sync_bn"] == ([1] if n > 1 else []), r["sync_bn"]  # BatchNorm1d -> SyncBatchNorm with >= 2 ranks
        else:
            assert r["device"] == "cpu" and "gloo" in r["backend"] and r["sync_bn"] == []
        assert r["history"] == ranks[0]["history"]  # reduced values: the same on every rank
        for k, v in r["state"].items():
            torch.testing.assert_close(torch.tensor(v), torch.tensor(ranks[0]["state"][k]), rtol=0, atol=0, msg=k)
    if ON_CUDA:  # SyncBatchNorm over the global batch: N GPUs train as one process (float rounding)
        for k, v in one["state"].items():
            torch.testing.assert_close(torch.tensor(ranks[0]["state"][k]), torch.tensor(v), rtol=1e-4, atol=1e-5, msg=k)
        for a, b in zip(one["history"], ranks[0]["history"], strict=True):
            assert b == pytest.approx(a, rel=1e-4)


_GROUP = r'''
import sys, torch, torch.distributed as dist
torch.cuda.set_device(0)
dist.init_process_group(backend="cpu:gloo,cuda:nccl")  # the backends lossnet.distributed.init asks for
a, b = torch.ones(3, device="cuda"), torch.ones(3)
dist.all_reduce(a)
dist.all_reduce(b)
print("group", dist.get_backend(), dist.get_world_size(), a.sum().item(), b.sum().item())
dist.destroy_process_group()
'''


@needs_cuda
def test_nccl_group_on_one_gpu(tmp_path):
    (tmp_path / "group.py").write_text(_GROUP)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                        str(tmp_path / "group.py")], env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "nccl" in p.stdout and "3.0 3.0" in p.stdout, p.stdout


def test_local_workers_get_one_gpu_each(tmp_path):
    from lossnet.runs.launch import CellRequest, Job, run_pool, visible_gpus

    if ON_CUDA:
        gpus = visible_gpus()
        gpus = gpus * 2 if len(gpus) == 1 else gpus  # one GPU: two workers share it, each still pinned
    else:
        gpus = ["0", "1"]  # dry run: the assignment alone (nothing initialises CUDA)
    n = min(len(gpus), 4)
    jobs = [Job(CellRequest("fake", {"device": "cuda" if ON_CUDA else "cpu"}, "alexnet", "S", {"i": i}, f"c{i}",
                            str(tmp_path), 0, "random", 0, f"cell {i}"), {}, DeviceReportBench(1.5), 1)
            for i in range(2 * n)]
    rows, failed = [], []
    run_pool(jobs, n, "spawn", rows.append, lambda job, e, tb: failed.append(tb), gpus=gpus)
    assert not failed, failed[0]
    assert len(rows) == 2 * n and all(r["status"] == "ok" and r["total"] == 45.0 for r in rows)
    by_pid = {}
    for r in rows:
        by_pid.setdefault(r["pid"], set()).add(r["visible"])
    assert all(len(v) == 1 for v in by_pid.values()), by_pid  # a worker keeps its GPU
    assert {r["visible"] for r in rows} <= set(gpus) and len(by_pid) == n
    if ON_CUDA:
        assert all(r["on"] == "cuda" and r["gpus_seen"] == 1 for r in rows)  # it sees only its own
