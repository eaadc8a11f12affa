"""Data-parallel training under ``torchrun``: plain ``torch.distributed``, nothing home-made.

A command started by ``torchrun --nproc-per-node N ...`` (``WORLD_SIZE`` > 1 in the environment)
joins the process group on first use of any helper here: backend ``gloo`` for CPU tensors and
``nccl`` for CUDA tensors (one group, ``"cpu:gloo,cuda:nccl"`` when CUDA is present; override with
``$LOSSNET_DIST_BACKEND``), each process on ``cuda:LOCAL_RANK`` when CUDA is present. Without
``torchrun`` (or with ``WORLD_SIZE=1``) no process group is created and every helper is a no-op:
:func:`rank` is 0, :func:`world_size` is 1, :func:`is_main` is True -- single-process behaviour is
unchanged. A group that the caller initialised itself (``dist.init_process_group``) is used as is.
Worker processes that a rank starts with ``multiprocessing`` (data generation, ``jobs=N``) inherit
torchrun's environment but never join the group (a function launched by
``torch.distributed.launcher.elastic_launch`` is such a child: it calls ``dist.init_process_group`` itself).

Collectives wait at most ``$LOSSNET_DIST_TIMEOUT_MIN`` minutes (default 60: rank 0 may generate a
dataset or compute teacher features while the others wait at a barrier).

A leaf module (imports nothing of lossnet).
"""

from __future__ import annotations

import atexit
import datetime
import os
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist

__all__ = ["all_gather_rows", "all_reduce", "barrier", "broadcast_object", "broadcast_tensors", "cpu_share",
           "free_cores", "init", "is_distributed", "is_main", "local_rank", "main_first", "rank", "shard",
           "sharing_env", "world_size"]


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def local_rank() -> int:
    """``$LOCAL_RANK`` (the process's index on its node; 0 without torchrun)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def _destroy() -> None:  # pragma: no cover - at interpreter exit
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer already gone
            pass


def init() -> bool:
    """Join the torchrun process group once (idempotent); True when running distributed (> 1 process)."""
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if _env_world_size() <= 1:
        return False
    import multiprocessing

    if multiprocessing.parent_process() is not None:  # a worker process of a rank (it inherited the env)
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())  # "cuda" without an index now means this process's GPU
    backend = os.environ.get("LOSSNET_DIST_BACKEND") or ("cpu:gloo,cuda:nccl" if cuda else "gloo")
    minutes = float(os.environ.get("LOSSNET_DIST_TIMEOUT_MIN", "60"))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=minutes))
    atexit.register(_destroy)
    return dist.get_world_size() > 1


def is_distributed() -> bool:
    """Whether this process is one of several (under torchrun, or in a group the caller initialised)."""
    return init()


def world_size() -> int:
    """Number of processes (1 without torchrun)."""
    return dist.get_world_size() if init() else 1


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return dist.get_rank() if init() else 0


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes results, checkpoints and reports)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (a no-op in a single process)."""
    if init():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[bool]:
    """Rank 0 runs the block first, the others after it (then typically find its result on disk).

    Use around idempotent, file-producing work (dataset generation, a cache written to a file)::

        with main_first():
            generate_collection(out)   # rank 0 generates; the others then see it is complete

    Yields :func:`is_main`. A failure on rank 0 ends the torchrun job (torchrun stops the others).
    """
    main = is_main()
    if not main:
        barrier()
    yield main
    if main:
        barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; for small objects and checkpoints)."""
    if not init():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=torch.device("cpu"))
    return box[0]


def all_reduce(values: Sequence[float], op: str = "sum") -> list[float]:
    """Element-wise ``sum`` or ``max`` of ``values`` over all ranks (float64, on the CPU)."""
    if not init():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t.tolist()


def broadcast_tensors(tensors, src: int = 0) -> None:
    """Overwrite ``tensors`` (in place, e.g. a module's buffers) with rank ``src``'s values."""
    if not init():
        return
    for t in tensors:
        dist.broadcast(t, src=src)


def shard(x: torch.Tensor, world: int | None = None, index: int | None = None) -> torch.Tensor:
    """This rank's contiguous share of ``x`` along dim 0 (``torch.tensor_split``: sizes differ by at most one)."""
    world = world_size() if world is None else world
    if world == 1:
        return x
    return torch.tensor_split(x, world)[rank() if index is None else index]


def all_gather_rows(part: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's :func:`shard` of an ``n``-row tensor (CPU tensors, same trailing shape/dtype).

    ``part`` is this rank's rows (``shard(range(n))``); the result is the full ``n``-row tensor on
    every rank, in rank order.
    """
    world = world_size()
    if world == 1:
        return part
    sizes = [len(s) for s in torch.tensor_split(torch.arange(n), world)]
    width = max(sizes)
    padded = part.new_zeros((width, *part.shape[1:]))
    padded[:len(part)] = part
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)  # equal-sized tensors (gloo on the CPU)
    return torch.cat([c[:s] for c, s in zip(chunks, sizes)])



# --------------------------------------------------------------------------------------------
# Processes sharing the CPU: never more busy threads than free cores
# --------------------------------------------------------------------------------------------


def _usable_cores() -> int:
    """Cores this process may run on: CPU affinity, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def free_cores(busy_own: float = 0.0) -> int:
    """Usable cores not busy with other work: usable cores minus the 1-minute load average (less
    ``busy_own``, the load this program itself accounts for); at least 1."""
    cores = _usable_cores()
    try:
        load = max(0.0, os.getloadavg()[0] - busy_own)
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(cores, cores - int(load + 0.5)))


def cpu_share(processes: int = 1, cores: int | None = None) -> int:
    """Torch threads for each of ``processes`` processes that work at once on this machine's CPU:
    ``cores`` (default :func:`free_cores`) divided by ``processes``, at least 1. Local sweep workers
    (``jobs=N``) and CPU benchmarks use it so that N processes never run more busy threads than
    there are free cores (oversubscribed OpenMP threads spin and slow every process down)."""
    free = free_cores() if cores is None else int(cores)
    return max(1, free // max(1, int(processes)))


@contextmanager
def sharing_env(threads: int, processes: int) -> Iterator[None]:
    """Environment for child processes started inside: ``OMP_NUM_THREADS=threads`` and, when
    several processes share the CPU, ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead
    of spinning: one I-I-PS epoch beside another 2-thread process took 8.5 s active vs 4.5 s passive,
    issue 23). Values the user set are kept; the old environment is restored on exit."""
    want = {"OMP_NUM_THREADS": str(max(1, int(threads)))}
    if processes > 1:
        want["OMP_WAIT_POLICY"] = "PASSIVE"
    old = {k: os.environ.get(k) for k in want}
    for k, v in want.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
