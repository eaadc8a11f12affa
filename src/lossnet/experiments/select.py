"""``lossnet select --images FOLDER``: rank candidate loss networks for autoencoding *your* data.

A fast proxy of Benchmark 4 (systematic analysis, Sec. IV-D) on a labelled image folder:

1. load the folder (:func:`lossnet.data.datasets.load_image_folder`; labels = class
   sub-folders), keep a stratified seeded subsample of at most ``max_images`` and split it,
   stratified, into train and held-out test parts (``test_fraction``);
2. per candidate loss network (architecture, E/S/M/L layer): its sigmoid features of the train
   images, computed once and average-pooled to at most ``fp_max_dim`` values (the teacher
   targets), then an I-F-FP encoder (image encoder -> z -> MLP predicting those features; paper
   B: as good as perceptual-loss autoencoders, and the loss network never runs during training)
   trained for ``epochs`` epochs on the train images;
3. the paper-B probe grid trained on the train embeddings (80/20 train/validation inside) and
   scored on the held-out test embeddings: accuracy, with its binomial standard error.

Candidates are ranked by accuracy (faster first on equal scores); the best is recommended. Those
whose accuracy is within noise of it (a paired test on the same held-out images) are listed as
ties, and the cheapest of them (fewest FLOPs per image) is named as the budget option when it is
clearly cheaper. A ``(pixels)`` baseline -- the same encoder predicting the pooled image itself,
i.e. no loss network -- shows whether any loss network helps at all.

Without labels (no class sub-folders, or ``label_free=True``), :func:`select_label_free` ranks
the same I-F-FP encoders by how much of what the *other* candidate loss networks see in the
held-out images their embedding keeps: the held-out R^2 of ridge regressions from the embedding to
the other architectures' pooled features (``criterion="cross-prediction"``, the default), or, as
an option, by how well it tells held-out images apart under small perturbations (``"retrieval"``:
the augmented view of every held-out image queries all held-out originals; mean reciprocal rank).
docs/choosing.md, "Without labels", has the criteria, their justification and how well they agreed
with labelled rankings.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..errors import UserError
from ..zoo.layers import LAYER_KEYS as LAYERS

__all__ = ["CandidateResult", "Selection", "parse_candidates", "default_candidates", "select", "select_label_free",
           "select_folder", "format_table", "augmented_view", "retrieval_scores",
           "cross_prediction_scores", "LABEL_FREE_CRITERIA"]

LABEL_FREE_CRITERIA = ("cross-prediction", "retrieval")
BASELINE = "(pixels)"


@dataclass
class CandidateResult:
    """Evidence for one candidate.

    Attributes:
        arch, layer: the loss network (``arch == "(pixels)"`` for the no-loss-network baseline).
        status: ``"ok"``, ``"skipped"`` (weights unavailable; see ``reason``) or ``"not run"``
            (time budget spent).
        score: held-out test accuracy of the selected probe (fraction), ``None`` unless ok.
        stderr: binomial standard error of ``score`` (``sqrt(p (1 - p) / n)`` with the
            Laplace-smoothed ``p = (correct + 1) / (n + 2)``).
        seconds: wall time of the candidate (features + encoder + probes).
        feature_seconds, encoder_seconds, probe_seconds: its parts.
        feature_shape: (C, H, W) of the layer's features at the image size.
        target_dim: values per image the encoder predicts (after pooling).
        gflops: forward GFLOPs per image of the truncated loss network at the image size.
        probe: name of the selected probe.
        rank: 1 = best among ok candidates (baseline included).
        tied_with_best: the score is within noise of the best loss network's: a paired test on
            the same held-out images, ``|mean(d)| < 1.96 sd(d) / sqrt(n)`` with
            ``d = correct_best - correct_this`` per image.
        correct: per held-out image, whether the selected probe was right (not written to JSON).
        per_image: label-free mode: per held-out image, the reciprocal rank of its own original
            among all held-out originals when its augmented view is the query (not written to JSON);
            ``score`` is their mean and the paired tie test uses them.
        top1: label-free mode: fraction of augmented views whose nearest original is their own.
    """

    arch: str
    layer: str
    status: str = "ok"
    score: float | None = None
    stderr: float | None = None
    seconds: float = 0.0
    feature_seconds: float = 0.0
    encoder_seconds: float = 0.0
    probe_seconds: float = 0.0
    feature_shape: list[int] | None = None
    target_dim: int | None = None
    gflops: float | None = None
    probe: str | None = None
    reason: str | None = None
    rank: int | None = None
    tied_with_best: bool = False
    top1: float | None = None
    references: int | None = None
    correct: list[bool] | None = field(default=None, repr=False)
    per_image: list[float] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.arch if self.arch == BASELINE else f"{self.arch}:{self.layer}"


@dataclass
class Selection:
    """Outcome of :func:`select`: ``results`` ranked (ok first, best first), the recommended
    candidate (the best loss network), the cheapest loss network within noise of it
    (``budget_pick``, when clearly cheaper), a one-paragraph ``recommendation`` and the settings."""

    results: list[CandidateResult]
    recommended: str | None
    recommendation: str
    settings: dict = field(default_factory=dict)
    budget_pick: str | None = None

    def as_dict(self) -> dict:
        res = []
        for r in self.results:
            d = {**asdict(r), "name": r.name}
            d.pop("correct")
            d.pop("per_image")
            res.append(d)
        return {"recommended": self.recommended, "budget_pick": self.budget_pick,
                "recommendation": self.recommendation, "settings": self.settings, "results": res}

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2))
        os.replace(tmp, path)
        return path


# --------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------


def parse_candidates(spec: str | Sequence[str]) -> list[tuple[str, str]]:
    """``"alexnet:E,alexnet:S,vgg16"`` (or a list of such items) -> [(arch, layer)]; an item
    without ``:LAYER`` means all four layers. Unknown names raise ValueError."""
    from ..zoo import get_spec

    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    out: list[tuple[str, str]] = []
    for it in items:
        arch, _, layer = it.partition(":")
        get_spec(arch)
        layers = [layer.upper()] if layer else list(LAYERS)
        bad = [l for l in layers if l not in LAYERS]
        if bad:
            raise ValueError(f"candidate {it!r}: layer must be E, S, M or L")
        out += [(arch, l) for l in layers if (arch, l) not in out]
    if not out:
        raise ValueError("no candidates given")
    return out


def default_candidates(weights: Any = "imagenet") -> list[tuple[str, str]]:
    """Every (architecture, layer) to try: with ``"imagenet"`` the architectures whose ImageNet
    weights are present; with ``"random"`` every registered one; with a mapping its keys."""
    from ..zoo import list_archs, status

    if isinstance(weights, Mapping):
        archs = [a for a in list_archs() if a in weights]
    elif weights in ("random", None):
        archs = list_archs()
    else:
        archs = [a for a in list_archs() if status(a).available]
    return [(a, l) for a in archs for l in LAYERS]


def _weights_for(weights: Any, arch: str):
    """``weights=`` of :class:`~lossnet.zoo.LossNetwork` for ``arch``: "imagenet", None (random) or
    a state dict."""
    if isinstance(weights, Mapping):
        weights = weights.get(arch, "imagenet")
    if weights in ("random", None):
        return None
    return weights


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def stratified_split(labels: torch.Tensor, max_images: int | None, test_fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified subsample (at most ``max_images``, classes kept in proportion) split into
    (train, test) indices, each class contributing ``round(n_c * test_fraction)`` (>= 1 when it
    has >= 2 images) test images."""
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    keep = n if not max_images or max_images >= n else int(max_images)
    train, test = [], []
    classes = labels.unique().tolist()
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = max(1, round(len(idx) * keep / n))
        idx = idx[:k]
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_fraction))) if len(idx) >= 2 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


