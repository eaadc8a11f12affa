"""Probe-grid inputs: checks of embeddings and targets, the train/validation split, standardisation
and the probes' seeds (everything :mod:`lossnet.eval.probe_training` trains from)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from lossnet.eval.probe_specs import TASKS, ProbeSpec, make_grid


@dataclass
class _Prepared:
    task: str
    specs: list[ProbeSpec]
    device: torch.device
    in_dim: int
    out_dim: int
    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test_raw: torch.Tensor
    y_test: torch.Tensor
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: torch.Tensor | None
    y_std: torch.Tensor | None
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    loss: str = "cross_entropy"


LOSSES = ("cross_entropy", "mse")
"""Classification losses of a probe grid (``classification_loss``): ``cross_entropy`` of the
probe's outputs (logits; probabilities for softmax probes) or ``mse`` between the outputs and the
one-hot targets (the authors' code, guspih/Perceptual-Autoencoders ``experiment.py``)."""


def _to_tensor(a, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: cannot convert {type(a).__name__} to a tensor") from exc


def _is_int(t: torch.Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _check_x(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{what} must be embeddings of shape (N, D), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ValueError(f"{what} contains NaN or Inf values (in {bad} of {x.shape[0]} rows)")
    return x.float()


def _check_y(y: torch.Tensor, n: int, task: str, what: str, xwhat: str) -> torch.Tensor:
    if y.shape[0:1] != (n,):
        raise ValueError(
            f"{what} has {y.shape[0] if y.ndim else 'no'} rows but {xwhat} has {n} "
            f"({what} shape {tuple(y.shape)})"
        )
    if task == "regression":
        if not y.is_floating_point():
            raise ValueError(
                f"{what}: regression targets must be floating point (N, T), got dtype {y.dtype}; "
                "cast to float, or use task='classification' for integer class labels"
            )
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ValueError(f"{what}: regression targets must be (N, T), got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"{what} contains NaN or Inf values")
        return y.float()
    if not _is_int(y):
        raise ValueError(
            f"{what}: classification targets must be integer class labels (int64), got dtype "
            f"{y.dtype}; use task='regression' for float targets"
        )
    if y.ndim != 1:
        raise ValueError(f"{what}: classification targets must be 1-D (N,), got {tuple(y.shape)}")
    if bool((y < 0).any()):
        raise ValueError(f"{what}: class labels must be >= 0")
    return y.long()


def _resolve_specs(grid, task: str) -> list[ProbeSpec]:
    if isinstance(grid, str):
        specs = make_grid(grid, task=task)
    elif isinstance(grid, ProbeSpec):
        specs = [grid]
    else:
        try:
            specs = list(grid)
        except TypeError:
            raise ValueError(f"grid must be a grid name or ProbeSpecs, got {grid!r}") from None
        if not specs or not all(isinstance(s, ProbeSpec) for s in specs):
            raise ValueError("grid must be a grid name or a non-empty sequence of ProbeSpec")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate probe specs in grid: {names}")
    return specs


def _prepare(
    train_x, train_y, test_x, test_y, *, task, grid, epochs, batch_size, lr, val_fraction, seed,
    device, standardize, num_classes, standardize_targets=None, classification_loss="cross_entropy",
) -> _Prepared:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if classification_loss not in LOSSES:
        raise ValueError(f"classification_loss must be one of {LOSSES}, got {classification_loss!r}")
    for name, flag in (("standardize", standardize), ("standardize_targets", standardize_targets)):
        if flag is not None and not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if standardize_targets is None:
        standardize_targets = standardize
    specs = _resolve_specs(grid, task)
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not (lr > 0):
        raise ValueError(f"lr must be > 0, got {lr}")
    if not (0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")

    if device is None:
        device = train_x.device if isinstance(train_x, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)

    x = _check_x(_to_tensor(train_x, "train_x"), "train_x")
    xt = _check_x(_to_tensor(test_x, "test_x"), "test_x")
    if xt.shape[1] != x.shape[1]:
        raise ValueError(
            f"test_x has {xt.shape[1]} features but train_x has {x.shape[1]}"
        )
    y = _check_y(_to_tensor(train_y, "train_y"), x.shape[0], task, "train_y", "train_x")
    yt = _check_y(_to_tensor(test_y, "test_y"), xt.shape[0], task, "test_y", "test_x")

    if task == "regression":
        if yt.shape[1] != y.shape[1]:
            raise ValueError(f"test_y has {yt.shape[1]} target dims but train_y has {y.shape[1]}")
        out_dim = y.shape[1]
    else:
        k = int(max(int(y.max()), int(yt.max()))) + 1
        if num_classes is not None:
            if k > int(num_classes):
                raise ValueError(f"labels go up to {k - 1} but num_classes={num_classes}")
            k = int(num_classes)
        if k < 2:
            raise ValueError("classification needs at least 2 classes")
        out_dim = k

    n = x.shape[0]
    n_val = int(round(n * val_fraction))
    n_val = min(max(n_val, 1), n - 1)
    if n < 2:
        raise ValueError(f"need at least 2 probe-training samples for a train/val split, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values

    x = x.to(device)
    xt = xt.to(device)
    y = y.to(device)
    yt = yt.to(device)
    tr, va = train_idx.to(device), val_idx.to(device)
    x_tr, x_val, y_tr, y_val = x[tr], x[va], y[tr], y[va]

    d = x.shape[1]
    if standardize:
        x_mean = x_tr.mean(0)
        x_std = x_tr.std(0, unbiased=False)
        x_std = torch.where(x_std > 1e-8, x_std, torch.ones_like(x_std))
    else:
        x_mean = torch.zeros(d, device=device)
        x_std = torch.ones(d, device=device)
    x_tr = (x_tr - x_mean) / x_std
    x_val = (x_val - x_mean) / x_std

    y_mean = y_std = None
    if task == "regression":
        if standardize_targets:
            y_mean = y_tr.mean(0)
            y_std = y_tr.std(0, unbiased=False)
            y_std = torch.where(y_std > 1e-8, y_std, torch.ones_like(y_std))
        else:
            y_mean = torch.zeros(out_dim, device=device)
            y_std = torch.ones(out_dim, device=device)
        y_tr = (y_tr - y_mean) / y_std
        y_val = (y_val - y_mean) / y_std

    return _Prepared(
        task=task, specs=specs, device=device, in_dim=d, out_dim=out_dim,
        x_tr=x_tr.contiguous(), y_tr=y_tr.contiguous(), x_val=x_val.contiguous(),
        y_val=y_val.contiguous(), x_test_raw=xt, y_test=yt, x_mean=x_mean, x_std=x_std,
        y_mean=y_mean, y_std=y_std, train_idx=train_idx, val_idx=val_idx,
        loss="mse" if task == "regression" else classification_loss,
    )


def _probe_seed(seed: int, spec: ProbeSpec) -> int:
    """Init seed of a probe: depends only on the run seed and the spec, so a probe is initialised
    identically whether trained alone or inside any grid."""
    return zlib.crc32(f"{int(seed)}|{spec.name}".encode())


def _batch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 7919 + 104729)
