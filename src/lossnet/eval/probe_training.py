"""How a probe grid is trained: the fused network that trains every probe of a grid in one pass,
the per-probe best-epoch bookkeeping (see :mod:`lossnet.eval.probes` for the protocol and why the
fused training equals training each probe alone). Input checks and standardisation:
:mod:`lossnet.eval.probe_prep`."""

from __future__ import annotations

import math

import torch
from torch import nn

from lossnet.eval.metrics import accuracy, position_error
from lossnet.eval.probe_prep import LOSSES, _batch_generator, _prepare, _Prepared, _probe_seed  # noqa: F401 (re-exported)
from lossnet.eval.probe_specs import ACTIVATIONS, FittedProbe, GridResult, ProbeMLP, ProbeResult, activation


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


