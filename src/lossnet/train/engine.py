"""One training engine for every procedure and benchmark.

:func:`fit` trains a *task* (an ``nn.Module`` with a ``loss(batch) -> scalar`` method whose
trainable parameters are the ones to optimise) on in-memory tensors:

* a seeded 80/20 train/validation split, or a separate validation set (``val_data``);
* Adam (fused), minibatches drawn from a per-epoch seeded permutation (deterministic, resumable);
* a validation pass every epoch -- the mean ``task.loss``, or any score given by ``validate``
  (e.g. minus the PSNR of super-resolved images) -- the best-validation-epoch weights kept
  (optional patience);
* per-epoch wall time of the training pass recorded (validation timed separately);
* a checkpoint after every epoch (atomic), from which an interrupted run resumes;
* CUDA when present, a progress bar;
* data parallel under ``torchrun`` (:mod:`lossnet.distributed`, ``DistributedDataParallel``): every
  rank trains on its share of each global batch of ``cfg.batch_size`` (one 2-process run equals
  the 1-process run with the same global batch), losses and validation scores are reduced across
  ranks, only rank 0 writes the checkpoint (docs/scaling.md).
* optional fast paths (``precision``, ``channels_last``, ``compile``) and per-epoch logs
  (``history.csv``, TensorBoard, optional per-step losses; :mod:`lossnet.train.loggers`; epochs
  counted from 1); see docs/performance.md.

Batches are dicts of tensors sliced from ``data``; ``uint8`` tensors (images) are converted to
float in [0, 1] on the device, other floating tensors (cached features) to float32.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import distributed
from ..errors import ConfigError
from ..utils import best_device, fault_point, log, save_torch
from .checkpoint import read_resumable as _read_checkpoint
from .loggers import HistoryLogger, check_logger

PRECISIONS = ("32", "bf16", "16-mixed")
"""``FitConfig.precision``: ``32`` float32; ``bf16`` autocast to bfloat16 (CPU and CUDA);
``16-mixed`` autocast to float16 with a gradient scaler (CUDA only)."""

_NOT_IDENTITY = ("device", "progress", "desc", "channels_last", "compile", "logger", "log_dir", "deterministic",
                 "log_every_n_steps")


@dataclass
class FitConfig:
    """Training settings; everything that changes the result is part of the checkpoint's identity."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    val_fraction: float = 0.2
    patience: int | None = None  # stop after this many epochs without a better validation loss
    device: str | None = None  # None: CUDA when present
    progress: bool = True
    desc: str = "train"
    precision: str = "32"  # one of PRECISIONS: autocast of task.loss in training and evaluation
    channels_last: bool = False  # task, its Frozen loss networks and 4-D float batches in channels_last
    compile: bool = False  # torch.compile(task.loss); falls back to eager (one stderr line) when unavailable
    logger: str = "csv"  # csv | tensorboard (csv + TensorBoard events) | none; see lossnet.train.loggers
    log_dir: str | None = None  # None: ckpt_dir (no logs without either)
    deterministic: bool = False  # deterministic kernels + seeded RNGs: bit-identical reruns (lossnet.train.determinism)
    log_every_n_steps: int = 0  # > 0: also log every n-th optimizer step's training loss (steps.csv, step_loss)

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        self.precision = str(self.precision)
        n = self.log_every_n_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"log_every_n_steps must be an integer >= 0 (0: off), got {n!r}")

    def identity(self) -> str:
        """Hash of the settings that change the result: all but device, progress, desc, the
        memory format, compile and the loggers; ``precision`` only when not ``32`` (so float32
        checkpoints of earlier versions still resume)."""
        d = asdict(self)
        for k in _NOT_IDENTITY:
            d.pop(k)
        if d["precision"] == "32":
            d.pop("precision")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


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
class FitResult:
    """What :func:`fit` returns: the history (one dict per epoch; ``history[i]["epoch"] == i + 1``,
    epochs counted from 1 as in the logs and bars) and ``best_epoch``, the 0-based *index* into
    ``history`` of the best validation epoch (its epoch number is ``best_epoch + 1``)."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = float("inf")
    resumed_from: int = 0  # number of epochs loaded from a checkpoint
    stopped_early: bool = False

    @property
    def epoch_seconds(self) -> float:
        """Mean wall time of one training pass over the training split (seconds)."""
        ts = [h["train_seconds"] for h in self.history]
        return sum(ts) / len(ts) if ts else float("nan")

    @property
    def total_seconds(self) -> float:
        return sum(h["train_seconds"] + h["val_seconds"] for h in self.history)


def checkpoint_identity(cfg: FitConfig, identity: dict | None = None) -> dict:
    """What a checkpoint must match to be resumed: the fit settings (``fit``, the hash of
    :meth:`FitConfig.identity`) plus the caller's ``identity`` entries (JSON-normalised)."""
    extra = json.loads(json.dumps(identity or {}, sort_keys=True, default=str))
    if "fit" in extra:
        raise ValueError("identity key 'fit' is reserved for the fit settings")
    return {"fit": cfg.identity(), **extra}


