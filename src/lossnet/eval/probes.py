"""Downstream probes: grids of small MLPs trained on frozen embeddings, all at once.

An encoder is judged by how well small MLPs ("probes") trained on its frozen embeddings predict a
target: the LunarLander lander position (regression, 2 outputs, pixels) or an STL-10 / SVHN class
(classification, 10 outputs). Protocol (papers A and B, thesis):

* the probe-training data is split 80/20 into train/validation with a seeded random permutation;
* every probe of a grid is trained with Adam for ``epochs`` epochs (500 in the papers) and its
  parameters from the epoch with the lowest validation loss are kept (in memory);
* among the grid, the probe with the lowest validation loss is evaluated on the test set: mean
  Euclidean position error (target units, pixels) for regression, accuracy for classification.

Grids (:data:`GRIDS`, :func:`make_grid`):

* ``"paper_b"`` -- 7 ReLU MLPs with hidden layers ``[]``, ``[32]``, ``[64]``, ``[32, 32]``,
  ``[64, 32]``, ``[64, 64]``, ``[128, 128]`` (thesis, "For each trained autoencoder 7 predictor
  MLPs").
* ``"paper_a"`` -- 1 or 2 hidden layers of 32/64/128 units, second layer not larger than the first
  (9 shapes), ReLU or sigmoid, plain or softmax output: 36 probes. Softmax output is only
  meaningful for classification, so for ``task="regression"`` the grid is the 18 plain-output
  probes (``make_grid("paper_a", task="regression")``; ``fit_probe_grid`` does this itself).
* ``"linear"`` -- one linear layer.

Losses. Regression: MSE on targets standardised with the train-split mean/std (reported metrics
are in the original units). Classification: cross-entropy. A ``softmax``-output probe outputs
probabilities; it is trained with the negative log-likelihood of those probabilities, computed
stably as ``-log_softmax(logits)[y]`` -- mathematically the same loss as a plain probe's
cross-entropy on its logits, so softmax probes differ from plain ones only in their own random
initialisation and in returning probabilities (applying ``CrossEntropyLoss`` *on* probabilities,
a double softmax, would be a different and poorly scaled objective and would make validation
losses incomparable across the grid, so it is not done).

Efficiency. :func:`fit_probe_grid` trains all probes of a grid in one pass over the data: every
minibatch goes through a fused network in which the first layers of all probes are one wide
``(D, sum h1)`` matmul (the input is shared), deeper layers are batched matmuls over groups of
probes with the same hidden shape, and the probes' losses are summed before a single backward.
The probes share no parameters, so each probe's gradient is exactly the gradient of its own loss,
and Adam (element-wise) gives it the updates it would get if trained alone with the same
initialisation and batch order -- :func:`fit_probe_sequential` trains each probe separately
(the naive baseline) and reaches the same parameters up to float32 round-off.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from itertools import product
from typing import Sequence

import numpy as np
import torch
from torch import nn

from lossnet.eval.metrics import accuracy, position_error

__all__ = [
    "ProbeSpec",
    "ProbeMLP",
    "FittedProbe",
    "ProbeResult",
    "GridResult",
    "GRIDS",
    "make_grid",
    "fit_probe_grid",
    "fit_probe_sequential",
]

ACTIVATIONS = ("relu", "sigmoid")
OUTPUTS = ("plain", "softmax")
TASKS = ("regression", "classification")


# --------------------------------------------------------------------------------------------
# Specs and modules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSpec:
    """One probe architecture.

    Args:
        hidden: hidden layer widths, e.g. ``(64, 32)``; ``()`` is a linear probe.
        activation: ``"relu"`` or ``"sigmoid"`` after each hidden layer (ignored, and normalised
            to ``"relu"``, for linear probes).
        output: ``"plain"`` (raw outputs / logits) or ``"softmax"`` (class probabilities;
            classification only).
    """

    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    output: str = "plain"

    def __post_init__(self) -> None:
        hidden = tuple(self.hidden)
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
                raise ValueError(f"ProbeSpec.hidden must be positive ints, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"ProbeSpec.activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        if self.output not in OUTPUTS:
            raise ValueError(f"ProbeSpec.output must be one of {OUTPUTS}, got {self.output!r}")
        if not hidden:
            object.__setattr__(self, "activation", "relu")

    @property
    def name(self) -> str:
        """Readable unique name, e.g. ``"linear"``, ``"mlp[64,32]-relu"``,
        ``"mlp[128]-sigmoid-softmax"``."""
        if self.hidden:
            base = "mlp[" + ",".join(map(str, self.hidden)) + "]-" + self.activation
        else:
            base = "linear"
        return base + ("-softmax" if self.output == "softmax" else "")

    @property
    def depth(self) -> int:
        """Number of linear layers."""
        return len(self.hidden) + 1

    def build(self, in_dim: int, out_dim: int, *, seed: int | None = None) -> "ProbeMLP":
        """A fresh :class:`ProbeMLP`; ``seed`` makes its initialisation deterministic."""
        return ProbeMLP(self, in_dim, out_dim, seed=seed)


class ProbeMLP(nn.Module):
    """MLP probe ``(B, D) -> (B, T)`` built from a :class:`ProbeSpec`.

    ``net`` is ``Sequential(Linear, act, ..., Linear)``; :meth:`forward` applies a softmax on top
    for ``output="softmax"``. :meth:`logits` returns the pre-softmax outputs (the raw outputs for
    plain probes). Linear layers use PyTorch's default ``nn.Linear`` init distribution
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases, drawn from a generator seeded
    with ``seed`` when given.
    """

    def __init__(self, spec: ProbeSpec, in_dim: int, out_dim: int, *, seed: int | None = None):
        super().__init__()
        self.spec = spec
        dims = [int(in_dim), *spec.hidden, int(out_dim)]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.ReLU() if spec.activation == "relu" else nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
            with torch.no_grad():
                for lin in self.linears():
                    bound = 1.0 / math.sqrt(lin.in_features)
                    lin.weight.uniform_(-bound, bound, generator=gen)
                    lin.bias.uniform_(-bound, bound, generator=gen)

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return torch.softmax(z, dim=-1) if self.spec.output == "softmax" else z


class FittedProbe(nn.Module):
    """A trained probe with its standardisation: raw embeddings ``(N, D)`` -> predictions.

    Regression: positions ``(N, T)`` in the original target units (pixels). Classification:
    class scores ``(N, K)`` (logits for plain probes, probabilities for softmax probes).
    """

    def __init__(self, probe: ProbeMLP, x_mean, x_std, y_mean=None, y_std=None):
        super().__init__()
        self.probe = probe
        self.register_buffer("x_mean", x_mean.detach().clone())
        self.register_buffer("x_std", x_std.detach().clone())
        self.regression = y_mean is not None
        if self.regression:
            self.register_buffer("y_mean", y_mean.detach().clone())
            self.register_buffer("y_std", y_std.detach().clone())

    @property
    def spec(self) -> ProbeSpec:
        return self.probe.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.probe((x - self.x_mean) / self.x_std)
        if self.regression:
            out = out * self.y_std + self.y_mean
        return out


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def _paper_a() -> list[ProbeSpec]:
    sizes = (32, 64, 128)
    shapes = [(h,) for h in sizes] + [(h1, h2) for h1 in sizes for h2 in sizes if h2 <= h1]
    return [
        ProbeSpec(shape, act, out)
        for shape, act, out in product(shapes, ACTIVATIONS, OUTPUTS)
    ]


GRIDS: dict[str, list[ProbeSpec]] = {
    "paper_b": [
        ProbeSpec(h)
        for h in [(), (32,), (64,), (32, 32), (64, 32), (64, 64), (128, 128)]
    ],
    "paper_a": _paper_a(),
    "linear": [ProbeSpec(())],
}
"""Named probe grids (see module docstring). ``paper_a`` holds all 36 combinations including
softmax outputs; use :func:`make_grid` with ``task="regression"`` for the 18 plain ones."""


def make_grid(name: str, task: str | None = None) -> list[ProbeSpec]:
    """The probe specs of grid ``name`` (a copy). With ``task="regression"`` softmax-output specs
    are dropped (softmax outputs are meaningless for position regression)."""
    if name not in GRIDS:
        raise ValueError(f"unknown probe grid {name!r}; known grids: {sorted(GRIDS)}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    specs = list(GRIDS[name])
    if task == "regression":
        specs = [s for s in specs if s.output == "plain"]
    return specs


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """One probe of a grid. ``best_epoch`` is 1-based; ``best_val_loss`` is the training
    objective on the validation split (regression: MSE of standardised targets; classification:
    cross-entropy); ``test_metric`` is position error (target units) or accuracy. A probe whose
    validation loss never became finite keeps its initial parameters and ``best_epoch == 0``."""

    name: str
    spec: ProbeSpec
    best_epoch: int
    best_val_loss: float
    test_metric: float


@dataclass
class GridResult:
    """Outcome of :func:`fit_probe_grid` / :func:`fit_probe_sequential`.

    Attributes:
        task: ``"regression"`` or ``"classification"``.
        metric: ``"position_error"`` (lower is better, target units) or ``"accuracy"``.
        rows: one :class:`ProbeResult` per probe, in grid order.
        selected: the row with the lowest validation loss (first one on ties).
        selected_probe: that probe with its standardisation, ready for raw embeddings.
        test_predictions: the selected probe's test outputs: ``(N_test, T)`` positions in target
            units, or ``(N_test, K)`` class scores.
        history: validation loss per probe and epoch, ``(P, epochs)``, grid order.
        states: best-epoch ``ProbeMLP`` state dict of every probe, by name (these probes expect
            standardised embeddings and, for regression, predict standardised targets).
        train_idx, val_idx: the 80/20 split of the probe-training data (indices into it).
        train_seconds: wall time of the training loop(s).
    """

    task: str
    metric: str
    rows: list[ProbeResult]
    selected: ProbeResult
    selected_probe: FittedProbe
    test_predictions: torch.Tensor
    history: torch.Tensor
    states: dict[str, dict[str, torch.Tensor]] = field(repr=False)
    train_idx: torch.Tensor = field(repr=False)
    val_idx: torch.Tensor = field(repr=False)
    train_seconds: float = 0.0

    @property
    def selected_name(self) -> str:
        return self.selected.name

    @property
    def test_metric(self) -> float:
        """The selected probe's test metric."""
        return self.selected.test_metric

    def table(self) -> str:
        """Plain-text table of all probes; the selected one is marked with ``*``."""
        w = max(len(r.name) for r in self.rows)
        lines = [f"  {'probe':<{w}}  best_epoch  val_loss    test_{self.metric}"]
        for r in self.rows:
            mark = "*" if r.name == self.selected.name else " "
            lines.append(
                f"{mark} {r.name:<{w}}  {r.best_epoch:>10d}  {r.best_val_loss:<10.5f}  "
                f"{r.test_metric:.4f}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Data preparation and validation
# --------------------------------------------------------------------------------------------


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
    if task == "regression":
        soft = [s.name for s in specs if s.output == "softmax"]
        if soft:
            raise ValueError(f"softmax-output probes are for classification only: {soft}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate probe specs in grid: {names}")
    return specs


def _prepare(
    train_x, train_y, test_x, test_y, *, task, grid, epochs, batch_size, lr, val_fraction, seed,
    device, standardize, num_classes,
) -> _Prepared:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
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
        if standardize:
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
    )


