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
  ranks, only rank 0 writes the checkpoint (docs/scaling.md). In detail: every rank calls
  ``fit`` with the same arguments; each global batch of ``cfg.batch_size`` is split into N
  contiguous shares (gradients averaged by DDP, weighted by share size), a final batch with fewer
  samples than ranks is dropped, the history's losses and validation are reduced across ranks
  (``train_seconds``/``val_seconds``: the slowest rank), every rank ends with the same weights and
  result; to resume, rank 0 reads ``last.pt`` and broadcasts it to the others.
* optional fast paths (``precision``, ``channels_last``, ``compile``) and per-epoch logs
  (``history.csv``, TensorBoard, optional per-step losses; :mod:`lossnet.train.loggers`; epochs
  counted from 1); see docs/performance.md.

Batches are dicts of tensors sliced from ``data``; ``uint8`` tensors (images) are converted to
float in [0, 1] on the device, other floating tensors (cached features) to float32.
"""

from __future__ import annotations

import copy
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
from ..schema.fields import build, section_items
from ..utils import best_device, fault_point, save_torch, stable_hash
from .checkpoint import read_resumable as _read_checkpoint
from .runtime import (PRECISIONS, Frozen, Runtime, _data_parallel, compiled, data_device, evaluate,  # noqa: F401 (Frozen,
                      to_memory_format)  # PRECISIONS and evaluate are public here)
from .loggers import HistoryLogger, check_logger

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
        return stable_hash(d, compact=False)

    @classmethod
    def from_section(cls, section, *, options=None, **extra) -> "FitConfig":
        """The settings of a config ``section`` (``cfg.encoder``, ``cfg.train``, ``cfg.decoder`` ...: a
        mapping, DictConfig or schema dataclass) that FitConfig has, cast to FitConfig's types; its
        other keys are ignored and null values keep the defaults (:func:`lossnet.schema.build`).
        ``options``: a second section whose fast-path and logger keys (:data:`FIT_OPTIONS`) are
        used instead (paper A's decoder trains with the encoder's). ``extra`` (``seed``,
        ``device``, ``progress``, ``desc`` ...) wins."""
        values = section_items(section)
        if options is not None:
            values = {k: v for k, v in values.items() if k not in FIT_OPTIONS}
            values.update({k: v for k, v in section_items(options).items() if k in FIT_OPTIONS})
        return build(cls, values, **extra)


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



def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random (train, validation) split of ``range(n)``; validation gets round(n * fraction)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise ValueError(f"{n} samples are too few for a train/validation split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


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

    Under torchrun every rank calls ``fit`` with the same arguments (module docstring). The
    caller's global random streams are left as they were.
    """
    if cfg.deterministic:  # the same call inside lossnet.train.determinism.deterministic_mode
        from .determinism import deterministic_mode
        with deterministic_mode(cfg.seed, best_device(cfg.device)):
            return fit(task, data, replace(cfg, deterministic=False), ckpt_dir=ckpt_dir, on_epoch_end=on_epoch_end,
                       val_data=val_data, validate=validate, identity=identity)
    check_logger(cfg.logger)
    rt = Runtime.create(cfg)
    train_idx, val_set, val_idx = _split(data, val_data, validate, cfg, rt.world)
    # on CUDA when it fits (Runtime.place); a custom ``validate`` gets the CPU tensors, as documented
    placed = rt.place(data)
    val_placed = val_set if validate is not None else placed if val_set is data else rt.place(val_set)
    data = placed
    task = rt.prepare(task)
    st = _TrainState(task, _adam(task, cfg), rt.scaler)
    ckpt = Path(ckpt_dir) / "last.pt" if ckpt_dir is not None else None
    ident = checkpoint_identity(cfg, identity)
    st.resume(ckpt, ident, rt)
    # the training-loss function: task.loss, DDP-wrapped under torchrun, optionally compiled
    loss_fn = compiled(_data_parallel(task, rt.device), cfg.compile)
    eval_fn = compiled(task.loss, cfg.compile) if rt.world > 1 else loss_fn
    logger = HistoryLogger((cfg.log_dir if cfg.log_dir is not None else ckpt_dir) if distributed.is_main() else None,
                           cfg.logger, st.result.history)
    start = len(st.result.history)
    bar = tqdm(range(start, cfg.epochs), desc=cfg.desc, disable=not cfg.progress or not distributed.is_main(),
               leave=False, initial=start, total=cfg.epochs)
    with rt.fork_rng():  # the per-epoch seeds below leave the caller's random streams as they were
        for epoch in bar:
            if st.result.stopped_early:
                break
            row = _train_epoch(st, data, train_idx, epoch, cfg, rt, loss_fn, logger)
            t1 = time.perf_counter()
            val = _validation_score(task, val_placed, val_idx, cfg, rt.device, validate, eval_fn)
            row.update(val_loss=val, val_seconds=time.perf_counter() - t1)
            row["train_seconds"], row["val_seconds"] = rt.reduce([row["train_seconds"], row["val_seconds"]], "max")
            st.record(row, epoch, cfg.patience)
            bar.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{val:.4g}", best=st.result.best_epoch + 1)
            logger.log(row)  # before the checkpoint: a re-run epoch replaces its row (loggers module)
            fault_point("epoch")
            if ckpt is not None and distributed.is_main():  # one writer
                st.save(ckpt, cfg, ident)
            if on_epoch_end is not None:
                on_epoch_end(row["epoch"], row)
    logger.close()
    return st.finish(rt)