# --------------------------------------------------------------------------------------------
# One candidate
# --------------------------------------------------------------------------------------------


class _Fixed:
    """A feature cache that hands out precomputed (pooled) targets."""

    def __init__(self, feats: torch.Tensor) -> None:
        self.feats = feats

    def get(self, images, net) -> torch.Tensor:
        return self.feats


@torch.no_grad()
def _targets(net, images: torch.Tensor, max_dim: int | None, batch_size: int,
             device) -> tuple[torch.Tensor, list, float]:
    """Pooled sigmoid features (N, C, h, w) of uint8 images, the unpooled shape, GFLOPs per image."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..benchmarks.autoencoding import pool_to

    net = net.to(device)
    with FlopCounterMode(display=False) as fc:
        shape = list(net(images[:1].to(device).float().div(255))[0].shape[1:])
    out = []
    for i in range(0, len(images), batch_size):
        f = net(images[i:i + batch_size].to(device).float().div(255))[0]
        out.append(pool_to(f, max_dim).cpu())
    net.to("cpu")
    return torch.cat(out), shape, fc.get_total_flops() / 1e9


class _PixelNet(torch.nn.Module):
    """The baseline's "loss network": the image itself (in [0, 1])."""

    arch, layer_refs, sigmoid = BASELINE, ["-"], False
    nodes, normalize, weights_source = ["input"], None, "pixels"  # what identifies it (train.cache.net_identity)

    def forward(self, x):
        return [x]