def _probe_seed(seed: int, spec: ProbeSpec) -> int:
    """Init seed of a probe: depends only on the run seed and the spec, so a probe is initialised
    identically whether trained alone or inside any grid."""
    return zlib.crc32(f"{int(seed)}|{spec.name}".encode())


def _batch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 7919 + 104729)


# --------------------------------------------------------------------------------------------
# Losses and the shared training loop
# --------------------------------------------------------------------------------------------


def _per_probe_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss per probe, ``(P,)``.

    ``out (P, T, B)``: pre-softmax outputs of ``P`` probes for a batch of ``B`` samples (batch
    last); ``y``: standardised targets ``(B, T)`` (MSE over batch and target dims) or labels
    ``(B,)`` (cross-entropy = NLL of the softmax, also for softmax-output probes)."""
    if task == "regression":
        return (out - y.t()).square().mean(dim=(1, 2))
    logp = torch.log_softmax(out, dim=1)
    idx = y.view(1, 1, -1).expand(out.shape[0], 1, -1)
    return -logp.gather(1, idx).mean(dim=(1, 2))


class _Trainable(nn.Module):
    """Interface used by :func:`_train`: ``forward(x (B, D)) -> (P, T, B)`` pre-softmax outputs,
    ``snapshot(improved (P,))`` keeps best-epoch parameters, ``export()`` -> ProbeMLPs."""

    n_probes: int

    def optim_params(self) -> list[torch.Tensor]:
        return list(self.parameters())

    def zero_grad_(self) -> None:
        for p in self.parameters():
            p.grad = None

    def after_backward(self) -> None:
        pass

    def snapshot(self, improved: torch.Tensor) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def export(self) -> list[ProbeMLP]:  # pragma: no cover - interface
        raise NotImplementedError


class _Alone(_Trainable):
    """One plain ``ProbeMLP`` trained on its own (the naive baseline)."""

    def __init__(self, probe: ProbeMLP):
        super().__init__()
        self.probe = probe
        self.n_probes = 1
        self.best = {k: v.detach().clone() for k, v in probe.state_dict().items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe.logits(x).t().unsqueeze(0)

    @torch.no_grad()
    def snapshot(self, improved: torch.Tensor) -> None:
        if bool(improved[0]):
            for k, v in self.probe.state_dict().items():
                self.best[k].copy_(v)

    def export(self) -> list[ProbeMLP]:
        self.probe.load_state_dict(self.best)
        return [self.probe]


class _Group:
    """Probes with the same hidden-layer shape and activation (``members``: spec indices)."""

    def __init__(self, hidden: tuple[int, ...], activation: str, members: list[int]):
        self.hidden, self.activation, self.members = hidden, activation, members
        self.n = len(members)


def _act(t: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.relu(t) if activation == "relu" else torch.sigmoid(t)


class _FusedGrid(_Trainable):
    """All probes of a grid as one network, batch-last ("column") layout.

    Probe order ("fused order"): probes grouped by (hidden shape, activation) -- ReLU groups,
    then sigmoid groups, each in order of first appearance -- then the linear probes.

    * Stage 0: every probe's first layer stacked row-wise, ``w0 (C, D)`` (``nn.Linear`` layout),
      so ``z0 = addmm(b0, w0, x.T)`` is one ``(C, B)`` matmul; its rows are [ReLU probes |
      sigmoid probes | linear probes' outputs], so stage 0 needs two activation calls, and split
      into contiguous ``(G, h1, B)`` blocks per group.
    * Later layers of a group of ``G`` probes: ``w (G, out, in)``, ``b (G, out, 1)``, one
      ``baddbmm`` on ``(G, in, B)``.
    * All parameters are views into ONE flat buffer (and their gradients into one flat
      gradient buffer), so Adam is a single fused kernel per step. Adam is element-wise, so this
      changes nothing for any probe.
    """

    def __init__(self, probes: list[ProbeMLP], in_dim: int, out_dim: int):
        super().__init__()
        specs = [p.spec for p in probes]
        self.specs, self.n_probes = specs, len(probes)
        self.in_dim, self.out_dim = in_dim, out_dim
        by_shape: dict[tuple[tuple[int, ...], str], list[int]] = {}
        for act in ACTIVATIONS:
            for i, s in enumerate(specs):
                if s.hidden and s.activation == act:
                    by_shape.setdefault((s.hidden, act), []).append(i)
        self.groups = [_Group(h, act, idx) for (h, act), idx in by_shape.items()]
        self.linear_members = [i for i, s in enumerate(specs) if not s.hidden]
        self.order = [i for g in self.groups for i in g.members] + self.linear_members
        pos_of = {spec_i: pos for pos, spec_i in enumerate(self.order)}
        dev = probes[0].linears()[0].weight.device
        dtype = probes[0].linears()[0].weight.dtype

        # ---- parameter layout: (shape, [(fused pos, numel) per probe], source tensors)
        layout: list[tuple[tuple[int, ...], list[tuple[int, int]], list[torch.Tensor]]] = []
        first = [(i, probes[i].linears()[0]) for g in self.groups for i in g.members]
        first += [(i, probes[i].linears()[0]) for i in self.linear_members]
        c = sum(lin.out_features for _, lin in first)
        w0_owner = [(pos_of[i], lin.out_features * in_dim) for i, lin in first]
        b0_owner = [(pos_of[i], lin.out_features) for i, lin in first]
        layout.append(((c, in_dim), w0_owner, [lin.weight for _, lin in first]))
        layout.append(((c, 1), b0_owner, [lin.bias for _, lin in first]))
        self.group_param_ids: list[list[tuple[int, int]]] = []
        for g in self.groups:
            ids = []
            for layer in range(1, len(g.hidden) + 1):
                lins = [probes[i].linears()[layer] for i in g.members]
                o, k = lins[0].out_features, lins[0].in_features
                ow = [(pos_of[i], o * k) for i in g.members]
                ob = [(pos_of[i], o) for i in g.members]
                ids.append((len(layout), len(layout) + 1))
                layout.append(((g.n, o, k), ow, [lin.weight for lin in lins]))
                layout.append(((g.n, o, 1), ob, [lin.bias for lin in lins]))
            self.group_param_ids.append(ids)

        total = sum(math.prod(shape) for shape, _, _ in layout)
        flat = torch.empty(total, device=dev, dtype=dtype)
        self.flat = nn.Parameter(flat)
        self.flat.grad = torch.zeros_like(flat)
        owner = []
        self.views: list[nn.Parameter] = []
        self.offsets: list[tuple[int, int]] = []
        off = 0
        with torch.no_grad():
            for shape, own, srcs in layout:
                n = math.prod(shape)
                self.flat[off : off + n].copy_(torch.cat([s.detach().reshape(-1) for s in srcs]))
                # A leaf parameter sharing the flat buffer's storage, whose gradient lives in
                # the flat gradient buffer (autograd accumulates into an existing .grad in place).
                v = nn.Parameter(self.flat.data[off : off + n].view(shape))
                v.grad = self.flat.grad[off : off + n].view(shape)
                self.views.append(v)
                self.offsets.append((off, n))
                owner.extend(own)
                off += n
        # element of the flat buffer -> fused position of the probe owning it
        self.owner = torch.repeat_interleave(
            torch.tensor([pos for pos, _ in owner], dtype=torch.int32),
            torch.tensor([cnt for _, cnt in owner]),
        ).to(dev)
        self.best = self.flat.detach().clone()
        self.grad_ptrs = [v.grad.data_ptr() for v in self.views]

        self.group_rows = [g.n * g.hidden[0] for g in self.groups]
        rows = {a: sum(r for g, r in zip(self.groups, self.group_rows) if g.activation == a)
                for a in ACTIVATIONS}
        sections = [(rows["relu"], "relu"), (rows["sigmoid"], "sigmoid"),
                    (len(self.linear_members) * out_dim, None)]
        self.sections = [(n, a) for n, a in sections if n > 0]
        self.section_rows = {
            a: [r for g, r in zip(self.groups, self.group_rows) if g.activation == a]
            for a in ACTIVATIONS
        }

    def optim_params(self) -> list[torch.Tensor]:
        return [self.flat]

    def zero_grad_(self) -> None:
        self.flat.grad.zero_()  # keeps the views' .grad aliased to the flat buffer

    @torch.no_grad()
    def after_backward(self) -> None:
        """Guard: should autograd ever have replaced a view's ``.grad`` instead of accumulating
        into it, move that gradient into the flat buffer (and re-alias) before Adam runs."""
        for k, v in enumerate(self.views):
            if v.grad is None or v.grad.data_ptr() != self.grad_ptrs[k]:
                off, n = self.offsets[k]
                slot = self.flat.grad[off : off + n].view(v.shape)
                if v.grad is not None:
                    slot.copy_(v.grad)
                v.grad = slot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.views
        bsz = x.shape[0]
        z0 = torch.addmm(v[1], v[0], x.t())  # (C, B)
        parts = z0.split([n for n, _ in self.sections], dim=0) if len(self.sections) > 1 else [z0]
        pieces: list[torch.Tensor] = []  # activated first layer per group, in group order
        for z, (_, a) in zip(parts, self.sections):
            if a is not None:
                pieces.extend(_act(z, a).split(self.section_rows[a], dim=0))
        outs = []
        if self.groups:
            for g, piece, ids in zip(self.groups, pieces, self.group_param_ids):
                h = piece.view(g.n, g.hidden[0], bsz)
                last = len(ids) - 1
                for j, (iw, ib) in enumerate(ids):
                    h = torch.baddbmm(v[ib], v[iw], h)
                    if j < last:
                        h = _act(h, g.activation)
                outs.append(h)
        if self.linear_members:
            outs.append(parts[-1].view(len(self.linear_members), self.out_dim, bsz))
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)  # (P, T, B), fused order

    @torch.no_grad()
    def snapshot(self, improved: torch.Tensor) -> None:
        """Keep parameters of probes whose validation loss improved (``improved (P,)`` bool,
        fused order)."""
        if bool(improved.any()):
            self.best.copy_(torch.where(improved[self.owner], self.flat, self.best))

    @torch.no_grad()
    def export(self) -> list[ProbeMLP]:
        """Best-epoch parameters as one :class:`ProbeMLP` per probe, in spec (grid) order."""
        def view(k):
            off, n = self.offsets[k]
            return self.best[off : off + n].view(self.views[k].shape)

        w0, b0 = view(0), view(1)
        out: list[ProbeMLP | None] = [None] * self.n_probes
        row = 0
        for g, ids in zip(self.groups, self.group_param_ids):
            for gi, i in enumerate(g.members):
                m = ProbeMLP(self.specs[i], self.in_dim, self.out_dim, seed=0).to(w0.device)
                lins = m.linears()
                h1 = g.hidden[0]
                lins[0].weight.copy_(w0[row : row + h1])
                lins[0].bias.copy_(b0[row : row + h1, 0])
                row += h1
                for layer, (iw, ib) in enumerate(ids, start=1):
                    lins[layer].weight.copy_(view(iw)[gi])
                    lins[layer].bias.copy_(view(ib)[gi, :, 0])
                out[i] = m
        for i in self.linear_members:
            m = ProbeMLP(self.specs[i], self.in_dim, self.out_dim, seed=0).to(w0.device)
            lin = m.linears()[0]
            lin.weight.copy_(w0[row : row + self.out_dim])
            lin.bias.copy_(b0[row : row + self.out_dim, 0])
            row += self.out_dim
            out[i] = m
        return out  # type: ignore[return-value]


def _make_adam(params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    params = list(params)
    try:  # fused Adam: one kernel per parameter tensor; same element-wise maths
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - device without fused
        return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def _eval_loss(model: _Trainable, x: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss per probe over a whole split, ``(P,)``, in chunks bounded in memory."""
    chunk = max(256, (1 << 22) // max(1, model.n_probes * 64))
    total = None
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        l = _per_probe_loss(model(xb), yb, task) * xb.shape[0]
        total = l if total is None else total + l
    return total / x.shape[0]


def _train(model: _Trainable, prep: _Prepared, *, epochs, batch_size, lr, seed, bar=None):
    """Adam training with validation after every epoch. Returns ``(history (P, E), best_epoch
    (P,), best_val (P,))`` in the model's probe order; best parameters stay in the model."""
    opt = _make_adam(model.optim_params(), lr, prep.device)
    gen = _batch_generator(seed)
    n = prep.x_tr.shape[0]
    p = model.n_probes
    best = torch.full((p,), math.inf, device=prep.device)
    best_epoch = torch.zeros(p, dtype=torch.long, device=prep.device)
    history = torch.empty(p, epochs, device=prep.device)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=gen).to(prep.device)
        xs, ys = prep.x_tr[perm], prep.y_tr[perm]
        for i in range(0, n, batch_size):
            loss = _per_probe_loss(model(xs[i : i + batch_size]), ys[i : i + batch_size], prep.task)
            model.zero_grad_()
            loss.sum().backward()
            model.after_backward()
            opt.step()
        val = _eval_loss(model, prep.x_val, prep.y_val, prep.task)
        history[:, epoch - 1] = val
        improved = val < best
        best = torch.where(improved, val, best)
        best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)
        model.snapshot(improved)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best_val=f"{float(best.min()):.4g}")
    return history, best_epoch, best