def _split(data, val_data, validate, cfg: FitConfig, world: int):
    """``(train indices, validation set, validation indices)``, the inputs checked."""
    n = _check_data(data)
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {cfg.epochs}, {cfg.batch_size}")
    if val_data is None:
        train_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
        val_set = data
    else:
        missing = set(data) - set(val_data)
        if missing and validate is None:  # task.loss runs on val_data; a custom score may need less
            raise ValueError(f"val_data lacks the keys {sorted(missing)} that data has")
        train_idx, val_set, val_idx = torch.arange(n), val_data, torch.arange(_check_data(val_data))
    if world > 1 and len(train_idx) < world:
        raise ValueError(f"{len(train_idx)} training samples are too few for {world} processes")
    return train_idx, val_set, val_idx


def _adam(task: nn.Module, cfg: FitConfig) -> torch.optim.Adam:
    """Adam over the trainable parameters; fused (one kernel for all parameters: 12x faster than
    foreach on the 19M-parameter feature decoder on CPU; the same update rule)."""
    params = [p for p in task.parameters() if p.requires_grad]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def _train_epoch(st: "_TrainState", data, train_idx: torch.Tensor, epoch: int, cfg: FitConfig, rt: Runtime,
                 loss_fn: Callable, logger: HistoryLogger) -> dict:
    """One pass over the training indices in a seeded order; the epoch's history row (1-based)."""
    st.task.train()
    # reparameterisation noise etc.; under torchrun each rank draws its own (rank 0: the 1-process stream)
    torch.manual_seed(cfg.seed * 100_003 + epoch + 1_000_003 * distributed.rank())
    order = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)  # the same on every rank
    perm = train_idx[torch.randperm(len(train_idx), generator=order)].to(data_device(data))
    t0 = time.perf_counter()
    total, seen = torch.zeros((), dtype=torch.float64, device=rt.device), 0  # summed on the device: no sync per step
    steps_per_epoch = -(-len(perm) // cfg.batch_size)
    for i in range(0, len(perm), cfg.batch_size):
        b = perm[i:i + cfg.batch_size]
        if rt.world > 1 and len(b) < rt.world:  # a last batch with fewer samples than ranks
            break
        mine = distributed.shard(b)
        with rt.autocast():
            loss = loss_fn(rt.batch(data, mine))
        # DDP averages the ranks' gradients; weighting by share size makes that the global batch's gradient
        rt.step(loss if rt.world == 1 else loss * (len(mine) * rt.world / len(b)), st.opt)
        total += loss.detach().double() * len(mine)
        seen += len(mine)
        step = epoch * steps_per_epoch + i // cfg.batch_size + 1  # 1-based optimizer step
        if cfg.log_every_n_steps and step % cfg.log_every_n_steps == 0:
            logger.log_step(step, epoch + 1, loss.float().item())
    rt.synchronize()
    train_seconds = time.perf_counter() - t0
    if rt.world > 1:
        distributed.broadcast_tensors(list(st.task.buffers()))  # rank 0's BatchNorm running statistics
    total, seen = rt.reduce([float(total), seen])
    return {"epoch": epoch + 1, "train_loss": total / seen, "train_seconds": train_seconds,
            "lr": st.opt.param_groups[0]["lr"]}


class _TrainState:
    """The stateful objects of one fit (task, optimizer, scaler, result, best weights), saved to
    and loaded from ``last.pt`` in one place."""

    def __init__(self, task: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self.task, self.opt, self.scaler = task, opt, scaler
        self.result = FitResult()
        self.best_state: dict | None = None

    def state_dict(self, cfg: FitConfig, ident: dict) -> dict:
        r = self.result
        return {"config": cfg.identity(), "identity": ident, "task": self.task.state_dict(),
                "optimizer": self.opt.state_dict(), "best_state": self.best_state, "history": r.history,
                "best_epoch": r.best_epoch, "best_val": r.best_val, "stopped_early": r.stopped_early,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}

    def load_state_dict(self, state: dict) -> None:
        self.task.load_state_dict(state["task"])
        self.opt.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_state = state["best_state"]
        r = self.result
        r.history, r.best_epoch, r.best_val = state["history"], state["best_epoch"], state["best_val"]
        r.stopped_early = state.get("stopped_early", False)
        r.resumed_from = len(r.history)

    def resume(self, ckpt: Path | None, ident: dict, rt: Runtime) -> None:
        """Load ``ckpt`` when it was written with the same settings (rank 0 reads, all ranks load)."""
        if rt.world == 1:
            state = _read_checkpoint(ckpt, ident, rt.device)
        else:
            state = distributed.broadcast_object(_read_checkpoint(ckpt, ident, "cpu") if distributed.is_main() else None)
        if state is not None:
            self.load_state_dict(state)

    def save(self, ckpt: Path, cfg: FitConfig, ident: dict) -> None:
        """Atomic; a full disk (however torch reports it) is one error naming the file, no partial file."""
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        save_torch(self.state_dict(cfg, ident), ckpt, point="checkpoint")

    def record(self, row: dict, epoch: int, patience: int | None) -> None:
        """Append the epoch's row; keep the best weights; stop early after ``patience`` epochs without improvement."""
        r = self.result
        r.history.append(row)
        if row["val_loss"] < r.best_val:
            r.best_val, r.best_epoch = row["val_loss"], epoch
            self.best_state = copy.deepcopy(self.task.state_dict())
        elif patience is not None and epoch - r.best_epoch >= patience:
            r.stopped_early = True

    def finish(self, rt: Runtime) -> FitResult:
        """The task holding the best epoch's weights, contiguous, in eval mode; the result."""
        if self.best_state is not None:
            self.task.load_state_dict(self.best_state)
        if rt.channels_last:
            to_memory_format(self.task, torch.contiguous_format)
        self.task.eval()
        return self.result
