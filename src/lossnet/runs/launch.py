"""Running cells: in this process, in local worker processes, or as a SLURM job array (submitit).

A cell is described by a picklable :class:`CellRequest` (built in the parent, run anywhere) and
executed by :func:`execute`, which writes the finished row to ``cells/<id>/row.json`` before
returning it, so a row whose parent died is adopted by the next run. Only the parent appends rows
to the results table.

* :func:`run_inline` -- one cell after the other in this process (``jobs=1``);
* :func:`run_pool` -- ``jobs=N`` local worker processes (``concurrent.futures.ProcessPoolExecutor``);
* :func:`run_slurm` -- ``launcher=slurm``: a job array through ``submitit.AutoExecutor``.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from lossnet.errors import ConfigError, UserError
from lossnet.runs.cells import environment, utc_now
from lossnet.runs.table import clean
from lossnet.schema.files import Slurm
from lossnet.utils import atomic_write, log

__all__ = ["CellRequest", "Job", "execute", "run_inline", "run_pool", "run_slurm", "slurm_parameters", "visible_gpus",
           "worker_gpu"]


@dataclass(frozen=True)
class CellRequest:
    """What a cell function gets (picklable; built in the parent, run in a worker).

    ``weights`` is ``"imagenet"`` or ``"random"``; :attr:`weights_kwargs` are the matching
    ``weights=`` / ``seed=`` arguments of :class:`~lossnet.zoo.LossNetwork` (random weights drawn
    with ``init_seed``).
    """

    benchmark: str
    cfg: dict  # the resolved sweep config (plain container)
    arch: str
    layer: str
    coords: dict
    cid: str
    out: str
    seed: int
    weights: str
    init_seed: int
    label: str

    @property
    def config(self) -> DictConfig:
        return OmegaConf.create(self.cfg)

    @property
    def weights_kwargs(self) -> dict:
        """``{"weights": "imagenet", "seed": None}`` or ``{"weights": "random", "seed": init_seed}``."""
        random = self.weights != "imagenet"
        return {"weights": "random" if random else "imagenet", "seed": self.init_seed if random else None}

    def loss_network(self, sigmoid: bool = False):
        """The cell's single-layer :class:`~lossnet.zoo.LossNetwork`."""
        from lossnet.zoo import LossNetwork

        return LossNetwork(self.arch, layers=[self.layer], sigmoid=sigmoid, **self.weights_kwargs)


def base_row(req: CellRequest, spec: dict) -> dict:
    """The identifying columns of a cell's row (cell id, benchmark, arch, layer, coordinates, seed, weights)."""
    return {"cell_id": req.cid, "benchmark": req.benchmark, "arch": req.arch, "layer": req.layer, **req.coords,
            "seed": req.seed, "weights": req.weights}


def skipped_row(req: CellRequest, spec: dict, reason: str) -> dict:
    """A complete ``skipped`` row for a cell that was not run (``reason`` says why, e.g. missing weights)."""
    return {**base_row(req, spec), "status": "skipped", "reason": reason, "seconds": 0.0,
            "config": {"spec": spec, "run": req.cfg}, **environment(), "timestamp": utc_now()}


@dataclass(frozen=True)
class Job:
    """One cell to execute: its request and spec, the benchmark, torch threads, extra architectures to register."""

    request: CellRequest
    spec: dict
    bench: Any  # lossnet.benchmarks.base.Benchmark (duck-typed: runs sits below benchmarks)
    threads: int | None
    extra_specs: tuple = ()


def _register_specs(specs) -> None:
    from lossnet.zoo import REGISTRY, register

    for s in specs:
        if s.name not in REGISTRY:
            register(s)


