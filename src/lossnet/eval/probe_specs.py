"""Probe specifications and results: the MLP shapes of each grid (:data:`GRIDS`), the probe
modules, and what a fitted grid returns. Training: :mod:`lossnet.eval.probe_training`; the public
entry points and the protocol: :mod:`lossnet.eval.probes`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch
from torch import nn

__all__ = ["ACTIVATIONS", "GRIDS", "LEAKY_SLOPE", "OUTPUTS", "TASKS", "FittedProbe", "GridResult", "ProbeMLP", "ProbeResult", "ProbeSpec",
           "activation", "make_grid"]

ACTIVATIONS = ("relu", "sigmoid", "leaky_relu")
"""Hidden-layer activations; ``leaky_relu`` is ``nn.LeakyReLU()`` (slope :data:`LEAKY_SLOPE`), the
authors' code's probe activation (guspih/Perceptual-Autoencoders ``experiment.py``)."""
LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative_slope, as the authors' code uses it
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
        activation: ``"relu"``, ``"sigmoid"`` or ``"leaky_relu"`` (slope 0.01) after each hidden
            layer (ignored, and normalised to ``"relu"``, for linear probes).
        output: ``"plain"`` (raw outputs / logits) or ``"softmax"`` (a softmax over the outputs
            as output layer; trained with the task's loss on the softmax outputs).
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
                layers.append({"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}[spec.activation]())
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


def activation(t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` through the hidden-layer activation ``name`` (one of :data:`ACTIVATIONS`)."""
    if name == "relu":
        return torch.relu(t)
    if name == "leaky_relu":
        return torch.nn.functional.leaky_relu(t, LEAKY_SLOPE)
    return torch.sigmoid(t)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def _paper_a() -> list[ProbeSpec]:
    sizes = (32, 64, 128)
    shapes = [(h,) for h in sizes] + [(h1, h2) for h1 in sizes for h2 in sizes if h2 <= h1]
    return [
        ProbeSpec(shape, act, out)
        for shape, act, out in product(shapes, ("relu", "sigmoid"), OUTPUTS)
    ]


PAPER_B_SHAPES = [(), (32,), (64,), (32, 32), (64, 32), (64, 64), (128, 128)]

GRIDS: dict[str, list[ProbeSpec]] = {
    "paper_b": [ProbeSpec(h) for h in PAPER_B_SHAPES],
    "paper_b_leaky": [ProbeSpec(h, "leaky_relu") for h in PAPER_B_SHAPES],
    "paper_a": _paper_a(),
    "linear": [ProbeSpec(())],
}
"""Named probe grids. ``paper_b``: the 7 MLPs of paper B / the thesis with ReLU;
``paper_b_leaky``: the same with LeakyReLU (slope 0.01), as the authors' code trains them
(``experiment.py``: ``hidden_functions = [nn.LeakyReLU]``), the ``scale=paper`` grid of paper B and
benchmark 4. ``paper_a`` holds all 36 combinations including
softmax outputs (for every task, as in the paper); ``make_grid(..., softmax=False)`` gives the 18
plain ones."""


def make_grid(name: str, task: str | None = None, softmax: bool = True) -> list[ProbeSpec]:
    """The probe specs of grid ``name`` (a copy); ``softmax=False`` drops softmax-output specs.
    ``task`` is only checked (the grids are the same for every task, as in paper A)."""
    if name not in GRIDS:
        raise ValueError(f"unknown probe grid {name!r}; known grids: {sorted(GRIDS)}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    specs = list(GRIDS[name])
    if not softmax:
        specs = [s for s in specs if s.output == "plain"]
    return specs


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """One probe of a grid. ``best_epoch`` is 1-based; ``best_val_loss`` is the training
    objective on the validation split (regression: MSE of the (standardised) targets;
    classification: cross-entropy or MSE vs one-hot, on the probe's outputs); ``test_metric`` is position error (target units) or accuracy. A probe whose
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


