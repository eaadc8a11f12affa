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
* ``"paper_b_leaky"`` -- the same 7 MLPs with LeakyReLU (slope 0.01) hidden layers, as the
  authors' code (guspih/Perceptual-Autoencoders ``experiment.py``) trains them; the ``scale=paper``
  grid of paper B and benchmark 4.
* ``"paper_a"`` -- 1 or 2 hidden layers of 32/64/128 units, second layer not larger than the first
  (9 shapes), ReLU or sigmoid, plain or softmax output: 36 probes for every task (the paper uses
  one grid for all datasets; ``make_grid("paper_a", task="regression", softmax=False)`` gives
  the 18 plain-output ones).
* ``"linear"`` -- one linear layer.

Losses (on each probe's *outputs*). A ``softmax``-output probe applies a softmax over its
outputs as its output layer (paper A: "the output layer either lacked activation function or used
Softmax") and is trained with the same loss on those outputs as a plain probe on its raw outputs:

* regression: MSE between the outputs and the targets (standardised with the train-split
  mean/std when ``standardize_targets``; reported metrics are in the original units). A softmax
  probe's outputs are positive and sum to 1, so it fits positions poorly; paper A's grid has it for
  every dataset, and the selection by validation loss then simply passes it over;
* classification, ``classification_loss="mse"`` (the authors' code, papers A and B presets): MSE
  between the outputs (logits, or probabilities for softmax probes) and the one-hot targets;
* classification, ``classification_loss="cross_entropy"`` (the default of :func:`fit_probe_grid`):
  cross-entropy of the outputs taken as class scores -- logits for plain probes, the
  probabilities for softmax probes (a bounded, flatter objective: a softmax probe's loss cannot
  go below ``-log(e / (e + K - 1))``).

Every probe of a grid uses one loss, so the validation losses the selection compares are on one
scale for a given task/loss (a softmax probe's loss is simply worse when its output layer does not
fit the task).

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

import time
from typing import Sequence

import torch

from lossnet.eval.probe_specs import (  # noqa: F401 (the public names live here)
    ACTIVATIONS,
    GRIDS,
    OUTPUTS,
    TASKS,
    FittedProbe,
    GridResult,
    ProbeMLP,
    ProbeResult,
    ProbeSpec,
    make_grid,
)
from lossnet.eval.probe_training import _Alone, _finish, _FusedGrid, _prepare, _probe_seed, _progress_bar, _train

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
    standardize_targets: bool | None = None,
    classification_loss: str = "cross_entropy",
) -> GridResult:
    """Train every probe of a grid at once on frozen embeddings and evaluate the best one.

    Args:
        train_x: probe-training embeddings ``(N, D)``, float (used as float32), finite.
        train_y: regression targets ``(N, T)`` float (e.g. lander x/y in pixels; ``(N,)`` is
            read as ``T = 1``) or class labels ``(N,)`` int64 for classification.
        test_x, test_y: the test split, same layout.
        task: ``"regression"`` (MSE on the (standardised) targets; metric: mean Euclidean
            position error in target units) or ``"classification"`` (``classification_loss``;
            metric: accuracy).
        grid: a name in :data:`GRIDS` or a sequence of :class:`ProbeSpec`.
        epochs: training epochs per probe (500 in the papers); the best validation epoch is kept.
        batch_size, lr: minibatch size and Adam learning rate.
        val_fraction: share of the probe-training data held out for validation (seeded random
            permutation with ``seed``).
        seed: drives the split, the batch order and every probe's initialisation (a probe's init
            depends only on ``seed`` and its spec).
        device: where to train; default: ``train_x``'s device (CPU for numpy input).
        standardize: standardise the input embeddings (and, unless ``standardize_targets`` is
            given, the regression targets) with train-split mean/std.
        progress: show a tqdm bar over epochs.
        num_classes: number of classes; default ``max(label) + 1``.
        standardize_targets: standardise regression targets with train-split mean/std (MSE is
            then on standardised targets; predictions and metrics stay in target units);
            ``None``: as ``standardize``.
        classification_loss: ``"cross_entropy"`` (of the probe outputs as class scores) or
            ``"mse"`` (outputs vs one-hot targets, the authors' code).

    Returns:
        :class:`GridResult` with per-probe rows, the selected probe (lowest validation loss),
        its test metric and test predictions.
    """
    prep = _prepare(
        train_x, train_y, test_x, test_y, task=task, grid=grid, epochs=epochs,
        batch_size=batch_size, lr=lr, val_fraction=val_fraction, seed=seed, device=device,
        standardize=standardize, num_classes=num_classes, standardize_targets=standardize_targets,
        classification_loss=classification_loss,
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
    standardize_targets: bool | None = None,
    classification_loss: str = "cross_entropy",
) -> GridResult:
    """Naive baseline with the same protocol as :func:`fit_probe_grid`: each probe is an
    ``nn.Sequential`` trained on its own, one after another (same split, batch order and
    initialisation, so results match the fused grid up to float round-off)."""
    prep = _prepare(
        train_x, train_y, test_x, test_y, task=task, grid=grid, epochs=epochs,
        batch_size=batch_size, lr=lr, val_fraction=val_fraction, seed=seed, device=device,
        standardize=standardize, num_classes=num_classes, standardize_targets=standardize_targets,
        classification_loss=classification_loss,
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