def execute(job: Job) -> dict:
    """Run one cell; returns its complete row (also written to ``cells/<id>/row.json``)."""
    import torch

    from lossnet.zoo import WeightsUnavailableError

    _register_specs(job.extra_specs)
    req = job.request
    old = torch.get_num_threads()
    if job.threads:
        torch.set_num_threads(int(job.threads))
    t0 = time.perf_counter()
    try:
        res = job.bench.run(req)
        row = {**base_row(req, job.spec), "status": "ok", **res["scores"]}
        details = dict(res.get("details") or {})
        row["weights_source"] = details.pop("weights_source", None)
        row["details"] = details
    except WeightsUnavailableError as e:
        row = {**base_row(req, job.spec), "status": "skipped", "reason": str(e)}
    finally:
        torch.set_num_threads(old)
    row.update(seconds=time.perf_counter() - t0, config={"spec": job.spec, "run": req.cfg}, **environment(),
               device=req.cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"),
               threads=int(job.threads) if job.threads else old, timestamp=utc_now())
    from lossnet import distributed

    if distributed.is_main():  # under torchrun every rank runs the cell; rank 0 writes
        path = Path(req.out) / "cells" / req.cid / "row.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(clean(row)), point="row_write")  # a full disk leaves no .tmp file
    return row


# --------------------------------------------------------------------------------------------
# Local workers: they die with their parent, and each gets its own GPU
# --------------------------------------------------------------------------------------------


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (``[]`` without CUDA).

    Read from ``$CUDA_VISIBLE_DEVICES`` when set, else ``0 .. torch.cuda.device_count() - 1``.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_gpu(index: int, gpus: Sequence[str]) -> str | None:
    """The GPU of local worker ``index``: round robin over ``gpus`` (None when there are none)."""
    return gpus[index % len(gpus)] if gpus else None


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in worker processes
    """Make this worker exit when process ``parent`` dies (even by SIGKILL).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; everywhere (and as a backstop): a daemon thread
    that kills this process when its parent pid changes (re-parenting to init / a subreaper).
    """
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    ppid = os.getppid()
    if ppid != parent and ppid == 1:  # the parent died before prctl took effect
        os._exit(1)
    # (with forkserver the direct parent is the fork server, which exits with the real parent)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="lossnet-parent-watch", daemon=True).start()


def _init_worker(specs, parent: int | None = None, counter=None, gpus: Sequence[str] = ()) -> None:  # pragma: no cover
    import warnings

    if parent is not None:
        _die_with_parent(parent)
    if counter is not None and gpus:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = worker_gpu(index, gpus)  # before CUDA is initialised here
    warnings.filterwarnings("ignore", message=".*not writable.*")
    _register_specs(specs)


def extra_specs(archs: Sequence[str], need_pickle: bool) -> tuple:
    """Specs of architectures registered at run time (workers re-register them)."""
    from lossnet.zoo import get_spec
    from lossnet.zoo.registry import _specs

    builtin = {s.name for s in _specs()}
    extra = []
    for a in archs:
        if a in builtin:
            continue
        s = get_spec(a)
        if need_pickle:
            try:
                pickle.dumps(s)
            except Exception as e:
                raise ConfigError(f"architecture {a!r} was registered at run time with a build function that cannot be "
                                  f"sent to worker processes ({e}); define its build at module level, or use jobs=1")
        extra.append(s)
    return tuple(extra)


def run_inline(jobs: list[Job], record, fail) -> None:
    """Execute ``jobs`` one after the other in this process; ``record(row)`` or ``fail(job, e, tb)`` each."""
    for job in jobs:
        try:
            row = execute(job)
        except Exception as e:  # noqa: BLE001 - one failing cell must not stop the others
            fail(job, e, traceback.format_exc())
            continue
        record(row)


