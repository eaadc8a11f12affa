"""Benchmark 3's training task (:mod:`lossnet.benchmarks.delineation`): the iterative U-Net's loss
``sum_k w_k (BCE(p_k, y) + mu * L_top(p_k, y))`` (Mosinska et al., Eq. 4-5), prediction and the
per-iteration scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lossnet.utils import batched

ITERATION_WEIGHTS = ("linear", "uniform", "last")


def iteration_weights(kind: str, iterations: int) -> list[float]:
    """Normalised weights of the iterations' losses: ``linear`` k / sum k (Mosinska et al.),
    ``uniform`` 1 / K, ``last`` (0, ..., 0, 1)."""
    if kind == "linear":
        z = iterations * (iterations + 1) / 2
        return [k / z for k in range(1, iterations + 1)]
    if kind == "uniform":
        return [1.0 / iterations] * iterations
    if kind == "last":
        return [0.0] * (iterations - 1) + [1.0]
    raise ValueError(f"iteration_weights must be one of {', '.join(ITERATION_WEIGHTS)}, got {kind!r}")


class DelineationTask(nn.Module):
    """The training task of :func:`~lossnet.train.engine.fit`: ``loss(batch)`` with ``batch =
    {"image": (N, 3, H, W) in [0, 1], "mask": (N, 1, H, W) in {0, 1}}`` is
    ``sum_k w_k (BCE(p_k, y) + mu * L_top(p_k, y))`` over the iterations' probability maps ``p_k``.

    The loss network is held as :class:`~lossnet.train.engine.Frozen` (not checkpointed; it
    follows the batch's device). ``loss_net=None``: BCE only. A batch may carry ``feat``, the loss
    network's features of the mask computed once (:func:`~lossnet.runs.encoder_cells.
    with_target_features`); otherwise they are computed per batch.
    """

    def __init__(self, model, loss_net=None, mu: float = 0.01, iteration_weighting: str = "linear") -> None:
        super().__init__()
        from lossnet.train.engine import Frozen

        self.model = model
        self.loss_net = Frozen(loss_net) if loss_net is not None else None
        self.mu = float(mu)
        self.iteration_weights = iteration_weights(iteration_weighting, model.iterations)  # one per iteration

    def terms(self, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Per-iteration BCE and (unweighted) L_top (None without a loss network); iterations
        with weight 0 get a zero L_top (not computed)."""
        from lossnet.losses import feature_reconstruction_loss

        x, y = batch["image"], batch["mask"]
        logits = self.model(x)
        bce = [F.binary_cross_entropy_with_logits(lg, y) for lg in logits]
        net = self.loss_net
        if net is None:
            return bce, None
        n = len(x)
        if "feat" in batch:
            ft = [batch["feat"]]
        else:
            with torch.no_grad():
                ft = net(y.expand(-1, 3, -1, -1))
        used = [k for k, w in enumerate(self.iteration_weights) if w > 0]
        probs = torch.cat([torch.sigmoid(logits[k]) for k in used]).expand(-1, 3, -1, -1)
        fp = net(probs)
        top = [x.new_zeros(()) for _ in logits]
        for j, k in enumerate(used):
            top[k] = feature_reconstruction_loss([f[j * n:(j + 1) * n] for f in fp], ft)
        return bce, top

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        bce, top = self.terms(batch)
        per = bce if top is None else [b + self.mu * t for b, t in zip(bce, top)]
        return sum(w * lk for w, lk in zip(self.iteration_weights, per))


def _float_batch(data: dict[str, torch.Tensor], sl, device) -> dict[str, torch.Tensor]:
    return {k: v[sl].to(device).float().div_(255) for k, v in data.items()}


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int = 16, device=None) -> list[torch.Tensor]:
    """Probability maps of every iteration, each (N, 1, H, W) float on the CPU, for uint8 images."""
    device = device or next(model.parameters()).device
    model.eval()
    return batched(lambda x: [torch.sigmoid(lg) for lg in model(x)], images, batch_size, device)


def evaluate_iterations(model, images: torch.Tensor, masks: torch.Tensor, *, tolerance: float = 3,
                        threshold: float = 0.5, batch_size: int = 16, device=None) -> list[dict]:
    """:func:`~lossnet.eval.delineation.delineation_scores` of every iteration on uint8 images
    and {0, 255} masks (corpus-level scores, per-image means, counts)."""
    from lossnet.eval.delineation import DelineationMeter

    meters = None
    for i in range(0, len(images), batch_size):
        probs = predict(model, images[i:i + batch_size], batch_size, device)
        if meters is None:
            meters = [DelineationMeter(tolerance, threshold) for _ in probs]
        for m, p in zip(meters, probs):
            m.update(p, masks[i:i + batch_size] > 127)
    return [m.compute() for m in meters]


@torch.no_grad()
def loss_magnitudes(task: DelineationTask, data: dict[str, torch.Tensor], n: int = 16) -> dict | None:
    """Mean L_bce, L_top and mu * L_top over the iterations on the first ``n`` items of ``data``
    (uint8 ``image``/``mask``), in eval mode; None without a loss network."""
    if task.loss_net is None:
        return None
    device = next(task.model.parameters()).device
    was = task.training
    task.eval()
    bce, top = task.terms(_float_batch({"image": data["image"], "mask": data["mask"]}, slice(0, n), device))
    task.train(was)
    b, t = [float(v) for v in bce], [float(v) for v in top]
    return {"bce": b[-1], "top": t[-1], "mu_top": task.mu * t[-1], "ratio_mu_top_to_bce": task.mu * t[-1] / b[-1],
            "bce_per_iteration": b, "top_per_iteration": t}
