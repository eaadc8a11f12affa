"""``lossnet select`` without labels: rank the I-F-FP encoders of :mod:`.select_core` by how much of
what the *other* candidate loss networks see in the held-out images their embedding keeps
(``criterion="cross-prediction"``, the default: held-out R^2 of ridge regressions to the other
architectures' pooled features), or by retrieval of augmented views among the held-out images
(``"retrieval"``: mean reciprocal rank). docs/choosing.md, "Without labels", has the criteria,
their justification and how well they agreed with labelled rankings.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import torch

from ..errors import UserError
from .select_core import (LABEL_FREE_CRITERIA, CandidateResult, _resolve_candidates, _run_candidates, _targets,
                          _train_candidate)
from .select_report import Selection, _rank

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

    Ties, baselines and the recommendation: :func:`~lossnet.experiments.select_report.noise_margin`
    from the paired per-image values; a loss network is recommended only when it beats the
    criterion's chance level and the pixel baseline beyond it. Other args as
    :func:`~lossnet.experiments.select.select` (no labels, no probes).
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
