"""The runtime of one :func:`~lossnet.train.engine.fit`: the device, the processes, precision
(autocast and a ``GradScaler(enabled=...)``), memory format and compilation -- everything about
*where* and *how* a step runs, so that ``fit`` only says *what* happens in an epoch."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .. import distributed
from ..errors import ConfigError
from ..utils import best_device, log

DATA_ON_DEVICE_FRACTION = 0.25
"""Training data move to a CUDA device once when all of it takes at most this share of the device's
free memory (:meth:`Runtime.place`, :func:`~lossnet.train.cache.compute_features`)."""


def fits_on_device(nbytes: int, device: str | torch.device) -> bool:
    """Whether ``nbytes`` of data may live on ``device``: a CUDA device with at least
    ``nbytes / DATA_ON_DEVICE_FRACTION`` bytes free; never the CPU or another device type."""
    device = torch.device(device)
    return device.type == "cuda" and nbytes <= DATA_ON_DEVICE_FRACTION * torch.cuda.mem_get_info(device)[0]


PRECISIONS = ("32", "bf16", "16-mixed")
"""``FitConfig.precision``: ``32`` float32; ``bf16`` autocast to bfloat16 (CPU and CUDA);
``16-mixed`` autocast to float16 with a gradient scaler (CUDA only)."""



class Frozen:
    """A frozen network (e.g. a loss network) used by a task but not part of its state.

    Assigned as a task attribute it is neither registered as a submodule nor checkpointed (a
    frozen VGG-16 would otherwise be written to ``last.pt`` every epoch), and on every call it
    follows its input to the input's device (the engine moves only the task).
    """

    def __init__(self, net: nn.Module) -> None:
        self.net = net.requires_grad_(False).eval()

    def __call__(self, x: torch.Tensor):
        from ..utils import module_device

        if module_device(self.net) != x.device:
            self.net.to(x.device)
        return self.net(x)



@dataclass
class Runtime:
    """Where and how the steps of one fit run.

    ``device``: the training device; ``world``: processes under torchrun (1 otherwise);
    ``precision``: one of :data:`PRECISIONS`; ``scaler``: a ``torch.amp.GradScaler``, enabled only
    for ``16-mixed`` (a disabled scaler passes the loss and the step through unchanged).
    """

    device: torch.device
    world: int
    precision: str
    channels_last: bool
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, cfg) -> "Runtime":
        """The runtime of a :class:`~lossnet.train.engine.FitConfig` (precision checked on its device)."""
        device = best_device(cfg.device)
        check_precision(cfg.precision, device)
        return cls(device, distributed.world_size(), cfg.precision, cfg.channels_last,
                   torch.amp.GradScaler("cuda", enabled=cfg.precision == "16-mixed"))

    def prepare(self, task: nn.Module) -> nn.Module:
        """``task`` on the device (SyncBatchNorm under torchrun on CUDA; channels_last when set)."""
        task.to(self.device)
        task = _sync_batchnorm(task, self.device)
        if self.channels_last:
            to_memory_format(task, torch.channels_last)
        return task

    def autocast(self):
        return autocast(self.precision, self.device)

    def place(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``data`` moved to a CUDA device once when all of it takes at most
        :data:`DATA_ON_DEVICE_FRACTION` of the device's free memory: batches are then gathered
        there, with no per-step host-to-device copy (a copy from pageable memory waits for the
        queued steps, which keeps a small model's GPU idle between steps). Unchanged on the CPU
        or when it does not fit; the values, batches and their order are the same either way."""
        if self.device.type != "cuda" or all(v.is_cuda for v in data.values()):
            return data
        if not fits_on_device(sum(v.nelement() * v.element_size() for v in data.values()), self.device):
            return data
        return {k: v.to(self.device) for k, v in data.items()}

    def batch(self, data: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return _batch(data, idx, self.device, self.channels_last)

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """One optimizer step on ``loss`` (backward through the scaler when it is enabled)."""
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()

    def reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """``values`` reduced across processes (unchanged in one process)."""
        return list(values) if self.world == 1 else distributed.all_reduce(list(values), op=op)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def fork_rng(self):
        """A context in which the global RNGs (CPU, and this CUDA device) may be reseeded without
        changing the caller's streams."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])


def _batch(data: dict[str, torch.Tensor], idx: torch.Tensor, device: torch.device,
           channels_last: bool = False) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in data.items():
        b = v[idx].to(device, non_blocking=True)
        if b.dtype == torch.uint8:
            b = b.float().div_(255)
        elif b.is_floating_point() and b.dtype != torch.float32:
            b = b.float()
        if channels_last and b.ndim == 4 and b.is_floating_point():
            b = b.contiguous(memory_format=torch.channels_last)
        out[k] = b
    return out



def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`ConfigError` unless ``precision`` is one of :data:`PRECISIONS` usable on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "16-mixed" and device.type != "cuda":
        raise ConfigError(f"precision=16-mixed (float16 with a gradient scaler) needs CUDA, the device is {device}; "
                          "use precision=bf16 or precision=32 on the CPU")


def autocast(precision: str, device: torch.device):
    """The autocast context of ``precision`` on ``device`` (a no-op for ``32``)."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def to_memory_format(task: nn.Module, fmt: torch.memory_format) -> None:
    """Convert ``task``'s 4-D parameters and buffers, and those of the :class:`Frozen` networks
    it holds (e.g. the loss network of a perceptual loss), to ``fmt``."""
    task.to(memory_format=fmt)
    for m in task.modules():
        for v in vars(m).values():
            if isinstance(v, Frozen):
                v.net.to(memory_format=fmt)


def compiled(fn: Callable, enabled: bool = True) -> Callable:
    """``torch.compile(fn)``, or ``fn`` itself when compiling is off or fails: an unavailable
    ``torch.compile`` or a failure at the first call (no C++ compiler, unsupported Python ...)
    logs one line on stderr and continues without compiling."""
    if not enabled:
        return fn
    try:
        comp = torch.compile(fn)
    except Exception as e:  # noqa: BLE001 - any failure: train uncompiled
        log(f"compile=true: torch.compile is unavailable ({type(e).__name__}: {e}); training without compiling")
        return fn
    state = {"fn": comp, "tried": False}

    def call(*args, **kwargs):
        if state["tried"]:
            return state["fn"](*args, **kwargs)
        try:
            out = comp(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - an error of fn itself is raised again by the eager call
            log(f"compile=true: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "training without compiling")
            state["fn"] = fn
            out = fn(*args, **kwargs)
        state["tried"] = True
        return out

    return call



@torch.no_grad()
def evaluate(task: nn.Module, data: dict[str, torch.Tensor], idx: torch.Tensor, batch_size: int,
             device: torch.device, *, precision: str = "32", channels_last: bool = False,
             loss_fn: Callable | None = None) -> float:
    """Mean of ``task.loss`` (or ``loss_fn``) over ``idx`` in eval mode under ``precision``'s
    autocast, weighted by batch size."""
    task.eval()
    loss_fn = loss_fn or task.loss
    idx = idx.to(data_device(data))
    total, n = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device: no sync per batch
    for i in range(0, len(idx), batch_size):
        b = idx[i:i + batch_size]
        with autocast(precision, device):
            loss = loss_fn(_batch(data, b, device, channels_last))
        total += loss.detach().double() * len(b)
        n += len(b)
    return float(total) / max(n, 1)


def data_device(data: dict[str, torch.Tensor]) -> torch.device:
    """Where batch indices go: the one device holding every tensor of ``data`` (no index copy per
    batch), else the CPU (CPU indices index tensors on any device; a CUDA index cannot index a
    CPU tensor)."""
    devices = {v.device for v in data.values()}
    return devices.pop() if len(devices) == 1 else torch.device("cpu")


class _LossForward(nn.Module):
    """``forward(batch) = task.loss(batch)``: what ``DistributedDataParallel`` wraps (tasks expose
    ``loss``, and DDP synchronises gradients of what its ``forward`` computed)."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.loss(batch)


def _data_parallel(task: nn.Module, device: torch.device) -> Callable[[dict], torch.Tensor]:
    """The training-loss function: ``task.loss`` in one process; under torchrun the DDP-wrapped
    task (gradients averaged across ranks; rank 0's parameters and buffers broadcast at the start)."""
    if distributed.world_size() == 1:
        return task.loss
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(_LossForward(task), device_ids=[device.index] if device.type == "cuda" else None)


def _sync_batchnorm(task: nn.Module, device: torch.device) -> nn.Module:
    """Under torchrun on CUDA: BatchNorm layers replaced in place by ``nn.SyncBatchNorm`` (batch
    statistics over the global batch). On the CPU SyncBatchNorm is unsupported: each rank
    normalises with its own shard's statistics and keeps rank 0's running statistics."""
    if distributed.world_size() > 1 and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(task)  # same Parameter objects, same state keys
    return task


