"""Test metrics for downstream probes.

* :func:`position_error` -- mean Euclidean distance between predicted and true positions, in the
  targets' own units (pixels for the LunarLander lander position).
* :func:`accuracy` -- fraction of correctly classified samples, from class scores or labels.

Both accept ``torch.Tensor`` or anything ``numpy.asarray`` understands and return a Python float.
Shape problems raise :class:`ValueError` with the offending shapes in the message.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["position_error", "accuracy"]


def _as_tensor(a, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{what}: cannot convert {type(a).__name__} to a tensor") from exc


def position_error(pred, target) -> float:
    """Mean Euclidean distance between ``pred`` and ``target``.

    Args:
        pred: predicted positions, shape ``(N, T)`` (``T = 2`` for x/y pixels) or ``(N,)``.
        target: true positions, same shape as ``pred``.

    Returns:
        ``mean_i ||pred_i - target_i||_2`` in the targets' units (pixels for positions).
        For 1-D inputs this is the mean absolute error.
    """
    p = _as_tensor(pred, "pred")
    t = _as_tensor(target, "target")
    if p.ndim not in (1, 2) or t.ndim not in (1, 2):
        raise ValueError(
            f"position_error expects (N, T) or (N,) arrays, got pred {tuple(p.shape)} "
            f"and target {tuple(t.shape)}"
        )
    if p.shape != t.shape:
        raise ValueError(
            f"position_error: pred shape {tuple(p.shape)} != target shape {tuple(t.shape)}"
        )
    if p.shape[0] == 0:
        raise ValueError("position_error: empty inputs (N = 0)")
    if not p.is_floating_point():
        p = p.double()
    if not t.is_floating_point():
        t = t.double()
    dtype = torch.promote_types(p.dtype, t.dtype)
    diff = p.to(dtype) - t.to(device=p.device, dtype=dtype)
    if diff.ndim == 1:
        diff = diff[:, None]
    return float(torch.linalg.vector_norm(diff, dim=1).mean())


def accuracy(logits_or_labels, target) -> float:
    """Classification accuracy in ``[0, 1]``.

    Args:
        logits_or_labels: class scores ``(N, K)`` (logits or probabilities; argmax is taken) or
            predicted integer labels ``(N,)``.
        target: true integer labels, shape ``(N,)``.
    """
    p = _as_tensor(logits_or_labels, "logits_or_labels")
    t = _as_tensor(target, "target")
    if t.ndim != 1:
        raise ValueError(f"accuracy: target must be 1-D labels (N,), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"accuracy: target must hold integer labels, got dtype {t.dtype}")
    if p.ndim == 2:
        labels = p.argmax(dim=1)
    elif p.ndim == 1:
        if p.is_floating_point() or p.is_complex() or p.dtype == torch.bool:
            raise ValueError(
                "accuracy: 1-D predictions must be integer labels; pass class scores as (N, K)"
            )
        labels = p
    else:
        raise ValueError(
            f"accuracy: expected scores (N, K) or labels (N,), got shape {tuple(p.shape)}"
        )
    if labels.shape[0] != t.shape[0]:
        raise ValueError(
            f"accuracy: {labels.shape[0]} predictions but {t.shape[0]} targets "
            f"(pred shape {tuple(p.shape)}, target shape {tuple(t.shape)})"
        )
    if t.shape[0] == 0:
        raise ValueError("accuracy: empty inputs (N = 0)")
    return float((labels.to(t.device).long() == t.long()).double().mean())