FIT_OPTIONS = ("precision", "channels_last", "compile", "logger", "deterministic")
"""The fast-path and logger keys that training sections of the YAML configs may set."""


def fit_options(section) -> dict:
    """``precision``, ``channels_last``, ``compile``, ``logger``, ``deterministic`` of a config section (a mapping
    such as ``cfg.encoder`` or ``cfg.train``) as :class:`FitConfig` keyword arguments; keys that
    are absent or null keep FitConfig's defaults."""
    if section is None:
        return {}
    out = {}
    for k in FIT_OPTIONS:
        v = section.get(k)
        if v is not None:
            out[k] = str(v) if k in ("precision", "logger") else bool(v)
    return out


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random (train, validation) split of ``range(n)``; validation gets round(n * fraction)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise ValueError(f"{n} samples are too few for a train/validation split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


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
    total, n = 0.0, 0
    for i in range(0, len(idx), batch_size):
        b = idx[i:i + batch_size]
        with autocast(precision, device):
            loss = loss_fn(_batch(data, b, device, channels_last))
        total += loss.float().item() * len(b)
        n += len(b)
    return total / max(n, 1)


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


def _validation_score(task: nn.Module, val_set: dict[str, torch.Tensor], val_idx: torch.Tensor, cfg: FitConfig,
                      device: torch.device, validate, loss_fn: Callable | None = None) -> float:
    """The epoch's validation score (lower is better). Under torchrun each rank scores its share
    of the validation set and the scores are averaged weighted by share size, so every rank sees
    the same value (exact for the mean ``task.loss``; for a custom ``validate`` exact when it is a
    mean over samples, such as the mean PSNR of images)."""
    idx = distributed.shard(val_idx)
    if len(idx) == 0:  # fewer validation samples than ranks
        val = 0.0
    elif validate is None:
        val = evaluate(task, val_set, idx, cfg.batch_size * 2, device, precision=cfg.precision,
                       channels_last=cfg.channels_last, loss_fn=loss_fn)
    else:
        task.eval()
        with torch.no_grad():
            val = float(validate(task, {k: v[idx] for k, v in val_set.items()}, device))
    if distributed.world_size() > 1:
        total, n = distributed.all_reduce([val * len(idx), len(idx)])
        val = total / n
    return val


def _check_data(data: dict[str, torch.Tensor]) -> int:
    if not data:
        raise ValueError("data is empty")
    sizes = {k: len(v) for k, v in data.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all data tensors need the same length, got {sizes}")
    return next(iter(sizes.values()))


def fit(task: nn.Module, data: dict[str, torch.Tensor], cfg: FitConfig, *, ckpt_dir: str | os.PathLike | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None, val_data: dict[str, torch.Tensor] | None = None,
        validate: Callable[[nn.Module, dict[str, torch.Tensor], torch.device], float] | None = None,
        identity: dict | None = None) -> FitResult:
    """Train ``task`` on ``data`` and leave it holding the best-validation-epoch weights.

    Args:
        task: ``nn.Module`` with ``loss(batch: dict[str, Tensor]) -> Tensor``.
        data: equal-length tensors, e.g. ``{"image": uint8 (N, 3, H, W), "feat": (N, C, H, W)}``.
        cfg: :class:`FitConfig`.
        ckpt_dir: keep ``last.pt`` here after every epoch and resume from it when it exists and
            was written with the same config; ``None`` disables checkpoints.
        on_epoch_end: called with (epoch, history row) after each epoch's checkpoint (epoch 1-based,
            as in the logs).
        val_data: a separate validation set (the keys of ``data``, or those ``validate`` reads);
            then all of ``data`` trains and ``cfg.val_fraction`` is unused.
        validate: ``(task, validation data, device) -> float``, lower is better, called in eval
            mode under ``torch.no_grad`` instead of the mean ``task.loss`` (the validation data
            are the held-out slice of ``data``, or ``val_data``, as tensors on the CPU); it runs
            without autocast (its score is comparable across precisions).
        identity: everything else that changes the result, JSON-able (data digest, procedure, loss
            network, model settings ...); callers extend it. The checkpoint stores it with the fit
            settings, and a checkpoint written with other settings is not resumed: training starts
            fresh and one line on stderr names the keys that changed.

    Under ``torchrun --nproc-per-node N`` every rank calls ``fit`` with the same arguments: each
    global batch of ``cfg.batch_size`` is split into N contiguous shares (gradients averaged by
    DDP, weighted by share size), a final batch with fewer samples than ranks is dropped, the
    history's losses and validation are reduced across ranks (``train_seconds``/``val_seconds``:
    the slowest rank), every rank ends with the same weights and result, and only rank 0 writes
    ``last.pt``; to resume, rank 0 reads it and broadcasts it to the others.
    """
    if cfg.deterministic:  # the same call inside lossnet.train.determinism.deterministic_mode
        from .determinism import deterministic_mode
        with deterministic_mode(cfg.seed, best_device(cfg.device)):
            return fit(task, data, replace(cfg, deterministic=False), ckpt_dir=ckpt_dir, on_epoch_end=on_epoch_end,
                       val_data=val_data, validate=validate, identity=identity)
    n = _check_data(data)
    if val_data is not None:
        _check_data(val_data)
        missing = set(data) - set(val_data)
        if missing and validate is None:  # task.loss runs on val_data; a custom score may need less
            raise ValueError(f"val_data lacks the keys {sorted(missing)} that data has")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {cfg.epochs}, {cfg.batch_size}")
    device = best_device(cfg.device)
    check_precision(cfg.precision, device)
    check_logger(cfg.logger)
    task.to(device)
    world = distributed.world_size()
    task = _sync_batchnorm(task, device)
    if cfg.channels_last:
        to_memory_format(task, torch.channels_last)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "16-mixed" else None
    if val_data is None:
        train_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
        val_set = data
    else:
        train_idx, val_set = torch.arange(n), val_data
        val_idx = torch.arange(_check_data(val_data))
    if world > 1 and len(train_idx) < world:
        raise ValueError(f"{len(train_idx)} training samples are too few for {world} processes")
    params = [p for p in task.parameters() if p.requires_grad]
    # fused Adam: one kernel for all parameters (12x faster than foreach on the 19M-parameter
    # feature decoder on CPU); same update rule
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    result = FitResult()
    best_state = None
    start = 0
    ckpt = Path(ckpt_dir) / "last.pt" if ckpt_dir is not None else None
    ident = checkpoint_identity(cfg, identity)
    if world == 1:
        state = _read_checkpoint(ckpt, ident, device)
    else:  # rank 0 reads (and logs), every rank resumes from the same state
        state = distributed.broadcast_object(_read_checkpoint(ckpt, ident, "cpu") if distributed.is_main() else None)
    if state is not None:
        task.load_state_dict(state["task"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        best_state = state["best_state"]
        result.history = state["history"]
        result.best_epoch, result.best_val = state["best_epoch"], state["best_val"]
        result.stopped_early = state.get("stopped_early", False)
        start = result.resumed_from = len(result.history)
    # the training-loss function: task.loss, DDP-wrapped under torchrun, optionally compiled
    loss_fn = compiled(_data_parallel(task, device), cfg.compile)
    eval_fn = compiled(task.loss, cfg.compile) if world > 1 else loss_fn
    log_dir = cfg.log_dir if cfg.log_dir is not None else ckpt_dir
    logger = HistoryLogger(log_dir if distributed.is_main() else None, cfg.logger, result.history)
    bar = tqdm(range(start, cfg.epochs), desc=cfg.desc, disable=not cfg.progress or not distributed.is_main(),
               leave=False, initial=start, total=cfg.epochs)
    for epoch in bar:
        if result.stopped_early:
            break
        task.train()
        # reparameterisation noise etc.; under torchrun each rank draws its own (rank 0: the 1-process stream)
        torch.manual_seed(cfg.seed * 100_003 + epoch + 1_000_003 * distributed.rank())
        perm = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))]
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        steps_per_epoch = -(-len(perm) // cfg.batch_size)
        for i in range(0, len(perm), cfg.batch_size):
            b = perm[i:i + cfg.batch_size]
            if world > 1 and len(b) < world:  # a last batch with fewer samples than ranks
                break
            mine = distributed.shard(b)
            with autocast(cfg.precision, device):
                loss = loss_fn(_batch(data, mine, device, cfg.channels_last))
            opt.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients; weighting by share size makes that the global batch's gradient
            scaled = loss if world == 1 else loss * (len(mine) * world / len(b))
            if scaler is None:
                scaled.backward()
                opt.step()
            else:
                scaler.scale(scaled).backward()
                scaler.step(opt)
                scaler.update()
            total += loss.float().item() * len(mine)
            seen += len(mine)
            step = epoch * steps_per_epoch + i // cfg.batch_size + 1  # 1-based optimizer step
            if cfg.log_every_n_steps and step % cfg.log_every_n_steps == 0:
                logger.log_step(step, epoch + 1, loss.float().item())
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        if world > 1:
            distributed.broadcast_tensors(list(task.buffers()))  # rank 0's BatchNorm running statistics
            total, seen = distributed.all_reduce([total, seen])
        t1 = time.perf_counter()
        val = _validation_score(task, val_set, val_idx, cfg, device, validate, eval_fn)
        val_seconds = time.perf_counter() - t1
        if world > 1:
            train_seconds, val_seconds = distributed.all_reduce([train_seconds, val_seconds], op="max")
        row = {"epoch": epoch + 1, "train_loss": total / seen, "val_loss": val,
               "train_seconds": train_seconds, "val_seconds": val_seconds, "lr": opt.param_groups[0]["lr"]}
        result.history.append(row)
        if val < result.best_val:
            result.best_val, result.best_epoch = val, epoch
            best_state = copy.deepcopy(task.state_dict())
        elif cfg.patience is not None and epoch - result.best_epoch >= cfg.patience:
            result.stopped_early = True
        bar.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{val:.4g}", best=result.best_epoch + 1)
        logger.log(row)  # before the checkpoint: a re-run epoch replaces its row (loggers module)
        fault_point("epoch")
        if ckpt is not None and distributed.is_main():  # one writer
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            # atomic; a full disk (however torch reports it) is one error naming the file, no partial file
            save_torch({"config": cfg.identity(), "identity": ident, "task": task.state_dict(),
                        "optimizer": opt.state_dict(), "best_state": best_state, "history": result.history,
                        "best_epoch": result.best_epoch, "best_val": result.best_val,
                        "stopped_early": result.stopped_early,
                        "scaler": scaler.state_dict() if scaler is not None else None}, ckpt, point="checkpoint")
        if on_epoch_end is not None:
            on_epoch_end(row["epoch"], row)
    logger.close()
    if best_state is not None:
        task.load_state_dict(best_state)
    if cfg.channels_last:
        to_memory_format(task, torch.contiguous_format)
    task.eval()
    return result
