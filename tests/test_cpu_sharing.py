"""Processes sharing the CPU: threads per process = free cores / processes (>= 1), passive OpenMP
waiting for the workers of a local pool (no timing here: speed/contention.py measures)."""

from __future__ import annotations

import os
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lossnet import distributed
from lossnet.distributed import cpu_share, free_cores, sharing_env


@given(cores=st.integers(1, 512), processes=st.integers(1, 600))
def test_cpu_share_never_oversubscribes(cores, processes):
    t = cpu_share(processes, cores=cores)
    assert t >= 1
    assert t * processes <= cores or t == 1  # never more busy threads than cores, unless 1 each already
    assert (t + 1) * processes > cores  # and no core left idle that a whole thread per process could use


@given(load=st.floats(0, 64), cores=st.integers(1, 64))
def test_free_cores_subtracts_the_load(load, cores):
    with mock.patch.object(distributed, "_usable_cores", lambda: cores), \
            mock.patch.object(os, "getloadavg", lambda: (load, load, load)):
        assert free_cores() == max(1, min(cores, cores - int(load + 0.5)))
        assert free_cores(busy_own=load) == cores  # our own load is not someone else's


def test_sharing_env_sets_and_restores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with sharing_env(3, 4):
        assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_NUM_THREADS" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
    with sharing_env(2, 1):  # alone: no passive policy
        assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice is kept
    with sharing_env(1, 8):
        assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


class _EnvBench:
    def run(self, req):
        import torch

        return {"scores": {"omp": os.environ.get("OMP_NUM_THREADS"), "wait": os.environ.get("OMP_WAIT_POLICY"),
                           "torch_threads": torch.get_num_threads()}, "details": {}}


def test_pool_workers_start_with_their_share(tmp_path, monkeypatch):
    from lossnet.runs.launch import CellRequest, Job, run_pool

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(distributed, "free_cores", lambda busy_own=0.0: 4)  # inherited by fork workers
    jobs = [Job(CellRequest("fake", {"device": "cpu"}, "alexnet", "S", {"i": i}, f"c{i}", str(tmp_path), 0,
                            "random", 0, f"cell {i}"), {}, _EnvBench(), None) for i in range(2)]
    rows = []
    run_pool(jobs, 2, "fork", rows.append, lambda job, e, tb: pytest.fail(tb), gpus=[])
    assert [(r["omp"], r["wait"]) for r in rows] == [("2", "PASSIVE")] * 2
    assert "OMP_NUM_THREADS" not in os.environ  # the parent's environment is restored