def _finish(prep: _Prepared, probes, history, best_epoch, best_val, seconds) -> GridResult:
    """Test metrics for every probe, selection by validation loss, packaging."""
    rows, fitted = [], []
    regression = prep.task == "regression"
    for i, (spec, probe) in enumerate(zip(prep.specs, probes)):
        probe.eval()
        fp = FittedProbe(probe, prep.x_mean, prep.x_std, prep.y_mean, prep.y_std)
        with torch.no_grad():
            pred = fp(prep.x_test_raw)
        metric = position_error(pred, prep.y_test) if regression else accuracy(pred, prep.y_test)
        fitted.append((fp, pred))
        rows.append(
            ProbeResult(spec.name, spec, int(best_epoch[i]), float(best_val[i]), float(metric))
        )
    sel = min(range(len(rows)), key=lambda i: (rows[i].best_val_loss, i))
    fp, pred = fitted[sel]
    return GridResult(
        task=prep.task,
        metric="position_error" if regression else "accuracy",
        rows=rows,
        selected=rows[sel],
        selected_probe=fp.cpu(),
        test_predictions=pred.detach().cpu(),
        history=history.detach().cpu(),
        states={
            s.name: {k: v.detach().cpu().clone() for k, v in p.state_dict().items()}
            for s, p in zip(prep.specs, probes)
        },
        train_idx=prep.train_idx,
        val_idx=prep.val_idx,
        train_seconds=seconds,
    )


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def fit_probe_grid(
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    task: str,
    grid: str | Sequence[ProbeSpec] = "paper_b",
    epochs: int = 500,
    batch_size: int = 128,
    lr: float = 1e-3,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    standardize: bool = True,
    progress: bool = True,
    num_classes: int | None = None,
) -> GridResult:
    """Train every probe of a grid at once on frozen embeddings and evaluate the best one.

    Args:
        train_x: probe-training embeddings ``(N, D)``, float (used as float32), finite.
        train_y: regression targets ``(N, T)`` float (e.g. lander x/y in pixels; ``(N,)`` is
            read as ``T = 1``) or class labels ``(N,)`` int64 for classification.
        test_x, test_y: the test split, same layout.
        task: ``"regression"`` (MSE on standardised targets; metric: mean Euclidean position
            error in target units) or ``"classification"`` (cross-entropy; metric: accuracy).
        grid: a name in :data:`GRIDS` or a sequence of :class:`ProbeSpec`. For regression,
            named grids drop softmax-output probes.
        epochs: training epochs per probe (500 in the papers); the best validation epoch is kept.
        batch_size, lr: minibatch size and Adam learning rate.
        val_fraction: share of the probe-training data held out for validation (seeded random
            permutation with ``seed``).
        seed: drives the split, the batch order and every probe's initialisation (a probe's init
            depends only on ``seed`` and its spec).
        device: where to train; default: ``train_x``'s device (CPU for numpy input).
        standardize: standardise embeddings (and regression targets) with train-split statistics.
        progress: show a tqdm bar over epochs.
        num_classes: number of classes; default ``max(label) + 1``.

    Returns:
        :class:`GridResult` with per-probe rows, the selected probe (lowest validation loss),
        its test metric and test predictions.
    """
    prep = _prepare(
        train_x, train_y, test_x, test_y, task=task, grid=grid, epochs=epochs,
        batch_size=batch_size, lr=lr, val_fraction=val_fraction, seed=seed, device=device,
        standardize=standardize, num_classes=num_classes,
    )
    probes = [
        s.build(prep.in_dim, prep.out_dim, seed=_probe_seed(seed, s)).to(prep.device)
        for s in prep.specs
    ]
    fused = _FusedGrid(probes, prep.in_dim, prep.out_dim)
    bar = _progress_bar(epochs, f"probe grid ({len(probes)} probes)", progress)
    t0 = time.perf_counter()
    try:
        history, best_epoch, best_val = _train(
            fused, prep, epochs=int(epochs), batch_size=int(batch_size), lr=lr, seed=seed, bar=bar
        )
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    # fused order -> grid order
    inv = torch.empty(len(fused.order), dtype=torch.long, device=history.device)
    inv[torch.tensor(fused.order, device=history.device)] = torch.arange(
        len(fused.order), device=history.device
    )
    return _finish(
        prep, fused.export(), history[inv], best_epoch[inv], best_val[inv], seconds
    )