def _train_candidate(net, arch: str, layer: str, data: dict, s: dict):
    """The step both modes share: the candidate's (pooled) feature targets of the training images and
    an I-F-FP encoder trained to predict them. Returns (encoder, target shape, target size, GFLOPs,
    t_start, t_feats)."""
    from ..train.engine import FitConfig
    from ..train.procedures import EncoderConfig, train_encoder

    t0 = time.perf_counter()
    feats, shape, gflops = _targets(net, data["train_images"], s["fp_max_dim"], 128, s["device"] or "cpu")
    t1 = time.perf_counter()
    te = train_encoder(data["train_images"], EncoderConfig(procedure="I-F-FP", z=s["z"], hidden=s["hidden"]),
                       FitConfig(epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], seed=s["seed"],
                                 device=s["device"], progress=s["progress"], desc=f"{arch}:{layer}"),
                       loss_net=net, cache=_Fixed(feats))
    return te, shape, int(feats[0].numel()), gflops, t0, t1, feats


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


# --------------------------------------------------------------------------------------------
# Label-free scoring: retrieval of augmented views among the held-out images
# --------------------------------------------------------------------------------------------


def augmented_view(images: torch.Tensor, seed: int = 0, *, max_shift: int | None = None, brightness: float = 0.1,
                   contrast: float = 0.1, noise: float = 0.03) -> torch.Tensor:
    """A perturbed copy of uint8 images (N, 3, S, S): per image a random translation of up to
    ``max_shift`` pixels (default S // 16; reflection at the borders), a contrast factor in
    ``1 +- contrast`` and a brightness offset in ``+- brightness`` (fractions of the [0, 1] range), plus
    Gaussian pixel noise of standard deviation ``noise``; rounded back to uint8. Deterministic in ``seed``."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, S, S), got {images.dtype} {tuple(images.shape)}")
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    m = max(1, min(h, w) // 16) if max_shift is None else int(max_shift)
    x = images.float().div(255)
    if m > 0:
        padded = torch.nn.functional.pad(x, (m, m, m, m), mode="reflect")
        dy, dx = (torch.randint(0, 2 * m + 1, (2, n), generator=g)).tolist()
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    c = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * contrast
    b = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * brightness
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean + b + noise * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def retrieval_scores(queries: torch.Tensor, gallery: torch.Tensor, mean: torch.Tensor | None = None,
                     std: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query i, the rank of ``gallery[i]`` among all gallery rows by cosine similarity.

    Embeddings (N, z) are first standardised per dimension with ``mean``/``std`` (e.g. of the
    training embeddings; default: the gallery's). Returns (reciprocal ranks (N,) in (0, 1], 1 =
    the own original is the nearest; top-1 hits (N,) bool). Ties count against the query.
    """
    if queries.shape != gallery.shape or queries.ndim != 2:
        raise ValueError(f"queries and gallery must be (N, z) of the same shape, got {tuple(queries.shape)} and "
                         f"{tuple(gallery.shape)}")
    q, gal = queries.double(), gallery.double()
    mean = gal.mean(0) if mean is None else mean.double()
    std = gal.std(0) if std is None else std.double()
    std = std.clamp_min(1e-8)
    q = torch.nn.functional.normalize((q - mean) / std, dim=1)
    gal = torch.nn.functional.normalize((gal - mean) / std, dim=1)
    sim = q @ gal.T
    own = sim.diagonal().unsqueeze(1)
    others = sim >= own
    others.fill_diagonal_(False)
    rank = 1 + others.sum(1)
    return 1.0 / rank.double(), rank == 1


