"""``lossnet select --images FOLDER``: rank candidate loss networks for autoencoding *your* data.

A fast proxy of Benchmark 4 (systematic analysis, Sec. IV-D) on a labelled image folder:

1. load the folder (:func:`lossnet.data.datasets.load_image_folder`; labels = class
   sub-folders), keep a stratified seeded subsample of at most ``max_images`` and split it,
   stratified, into train and held-out test parts (``test_fraction``);
2. per candidate loss network (architecture, E/S/M/L layer): its sigmoid features of the train
   images, computed once and average-pooled to at most ``fp_max_dim`` values (the teacher
   targets), then an I-F-FP encoder (image encoder -> z -> MLP predicting those features; paper
   B: as good as perceptual-loss autoencoders, and the loss network never runs during training)
   trained for ``epochs`` epochs on the train images (:mod:`.select_core`);
3. the paper-B probe grid trained on the train embeddings (80/20 train/validation inside) and
   scored on the held-out test embeddings: accuracy, with its binomial standard error.

Candidates are ranked by accuracy (faster first on equal scores) next to the chance and
majority-class rates and a ``(pixels)`` baseline (the same encoder predicting the pooled image,
i.e. no loss network). The best loss network is recommended only when it beats all of them by
more than one noise margin from the held-out count (:mod:`.select_report`); otherwise nothing is
recommended. Without labels, :func:`select_label_free` (:mod:`.select_label_free`) ranks the same
encoders by a label-free criterion.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from lossnet.types import PathLike
from ..errors import UserError
from .select_core import (BASELINE, FEW_HELD_OUT, LABEL_FREE_CRITERIA, LAYERS, CandidateResult, _resolve_candidates,
                          _run_candidates, _train_candidate, default_candidates, parse_candidates, stratified_split)
from .select_label_free import augmented_view, cross_prediction_scores, retrieval_scores, select_label_free
from .select_report import RANKS_FOR, Selection, _rank, chance_levels, format_table, noise_margin
# also importable from here for scripts and tests (studies/select_label_free.py, tests/test_select.py)
from .select_core import _PixelNet, _targets  # noqa: F401

__all__ = ["CandidateResult", "Selection", "parse_candidates", "default_candidates", "select", "select_label_free",
           "select_folder", "format_table", "augmented_view", "retrieval_scores", "cross_prediction_scores",
           "noise_margin", "chance_levels", "LABEL_FREE_CRITERIA", "FEW_HELD_OUT", "RANKS_FOR", "BASELINE", "LAYERS",
           "stratified_split"]


def _evaluate(net, arch: str, layer: str, data: dict, s: dict, log) -> CandidateResult:
    from ..eval.probes import fit_probe_grid

    te, shape, dim, gflops, t0, t1, _ = _train_candidate(net, arch, layer, data, s)
    train_x, test_x = te.embed(data["train_images"]), te.embed(data["test_images"])
    t2 = time.perf_counter()
    grid = fit_probe_grid(train_x, data["train_labels"], test_x, data["test_labels"], task="classification",
                          grid=s["grid"], epochs=s["probe_epochs"], batch_size=s["probe_batch_size"], seed=s["seed"],
                          device=s["device"], progress=s["progress"], num_classes=data["num_classes"])
    t3 = time.perf_counter()
    acc = float(grid.test_metric)
    correct = (grid.test_predictions.argmax(1).cpu() == data["test_labels"]).tolist()
    n = len(data["test_labels"])
    p = (acc * n + 1) / (n + 2)  # Laplace-smoothed, so that 0 % or 100 % still carry an error
    return CandidateResult(arch, layer, "ok", acc, math.sqrt(p * (1 - p) / n), t3 - t0, t1 - t0,
                           t2 - t1, t3 - t2, shape, dim, gflops, grid.selected_name,
                           correct=correct)


def select(images: torch.Tensor, labels: torch.Tensor, *, candidates: Sequence[tuple[str, str]] | str | None = None,
           weights: Any = "imagenet", max_images: int | None = 600, test_fraction: float = 0.3, epochs: int = 3,
           z: int = 64, hidden: int = 1024, batch_size: int = 32, lr: float = 1e-3, probe_epochs: int = 60,
           probe_batch_size: int = 64, grid: str = "paper_b", fp_max_dim: int | None = 4096,
           budget_seconds: float | None = None, baseline: bool = True, seed: int = 0, device: str | None = None,
           progress: bool = False, log: Callable[[str], None] | None = None) -> Selection:
    """Rank loss networks for autoencoding ``images`` by the downstream accuracy of I-F-FP embeddings.

    Args:
        images: uint8 (N, 3, S, S), S = 64 + 16n.
        labels: int64 (N,) class indices.
        candidates: [(arch, layer)] or ``"alexnet:E,vgg16"``; default :func:`default_candidates`.
        weights: ``"imagenet"`` (candidates without weights are reported as skipped), ``"random"``,
            or a mapping arch -> state dict / ``None`` (random) / ``"imagenet"`` (e.g. for
            architectures registered with :func:`lossnet.zoo.register`).
        max_images, test_fraction: stratified subsample and held-out share.
        epochs, z, hidden, batch_size, lr: the I-F-FP encoder (hidden = feature-decoder width).
        probe_epochs, probe_batch_size, grid: the probe grid (``paper_b``: 7 MLPs; ``linear``).
        fp_max_dim: average-pool larger feature maps to at most this many values per image.
        budget_seconds: stop starting new candidates when the next one would likely overrun this
            (estimated from the mean time so far); the rest are reported as ``"not run"``.
        baseline: also evaluate the ``(pixels)`` baseline (no loss network).
        seed: subsample, split, encoder and probe seed.

    Returns:
        :class:`Selection`, results ranked best first, with the chance / majority-class rates and
        the pixel baseline (``baselines``), the noise margin and the cautions; ``recommended`` is
        ``None`` when no loss network beats those baselines beyond noise.
    """
    say = log or (lambda m: None)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    cands = _resolve_candidates(candidates, weights)
    train_idx, test_idx = stratified_split(labels, max_images, test_fraction, seed)
    if len(test_idx) < 2 or len(train_idx) < 10:
        raise UserError(f"too few images for a held-out estimate ({len(train_idx)} train, {len(test_idx)} test); "
                        "give at least ~20 images per class")
    num_classes = int(labels.max()) + 1
    data = {"train_images": images[train_idx].contiguous(), "train_labels": labels[train_idx],
            "test_images": images[test_idx].contiguous(), "test_labels": labels[test_idx], "num_classes": num_classes}
    s = {"z": int(z), "hidden": int(hidden), "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
         "probe_epochs": int(probe_epochs), "probe_batch_size": int(probe_batch_size), "grid": grid,
         "fp_max_dim": fp_max_dim, "seed": int(seed), "device": device, "progress": bool(progress)}
    train_counts = torch.bincount(data["train_labels"], minlength=num_classes)
    majority = float((data["test_labels"] == int(train_counts.argmax())).double().mean())
    settings = {**s, "mode": "labelled", "n_train": len(train_idx), "n_test": len(test_idx), "num_classes": num_classes,
                "chance_rate": 1.0 / num_classes, "majority_rate": majority,
                "image_size": int(images.shape[-1]), "max_images": max_images, "test_fraction": test_fraction,
                "budget_seconds": budget_seconds, "procedure": "I-F-FP",
                "weights": weights if isinstance(weights, str) or weights is None else
                {k: (v if isinstance(v, str) or v is None else "state_dict") for k, v in weights.items()}}
    say(f"{len(train_idx)} train / {len(test_idx)} held-out images, {num_classes} classes, "
        f"{len(cands)} candidate(s){' + pixel baseline' if baseline else ''}")
    results = _run_candidates(cands, weights, baseline, budget_seconds, seed,
                              lambda net, arch, layer: _evaluate(net, arch, layer, data, s, say), say, "accuracy")
    return _rank(results, settings)


def select_folder(folder: PathLike, *, size: int = 64, out: PathLike | None = None,
                  label_free: bool | None = None, criterion: str = "cross-prediction", **kwargs) -> Selection:
    """:func:`select` on an image folder with class sub-folders (``FOLDER/<class>/*.png``), or
    :func:`select_label_free` when ``label_free`` is True, or when it is None (automatic) and the
    folder has no class sub-folders (a message says so through ``log``). Writes ``select.json`` to
    ``out`` when given. Probe settings (``probe_epochs``, ``probe_batch_size``, ``grid``) are ignored
    in the label-free mode, ``criterion`` (see :func:`select_label_free`) in the labelled one."""
    from ..data.datasets import load_image_folder

    say = kwargs.get("log") or (lambda m: None)
    try:
        s = load_image_folder(folder, size=size)
    except ValueError as e:
        raise UserError(str(e)) from None
    if label_free is None and s.labels is None:
        say(f"{folder} has no class sub-folders, so there are no labels: ranking label-free (docs/choosing.md, "
            "'Without labels'). Put images in FOLDER/<class>/ to rank by held-out probe accuracy instead.")
        label_free = True
    if label_free:
        lf = {k: v for k, v in kwargs.items() if k not in ("probe_epochs", "probe_batch_size", "grid")}
        sel = select_label_free(s.images, criterion=criterion, **lf)
    else:
        if s.labels is None:
            raise UserError(f"{folder} has no labels (no class sub-folders FOLDER/<class>/<image>); run with "
                            "--label-free (label_free=True) to rank without labels")
        if len(s.classes or []) < 2:
            raise UserError(f"{folder} has a single class sub-folder ({s.classes}); need at least two classes, or "
                            "rank without labels with --label-free")
        sel = select(s.images, s.labels, **kwargs)
    sel.settings.update(folder=str(Path(folder).resolve()), classes=s.classes if not label_free else None,
                        n_images=len(s.images))
    if out is not None:
        sel.write_json(Path(out) / "select.json")
    return sel
