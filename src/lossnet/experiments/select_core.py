"""What both modes of ``lossnet select`` share: candidates, the held-out split, and training one
candidate's I-F-FP encoder on its (pooled) loss-network features.

:mod:`lossnet.experiments.select` (labelled mode, folders) and
:mod:`lossnet.experiments.select_label_free` score the encoders trained here;
:mod:`lossnet.experiments.select_report` ranks them against the baselines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from ..errors import UserError
from ..utils import batched
from ..zoo.layers import LAYER_KEYS as LAYERS

LABEL_FREE_CRITERIA = ("cross-prediction", "retrieval")
BASELINE = "(pixels)"
# Below this many held-out images a ranking is flagged as noisy (docs/choosing.md: 72 held-out
# photograph crops gave no reproducible ranking, 216 did).
FEW_HELD_OUT = 150


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
        tied_with_best: the score is within noise of the top-ranked one's: ``top.score - score <=
            noise`` with the one noise margin of the selection (:func:`~lossnet.experiments.
            select_report.noise_margin`), so the flag is monotone in the score.
        beats_baselines: (loss networks) the score exceeds the chance / majority-class rate and the
            pixel baseline's score each by more than the noise margin; only such a candidate is
            ever recommended.
        correct: per held-out image, whether the selected probe was right (not written to JSON).
        per_image: label-free mode: per held-out image, its criterion value (R^2 over the
            references, or the reciprocal rank of its own original when its augmented view is
            the query; not written to JSON); ``score`` is their mean.
        top1: label-free retrieval: fraction of augmented views whose nearest original is their own.
        references: label-free cross-prediction: number of reference feature spaces predicted.
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
    beats_baselines: bool | None = None
    top1: float | None = None
    references: int | None = None
    correct: list[bool] | None = field(default=None, repr=False)
    per_image: list[float] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.arch if self.arch == BASELINE else f"{self.arch}:{self.layer}"



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
    out = batched(lambda x: pool_to(net(x)[0], max_dim), images, batch_size, device)
    net.to("cpu")
    return out, shape, fc.get_total_flops() / 1e9


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
    te = train_encoder(data["train_images"], EncoderConfig.from_section(s, procedure="I-F-FP"),
                       FitConfig.from_section(s, desc=f"{arch}:{layer}"), loss_net=net, cache=_Fixed(feats))
    return te, shape, int(feats[0].numel()), gflops, t0, t1, feats


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
                net = (LossNetwork(arch, layers=layer, weights="random", seed=seed, sigmoid=True) if w is None
                       else LossNetwork(arch, layers=layer, weights=w, sigmoid=True))
            r = evaluate(net, arch, layer)
        except WeightsUnavailableError as e:
            results.append(CandidateResult(arch, layer, "skipped", reason=str(e)))
            continue
        times.append(r.seconds)
        results.append(r)
        say(f"  {r.name}: {what} {r.score:.3f} +- {r.stderr:.3f} ({r.seconds:.1f} s)" if what else
            f"  {r.name}: trained ({r.seconds:.1f} s)")
    return results