def run_pool(jobs: list[Job], n: int, context: str, record, fail, gpus: Sequence[str] | None = None) -> None:
    """Run ``jobs`` on ``n`` local worker processes (start method ``context``).

    Workers exit when this process dies, even by SIGKILL (no orphans finishing queued cells and
    holding memory). With several GPUs (``gpus``, default :func:`visible_gpus`) each worker gets
    its own, round robin: it sees only that one (``CUDA_VISIBLE_DEVICES``), so ``device=cuda``
    in a cell means the worker's GPU. Pass ``gpus=[]`` to leave ``CUDA_VISIBLE_DEVICES`` alone.
    The workers start with ``OMP_NUM_THREADS`` = the jobs' ``threads`` (default
    :func:`lossnet.distributed.cpu_share` of ``n``) and ``OMP_WAIT_POLICY=PASSIVE`` when ``n`` > 1
    (:func:`lossnet.distributed.sharing_env`; values the user set are kept).
    """
    import multiprocessing as mp

    from lossnet.distributed import cpu_share, sharing_env

    extra = jobs[0].extra_specs if jobs else ()
    threads = next((j.threads for j in jobs if j.threads), None) or cpu_share(n)
    with sharing_env(threads, n):  # inherited by the workers: never more busy threads than cores
        _run_pool(jobs, n, mp.get_context(context), record, fail, gpus, extra)


def _run_pool(jobs, n, ctx, record, fail, gpus, extra) -> None:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    gpus = list(visible_gpus() if gpus is None else gpus)
    if len(gpus) > 1:
        log(f"  {n} workers over GPUs {','.join(gpus)} (round robin, CUDA_VISIBLE_DEVICES per worker)")
    ex = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                             initargs=(extra, os.getpid(), ctx.Value("i", 0), gpus if len(gpus) > 1 else ()))
    try:
        pending = {ex.submit(execute, j): j for j in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    row = fut.result()
                except Exception as e:  # noqa: BLE001
                    fail(job, e, "".join(traceback.format_exception(e)))
                    continue
                record(row)
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def import_submitit():
    """The ``submitit`` module, or one :class:`UserError` saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise UserError("launcher=slurm uses submitit, which is not installed: pip install lossnet[slurm] "
                        "(or pip install submitit)") from None
    return submitit


def slurm_parameters(s: Slurm, benchmark: str) -> dict:
    """``AutoExecutor.update_parameters`` arguments from the typed ``slurm.*`` settings."""
    params = {"name": f"lossnet-{benchmark}", "timeout_min": s.time_min, "gpus_per_node": s.gpus,
              "cpus_per_task": s.cpus, "mem_gb": s.mem_gb, "slurm_array_parallelism": s.array_parallelism}
    if s.partition:
        params["slurm_partition"] = s.partition
    if s.additional:
        params["slurm_additional_parameters"] = dict(s.additional)
    return params


def run_slurm(jobs: list[Job], s: Slurm, benchmark: str, out: Path, record, fail) -> None:
    """Submit ``jobs`` of ``benchmark`` as a SLURM job array (submitit) with the typed ``slurm.*``
    settings ``s`` and ``record``/``fail`` each as it finishes."""
    submitit = import_submitit()
    folder = s.folder or str(out / "slurm" / "%j")
    ex = submitit.AutoExecutor(folder=folder, cluster=s.cluster or None)
    ex.update_parameters(**slurm_parameters(s, benchmark))
    if s.gpus > 1:
        log(f"lossnet: warning: slurm.gpus={s.gpus} reserves {s.gpus} GPUs per cell, but a "
            f"cell trains on one (cuda:0 of its allocation); set slurm.gpus=1 and raise slurm.array_parallelism "
            f"to use more GPUs")
    submitted = []
    with ex.batch():
        for j in jobs:
            submitted.append(ex.submit(execute, j))
    by_job = {id(s): j for s, j in zip(submitted, jobs)}
    log(f"submitted {len(submitted)} cells with submitit ({getattr(ex, 'cluster', '?')}); logs in {folder}")
    poll = s.poll_seconds
    as_completed = getattr(getattr(submitit, "helpers", None), "as_completed", None)
    if as_completed is not None:
        finished = as_completed(submitted, poll_frequency=poll)
    else:  # older submitit: poll
        def _poll():
            left = list(submitted)
            while left:
                for s in [s for s in left if s.done()]:
                    left.remove(s)
                    yield s
                if left:
                    time.sleep(poll)
        finished = _poll()
    for s in finished:
        try:
            row = s.result()
        except Exception as e:  # noqa: BLE001 - FailedJobError etc.
            fail(by_job[id(s)], e, str(e))
            continue
        record(row)