def fit_probe_sequential(
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    task: str,
    grid: str | Sequence[ProbeSpec] = "paper_b",
    epochs: int = 500,
    batch_size: int = 128,
    lr: float = 1e-3,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    standardize: bool = True,
    progress: bool = True,
    num_classes: int | None = None,
) -> GridResult:
    """Naive baseline with the same protocol as :func:`fit_probe_grid`: each probe is an
    ``nn.Sequential`` trained on its own, one after another (same split, batch order and
    initialisation, so results match the fused grid up to float round-off)."""
    prep = _prepare(
        train_x, train_y, test_x, test_y, task=task, grid=grid, epochs=epochs,
        batch_size=batch_size, lr=lr, val_fraction=val_fraction, seed=seed, device=device,
        standardize=standardize, num_classes=num_classes,
    )
    bar = _progress_bar(epochs * len(prep.specs), f"probes one by one ({len(prep.specs)})", progress)
    probes, hist, be, bv = [], [], [], []
    t0 = time.perf_counter()
    try:
        for spec in prep.specs:
            probe = spec.build(prep.in_dim, prep.out_dim, seed=_probe_seed(seed, spec))
            alone = _Alone(probe.to(prep.device))
            h, e, v = _train(
                alone, prep, epochs=int(epochs), batch_size=int(batch_size), lr=lr, seed=seed,
                bar=bar,
            )
            probes.extend(alone.export())
            hist.append(h)
            be.append(e)
            bv.append(v)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    return _finish(prep, probes, torch.cat(hist), torch.cat(be), torch.cat(bv), seconds)
