"""Paper B's "simple CNN" baseline (thesis Part II, Table 2): the image encoder of Fig. 3
followed by an MLP with a single hidden layer of 256 neurons, trained end to end on the labels.

The thesis gives only the architecture; what it leaves open is configurable in
``configs/paper_b.yaml`` (``baseline:``) and chosen as the probes are trained: the loss is the
probe grid's (regression: MSE on standardised lander positions; classification: MSE against
one-hot targets, the authors' code, or cross-entropy), Adam, the best validation epoch kept.
"""

from __future__ import annotations

import torch
from torch import nn

from lossnet.models.autoencoder import ImageEncoder
from lossnet.utils import batched

__all__ = ["SimpleCNN", "SimpleCNNTask"]


class SimpleCNN(nn.Module):
    """Images (N, 3, S, S) in [0, 1] -> outputs (N, T): :class:`ImageEncoder` (z units, the
    encoder's ``mu``) -> Linear(z, hidden) -> ReLU -> Linear(hidden, T)."""

    def __init__(self, out_dim: int, z: int = 64, size: int = 64, hidden: int = 256) -> None:
        super().__init__()
        if out_dim < 1 or z < 1 or hidden < 1:
            raise ValueError(f"out_dim, z and hidden must be >= 1, got {out_dim}, {z}, {hidden}")
        self.encoder = ImageEncoder(z, size)
        self.head = nn.Sequential(nn.Linear(z, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        self.out_dim, self.z, self.size, self.hidden = out_dim, z, size, hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[0])


class SimpleCNNTask(nn.Module):
    """:func:`lossnet.train.engine.fit` task: batch ``{"image": (B, 3, S, S) in [0, 1],
    "target": (B, T) standardised float or (B,) int64 labels}``.

    ``loss``: ``"regression"`` MSE; ``"mse"`` MSE between outputs and one-hot labels;
    ``"cross_entropy"``. ``y_mean``/``y_std`` (T,) map outputs back to target units
    (:meth:`predict`)."""

    def __init__(self, model: SimpleCNN, loss: str, y_mean: torch.Tensor | None = None,
                 y_std: torch.Tensor | None = None) -> None:
        super().__init__()
        if loss not in ("regression", "mse", "cross_entropy"):
            raise ValueError(f"loss must be regression, mse or cross_entropy, got {loss!r}")
        self.model, self.kind = model, loss
        t = model.out_dim
        self.register_buffer("y_mean", torch.zeros(t) if y_mean is None else y_mean.float().clone())
        self.register_buffer("y_std", torch.ones(t) if y_std is None else y_std.float().clone())

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(batch["image"])
        y = batch["target"]
        if self.kind == "regression":
            return (out - y).square().mean()
        if self.kind == "mse":
            return (out - nn.functional.one_hot(y.long(), out.shape[1]).to(out.dtype)).square().mean()
        return nn.functional.cross_entropy(out, y.long())

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """uint8 or [0, 1] float images (N, 3, S, S) -> predictions (N, T) in target units
        (regression) or class scores (classification), on the CPU."""
        self.eval()
        def predict(x: torch.Tensor) -> torch.Tensor:
            out = self.model(x)
            return out * self.y_std + self.y_mean if self.kind == "regression" else out

        return batched(predict, images, batch_size, next(self.parameters()).device)