def _evaluate_label_free(net, arch: str, layer: str, data: dict, s: dict, log) -> CandidateResult:
    te, shape, dim, gflops, t0, t1, _ = _train_candidate(net, arch, layer, data, s)
    train_x = te.embed(data["train_images"]).cpu()
    t2 = time.perf_counter()
    gallery, queries = te.embed(data["test_images"]).cpu(), te.embed(data["test_views"]).cpu()
    rr, hit = retrieval_scores(queries, gallery, train_x.mean(0), train_x.std(0))
    t3 = time.perf_counter()
    n = len(rr)
    sd = float(rr.std(unbiased=True)) if n > 1 else 0.0
    return CandidateResult(arch, layer, "ok", float(rr.mean()), sd / math.sqrt(n), t3 - t0, t1 - t0, t2 - t1,
                           t3 - t2, shape, dim, gflops, "augmentation retrieval",
                           per_image=rr.tolist(), top1=float(hit.double().mean()))


def cross_prediction_scores(train_x: torch.Tensor, test_x: torch.Tensor, refs_train: Sequence[torch.Tensor],
                            refs_test: Sequence[torch.Tensor], ridge: float = 1e-2) -> torch.Tensor:
    """Per held-out image, how well the embedding linearly predicts reference feature spaces.

    For each reference r, a ridge regression from the embeddings (standardised with the train
    embeddings' mean/sd; penalty ``ridge * n_train`` on the weights, no intercept penalty) is fitted
    from ``train_x`` (N, z) to the reference's train features ``refs_train[r]`` (N, D_r) and
    applied to ``test_x`` (M, z). Image i's value for r is ``1 - |pred_i - y_i|^2 / mean_j |y_j -
    ybar|^2`` (``ybar``: the train features' mean; ``j`` over the M held-out images), so the mean over
    images is the held-out R^2 of reference r. Returns (M,) float64: the mean over references
    (higher is better, 1 = perfect; 0 = no better than predicting the train mean).
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"embeddings must be (N, z) and (M, z), got {tuple(train_x.shape)} and {tuple(test_x.shape)}")
    if len(refs_train) != len(refs_test) or not refs_train:
        raise ValueError("give one or more reference feature spaces, as many for the train as for the test images")
    x, xt = train_x.double(), test_x.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x, xt = (x - mean) / std, (xt - mean) / std
    gram = x.T @ x + ridge * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
    total = torch.zeros(len(xt), dtype=torch.float64)
    for ytr, yte in zip(refs_train, refs_test):
        ytr, yte = ytr.flatten(1).double(), yte.flatten(1).double()
        if len(ytr) != len(x) or len(yte) != len(xt):
            raise ValueError(f"reference features must have one row per image ({len(x)} train, {len(xt)} test), got "
                             f"{len(ytr)} and {len(yte)}")
        ybar = ytr.mean(0)
        w = torch.linalg.solve(gram, x.T @ (ytr - ybar))
        err = ((xt @ w + ybar - yte) ** 2).sum(1)
        total += 1 - err / ((yte - ybar) ** 2).sum(1).mean().clamp_min(1e-12)
    return total / len(refs_train)


def _embed_for_cross_prediction(net, arch: str, layer: str, data: dict, s: dict, store: dict) -> CandidateResult:
    """Train the candidate's encoder; keep its embeddings and its (pooled) features of the train and
    held-out images in ``store`` for :func:`_score_cross_prediction` (the score needs every candidate)."""
    te, shape, dim, gflops, t0, t1, feats = _train_candidate(net, arch, layer, data, s)
    test_feats, _, _ = _targets(net, data["test_images"], s["fp_max_dim"], 128, s["device"] or "cpu")
    train_x, test_x = te.embed(data["train_images"]).cpu(), te.embed(data["test_images"]).cpu()
    t2 = time.perf_counter()
    r = CandidateResult(arch, layer, "ok", None, None, t2 - t0, t1 - t0, t2 - t1, 0.0, shape, dim, gflops,
                        "cross-prediction")
    store[r.name] = (train_x, test_x, feats.flatten(1).float(), test_feats.flatten(1).float())
    return r


def _score_cross_prediction(results: list[CandidateResult], store: dict, ridge: float) -> None:
    """Fill in each trained candidate's score: the held-out R^2 of its embedding predicting the other
    candidates' feature spaces (those of *other* architectures, the pixel baseline included; when there
    are none, every other candidate), averaged over those references, with per-image values for ties."""
    ok = [r for r in results if r.status == "ok" and r.name in store]
    for r in ok:
        t0 = time.perf_counter()
        refs = [o for o in ok if o.arch != r.arch] or [o for o in ok if o is not r]
        if not refs:  # e.g. the time budget stopped every other candidate
            r.status, r.reason = "not run", "no other candidate was trained to predict (time budget?)"
            continue
        train_x, test_x = store[r.name][:2]
        v = cross_prediction_scores(train_x, test_x, [store[o.name][2] for o in refs], [store[o.name][3] for o in refs],
                                    ridge)
        n = len(v)
        r.score, r.stderr = float(v.mean()), float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
        r.per_image = v.tolist()
        r.references = len(refs)
        dt = time.perf_counter() - t0
        r.probe_seconds += dt
        r.seconds += dt


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


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
        :class:`Selection`, results ranked best first.
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
    settings = {**s, "n_train": len(train_idx), "n_test": len(test_idx), "num_classes": num_classes,
                "image_size": int(images.shape[-1]), "max_images": max_images, "test_fraction": test_fraction,
                "budget_seconds": budget_seconds, "procedure": "I-F-FP",
                "weights": weights if isinstance(weights, str) or weights is None else
                {k: (v if isinstance(v, str) or v is None else "state_dict") for k, v in weights.items()}}
    say(f"{len(train_idx)} train / {len(test_idx)} held-out images, {num_classes} classes, "
        f"{len(cands)} candidate(s){' + pixel baseline' if baseline else ''}")
    results = _run_candidates(cands, weights, baseline, budget_seconds, seed,
                              lambda net, arch, layer: _evaluate(net, arch, layer, data, s, say), say, "accuracy")
    return _rank(results, settings)


def select_label_free(images: torch.Tensor, *, candidates: Sequence[tuple[str, str]] | str | None = None,
                      weights: Any = "imagenet", max_images: int | None = 600, test_fraction: float = 0.3,
                      epochs: int = 3, z: int = 64, hidden: int = 1024, batch_size: int = 32, lr: float = 1e-3,
                      fp_max_dim: int | None = 4096, budget_seconds: float | None = None, baseline: bool = True,
                      seed: int = 0, device: str | None = None, progress: bool = False,
                      log: Callable[[str], None] | None = None, criterion: str = "cross-prediction",
                      ridge: float = 1e-2, **augment) -> Selection:
    """Rank loss networks for autoencoding unlabeled ``images`` (docs/choosing.md, "Without labels").

    Per candidate, the I-F-FP encoder of :func:`select` is trained on a seeded random train part
    and its embeddings of the held-out images are scored by ``criterion``:

    * ``"cross-prediction"`` (default): how well the embedding *linearly predicts the other
      candidates' feature spaces* on the held-out images (:func:`cross_prediction_scores`; ridge
      fitted on the train embeddings; references: the pooled features of the candidates of other
      architectures, the pixel baseline included). The score is the mean held-out R^2 (higher is
      better; at most 1). It needs at least two candidates (the pixel baseline counts).
    * ``"retrieval"``: each held-out image gets an :func:`augmented_view` (small shift,
      contrast/brightness, noise; ``**augment`` goes there: ``max_shift``, ``brightness``,
      ``contrast``, ``noise``) that retrieves its own original among all held-out originals by
      cosine similarity of the (train-standardised) embeddings; score: the mean reciprocal rank
      (MRR, in (0, 1]; ``top1`` is the fraction retrieved first).

    Ties with the best: the paired test of :func:`select` on the per-image values. Other args as
    :func:`select` (no labels, no probes).
    """
    say = log or (lambda m: None)
    if criterion not in LABEL_FREE_CRITERIA:
        raise UserError(f"unknown label-free criterion {criterion!r}; choose one of {', '.join(LABEL_FREE_CRITERIA)}")
    if augment and criterion != "retrieval":
        raise UserError(f"augmentation settings ({', '.join(augment)}) only apply to criterion='retrieval'")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, S, S), got {getattr(images, 'dtype', type(images))} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    cands = _resolve_candidates(candidates, weights)
    if criterion == "cross-prediction" and len(cands) + bool(baseline) < 2:
        raise UserError("the cross-prediction criterion scores each candidate against the others' features: give at "
                        "least two candidates (the pixel baseline counts), or use criterion='retrieval'")
    g = torch.Generator().manual_seed(seed)
    n_all = len(images)
    keep = n_all if not max_images or max_images >= n_all else int(max_images)
    idx = torch.randperm(n_all, generator=g)[:keep]
    n_test = max(2, round(keep * test_fraction))
    test_idx, train_idx = idx[:n_test].sort().values, idx[n_test:].sort().values
    if len(test_idx) < 10 or len(train_idx) < 10:
        raise UserError(f"too few images for a held-out estimate ({len(train_idx)} train, {len(test_idx)} test); "
                        "give at least ~40 images")
    test_images = images[test_idx].contiguous()
    data = {"train_images": images[train_idx].contiguous(), "test_images": test_images}
    s = {"z": int(z), "hidden": int(hidden), "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
         "fp_max_dim": fp_max_dim, "seed": int(seed), "device": device, "progress": bool(progress)}
    settings = {**s, "mode": "label-free", "criterion": criterion, "n_train": len(train_idx), "n_test": len(test_idx),
                "image_size": int(images.shape[-1]), "max_images": max_images, "test_fraction": test_fraction,
                "budget_seconds": budget_seconds, "procedure": "I-F-FP",
                "weights": weights if isinstance(weights, str) or weights is None else
                {k: (v if isinstance(v, str) or v is None else "state_dict") for k, v in weights.items()}}
    if criterion == "retrieval":
        data["test_views"] = augmented_view(test_images, seed + 1, **augment)
        settings.update(augment=dict(augment), criterion_text="mean reciprocal rank of each held-out image's augmented "
                        "view among the held-out images")
        evaluate, what = (lambda net, arch, layer: _evaluate_label_free(net, arch, layer, data, s, say)), "retrieval MRR"
    else:
        store: dict = {}
        settings.update(ridge=float(ridge), criterion_text="mean held-out R^2 of a ridge regression from the embedding "
                        "to the other architectures' (pooled) features")
        evaluate, what = (lambda net, arch, layer: _embed_for_cross_prediction(net, arch, layer, data, s, store)), None
    say(f"label-free ({criterion}): {len(train_idx)} train / {len(test_idx)} held-out images, {len(cands)} "
        f"candidate(s){' + pixel baseline' if baseline else ''}")
    results = _run_candidates(cands, weights, baseline, budget_seconds, seed, evaluate, say, what)
    if criterion == "cross-prediction":
        _score_cross_prediction(results, store, float(ridge))
        for r in results:
            if r.status == "ok":
                say(f"  {r.name}: cross-prediction R^2 {r.score:.3f} +- {r.stderr:.3f} ({r.references} reference(s))")
    return _rank(results, settings)


def _resolve_candidates(candidates, weights) -> list[tuple[str, str]]:
    if candidates is None:
        cands = default_candidates(weights)
        if not cands:
            raise UserError("no loss network has weights here (see `lossnet weights list`); pass --weights random "
                            "to rank randomly initialised ones, or fetch some weights")
        return cands
    if isinstance(candidates, str):
        return parse_candidates(candidates)
    return [(a, str(l).upper()) for a, l in candidates]


def _run_candidates(cands, weights, baseline: bool, budget_seconds, seed: int,
                    evaluate: Callable[[Any, str, str], CandidateResult], say, what: str) -> list[CandidateResult]:
    """Evaluate the baseline (optional) and every candidate in turn, within the time budget."""
    from ..zoo import LossNetwork, WeightsUnavailableError, status

    results: list[CandidateResult] = []
    t_start = time.perf_counter()
    times: list[float] = []
    todo: list[tuple[str, str]] = ([(BASELINE, "-")] if baseline else []) + list(cands)
    for arch, layer in todo:
        elapsed = time.perf_counter() - t_start
        est = sum(times) / len(times) if times else 0.0
        if budget_seconds is not None and times and elapsed + est > budget_seconds:
            results.append(CandidateResult(arch, layer, "not run", reason=f"time budget of {budget_seconds:g} s "
                                           f"spent ({elapsed:.0f} s used, ~{est:.0f} s per candidate)"))
            continue
        w = _weights_for(weights, arch) if arch != BASELINE else None
        if arch != BASELINE and isinstance(w, str):
            st = status(arch)
            if not st.available:
                results.append(CandidateResult(arch, layer, "skipped", reason=st.reason))
                say(f"  {arch}:{layer}: skipped (no ImageNet weights here)")
                continue
        try:
            if arch == BASELINE:
                net = _PixelNet()
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    net = LossNetwork(arch, layers=layer, weights=w, sigmoid=True)
            r = evaluate(net, arch, layer)
        except WeightsUnavailableError as e:
            results.append(CandidateResult(arch, layer, "skipped", reason=str(e)))
            continue
        times.append(r.seconds)
        results.append(r)
        say(f"  {r.name}: {what} {r.score:.3f} +- {r.stderr:.3f} ({r.seconds:.1f} s)" if what else
            f"  {r.name}: trained ({r.seconds:.1f} s)")
    return results


# Below this many held-out images a label-free ranking is flagged as noisy (docs/choosing.md: 72
# held-out photograph crops gave no reproducible ranking, 216 did).
FEW_HELD_OUT = 150


def _rank(results: list[CandidateResult], settings: dict) -> Selection:
    ok = sorted([r for r in results if r.status == "ok"], key=lambda r: (-r.score, r.seconds))
    rest = [r for r in results if r.status != "ok"]
    for i, r in enumerate(ok, start=1):
        r.rank = i
    nets = [r for r in ok if r.arch != BASELINE]
    if not nets:
        return Selection(ok + rest, None, "No loss network could be evaluated (see the reasons above).", settings)
    best = nets[0]
    for r in ok:
        r.tied_with_best = r is best or _paired_tie(best, r)
    tied = [r for r in nets if r.tied_with_best]
    flops = lambda r: r.gflops if r.gflops is not None else math.inf  # noqa: E731
    cheapest = min(tied, key=lambda r: (flops(r), -r.score))
    budget = cheapest if flops(cheapest) < 0.8 * flops(best) else None  # only a clear saving counts
    n = settings["n_test"]
    label_free = settings.get("mode") == "label-free"
    crit = settings.get("criterion")
    what = ("augmentation-retrieval score (MRR)" if crit == "retrieval" else "cross-prediction score (R^2 of the "
            "other architectures' features)") if label_free else "accuracy"
    text = (f"Recommended: {best.name}, the highest held-out {what} ({best.score:.3f} +- {best.stderr:.3f} on "
            f"{n} images).")
    if len(tied) > 1:
        text += (f" Within noise of it (paired test on the same images): "
                 f"{', '.join(r.name for r in tied if r is not best)}.")
    if budget is not None:
        text += (f" If compute matters: {budget.name} is within noise and needs {1e3 * budget.gflops:.1f} instead of "
                 f"{1e3 * best.gflops:.1f} MFLOPs per image.")
    base = next((r for r in ok if r.arch == BASELINE), None)
    if base is not None:
        if base.tied_with_best:
            text += (f" Caution: the pixel baseline (no loss network) scores {base.score:.3f}, within noise of the "
                     "best loss network; on this data a loss network may not help, or more images/epochs are needed "
                     "to tell.")
        else:
            text += f" The pixel baseline (no loss network) scores {base.score:.3f}."
    if label_free:
        text += (" Label-free: the score measures " + (
            "how well each embedding tells held-out images apart under small perturbations" if crit == "retrieval" else
            "how much of what other loss networks see in the held-out images each embedding keeps (linearly)") +
            ", not a downstream task" + (
                "; it agreed with labelled rankings less often than the default cross-prediction" if crit == "retrieval"
                else "; it agreed with labelled rankings across seeds on LunarLander frames and on photograph crops "
                "(rho ~0.7, at the labelled rankings' own seed-to-seed agreement)") +
            ". With a few labelled images the labelled mode is more direct (docs/choosing.md).")
        if n < FEW_HELD_OUT:
            text += (f" Caution: only {n} held-out images; in docs/choosing.md 72 held-out images were too few for "
                     f"any ranking to be reproducible and 216 were enough: give more images (--max-images) if you "
                     "have them.")
    text += (" This is a small-scale proxy (few epochs, a subsample): confirm the top candidates with "
             "`lossnet sweep benchmark4` or full training before committing.")
    return Selection(ok + rest, best.name, text, settings, budget.name if budget is not None else None)


def _paired_tie(a: CandidateResult, b: CandidateResult) -> bool:
    """Whether ``b``'s score is within noise of ``a``'s on the same held-out images (paired test on the
    per-image values: correctness, or reciprocal ranks in the label-free mode)."""
    va = a.per_image if a.per_image is not None else a.correct
    vb = b.per_image if b.per_image is not None else b.correct
    if va is None or vb is None or len(va) != len(vb):
        return a.score - b.score < 1.96 * math.sqrt(a.stderr ** 2 + b.stderr ** 2)
    d = torch.tensor(va, dtype=torch.float64) - torch.tensor(vb, dtype=torch.float64)
    n = len(d)
    sd = float(d.std(unbiased=True)) if n > 1 else 0.0
    return float(d.mean()) <= 1.96 * max(sd, 1.0 / n) / math.sqrt(n)


def format_table(sel: Selection) -> str:
    """The ranking as a plain-text table."""
    col = ("MRR" if sel.settings.get("criterion") == "retrieval" else "R^2") if sel.settings.get("mode") == \
        "label-free" else "accuracy"
    head = f"{'rank':>4}  {'loss network':<24}{col:>9}{'+-se':>7}{'seconds':>9}  {'features CxHxW':<16}" \
           f"{'target':>7}{'MFLOPs':>9}  note"
    lines = [head, "-" * len(head)]
    for r in sel.results:
        if r.status == "ok":
            chw = "x".join(str(v) for v in r.feature_shape) if r.feature_shape else "-"
            notes = (["recommended"] if r.name == sel.recommended else []) + (
                ["cheapest within noise"] if r.name == sel.budget_pick else []) + (
                ["baseline, no loss network"] if r.arch == BASELINE else []) + (
                ["within noise of the best"] if r.tied_with_best and r.rank != 1 else [])
            note = "; ".join(notes)
            lines.append(f"{r.rank:>4}  {r.name:<24}{r.score:>9.3f}{r.stderr:>7.3f}{r.seconds:>9.1f}  {chw:<16}"
                         f"{r.target_dim:>7}{1e3 * (r.gflops or 0):>9.1f}  {note}")
        else:
            lines.append(f"{'-':>4}  {r.name:<24}{'-':>9}{'-':>7}{'-':>9}  {'-':<16}{'-':>7}{'-':>9}  "
                         f"{r.status}: {(r.reason or '')[:70]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Folders and the command line
# --------------------------------------------------------------------------------------------


def select_folder(folder: str | os.PathLike, *, size: int = 64, out: str | os.PathLike | None = None,
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
