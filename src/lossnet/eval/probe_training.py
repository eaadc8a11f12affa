"""How a probe grid is trained: input checks and standardisation, the fused network that trains
every probe of a grid in one pass, the per-probe best-epoch bookkeeping (see
:mod:`lossnet.eval.probes` for the protocol and why the fused training equals training each probe
alone)."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lossnet.eval.metrics import accuracy, position_error
from lossnet.eval.probe_specs import (
    ACTIVATIONS, TASKS, FittedProbe, GridResult, ProbeMLP, ProbeResult, ProbeSpec, activation, make_grid)


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


# --------------------------------------------------------------------------------------------
# Losses and the shared training loop
# --------------------------------------------------------------------------------------------


def _per_probe_loss(out: torch.Tensor, y: torch.Tensor, task: str, softmax: torch.Tensor | None = None,
                    loss: str = "cross_entropy") -> torch.Tensor:
    """Mean loss per probe, ``(P,)``, on each probe's *outputs*.

    ``out (P, T, B)``: pre-softmax outputs of ``P`` probes for a batch of ``B`` samples (batch
    last); ``softmax (P,)`` bool: probes whose output layer is a softmax over the ``T`` outputs
    (paper A: "the output layer either lacked activation function or used Softmax") -- their
    outputs are ``softmax(out)``, and the loss is computed on those. ``y``: (standardised)
    targets ``(B, T)`` for regression (MSE over batch and target dims) or labels ``(B,)``:
    ``loss="cross_entropy"`` -- cross-entropy of the outputs taken as class scores (logits for
    plain probes; probabilities for softmax probes), ``loss="mse"`` -- MSE between the outputs
    and the one-hot targets (the authors' code)."""
    if softmax is not None and bool(softmax.any()):
        out = torch.where(softmax.view(-1, 1, 1), torch.softmax(out, dim=1), out)
    if task == "regression":
        return (out - y.t()).square().mean(dim=(1, 2))
    if loss == "mse":
        onehot = torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype).t()  # (T, B)
        return (out - onehot).square().mean(dim=(1, 2))
    logp = torch.log_softmax(out, dim=1)
    idx = y.view(1, 1, -1).expand(out.shape[0], 1, -1)
    return -logp.gather(1, idx).mean(dim=(1, 2))


class _Trainable(nn.Module):
    """Interface used by :func:`_train`: ``forward(x (B, D)) -> (P, T, B)`` pre-softmax outputs,
    ``snapshot(improved (P,))`` keeps best-epoch parameters, ``export()`` -> ProbeMLPs."""

    n_probes: int
    softmax: torch.Tensor  # (P,) bool, the model's probe order: softmax output layer

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
        dev = next(probe.parameters()).device
        self.register_buffer("softmax", torch.tensor([probe.spec.output == "softmax"], device=dev),
                             persistent=False)
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


_act = activation


class _FusedGrid(_Trainable):
    """All probes of a grid as one network, batch-last ("column") layout.

    Probe order ("fused order"): probes grouped by (hidden shape, activation) -- ReLU groups,
    then sigmoid, then LeakyReLU groups (``ACTIVATIONS`` order), each in order of first appearance
    -- then the linear probes.

    * Stage 0: every probe's first layer stacked row-wise, ``w0 (C, D)`` (``nn.Linear`` layout),
      so ``z0 = addmm(b0, w0, x.T)`` is one ``(C, B)`` matmul; its rows are [ReLU probes |
      sigmoid probes | LeakyReLU probes | linear probes' outputs], one activation call per present
      activation, split
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
        self.register_buffer("softmax", torch.tensor([specs[i].output == "softmax" for i in self.order],
                                                     device=dev), persistent=False)
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
        sections = [(rows[a], a) for a in ACTIVATIONS] + [(len(self.linear_members) * out_dim, None)]
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
def _eval_loss(model: _Trainable, x: torch.Tensor, y: torch.Tensor, task: str,
               loss: str = "cross_entropy") -> torch.Tensor:
    """Mean loss per probe over a whole split, ``(P,)``, in chunks bounded in memory."""
    chunk = max(256, (1 << 22) // max(1, model.n_probes * 64))
    total = None
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        l = _per_probe_loss(model(xb), yb, task, model.softmax, loss) * xb.shape[0]
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
            loss = _per_probe_loss(model(xs[i : i + batch_size]), ys[i : i + batch_size], prep.task,
                                   model.softmax, prep.loss)
            model.zero_grad_()
            loss.sum().backward()
            model.after_backward()
            opt.step()
        val = _eval_loss(model, prep.x_val, prep.y_val, prep.task, prep.loss)
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


