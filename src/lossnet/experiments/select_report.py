"""Ranking, baselines, noise and the recommendation of ``lossnet select``.

One noise margin per selection decides everything (:func:`noise_margin`): a candidate is
"within noise of the best" when ``top.score - score <= noise`` (so the flag is monotone in the
score), and a loss network is recommended only when it beats the chance / majority-class rate
*and* the pixel baseline each by more than ``noise``. Otherwise nothing is recommended and the
recommendation says "no loss network beats pixels on these images" (or chance).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lossnet.types import PathLike
from lossnet.utils import atomic_write

from .select_core import BASELINE, FEW_HELD_OUT, CandidateResult

Z = 1.96  # two-sided 95 % normal quantile

RANKS_FOR = ("autoencoding towards downstream prediction: an autoencoder's embedding read by a small probe "
             "(Benchmark 4 of the systematic analysis). It does not transfer to super-resolution or delineation: "
             "there the paper's best layers differ (early layers for super-resolution; Table IV) -- use "
             "`lossnet sweep super_resolution` / `delineation` (docs/choosing.md, 'What the ranking is for')")


@dataclass
class Selection:
    """Outcome of :func:`~lossnet.experiments.select.select` / ``select_label_free``.

    Attributes:
        results: ranked (ok first, best first).
        recommended: the best loss network, or ``None`` when none beats the baselines beyond noise.
        recommendation: one paragraph: the pick (or why there is none), what it ranks for, cautions.
        settings: the run's settings (``n_test`` held-out images, mode, criterion, ...).
        budget_pick: the cheapest loss network within noise of the best that also beats the
            baselines, when clearly cheaper (< 0.8x the best's FLOPs).
        baselines: ``chance`` (1 / classes; label-free: the criterion's chance level),
            ``majority`` (majority-class rate on the held-out images; labelled only) and
            ``pixels`` (the pixel baseline's score), each ``None`` when not applicable / not run.
        noise: the one noise margin (score units) used for ties and for beating the baselines.
        cautions: ``[{"code", "text"}]``: ``NOTHING_BEATS_BASELINES``, ``NO_PIXEL_BASELINE``,
            ``FEW_HELD_OUT``, ``LABEL_FREE``, ``PROXY``.
        ranks_for: the downstream use the ranking is for, and where it does not transfer.
    """

    results: list[CandidateResult]
    recommended: str | None
    recommendation: str
    settings: dict = field(default_factory=dict)
    budget_pick: str | None = None
    baselines: dict = field(default_factory=dict)
    noise: float | None = None
    cautions: list[dict] = field(default_factory=list)
    ranks_for: str = RANKS_FOR

    def as_dict(self) -> dict:
        """Everything as plain JSON types (per-image values left out)."""
        res = []
        for r in self.results:
            d = {**asdict(r), "name": r.name}
            d.pop("correct")
            d.pop("per_image")
            res.append(d)
        return {"recommended": self.recommended, "budget_pick": self.budget_pick,
                "recommendation": self.recommendation, "ranks_for": self.ranks_for, "baselines": self.baselines,
                "noise": self.noise, "cautions": self.cautions, "settings": self.settings, "results": res}

    def write_json(self, path: PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, json.dumps(self.as_dict(), indent=2))


def noise_margin(ok: list[CandidateResult], n: int, label_free: bool) -> float:
    """The one noise margin of a ranking (score units), from the held-out count ``n``.

    Labelled: ``1.96 * sqrt(2 p (1 - p) / n)``, the 95 % half-width of the difference of two
    accuracies on ``n`` held-out images (binomial standard errors), ``p`` the top candidate's
    Laplace-smoothed accuracy ``(correct + 1) / (n + 2)``. Label-free: ``1.96 * s / sqrt(n)``
    with ``s`` the root-mean-square over candidates of the standard deviation of their per-image
    differences to the top candidate (the paired per-image values share the held-out images); with
    a single candidate ``1.96 * sqrt(2) * stderr``. ``ok``: ranked, best first.
    """
    top = ok[0]
    if not label_free:
        p = (top.score * n + 1) / (n + 2)
        return Z * math.sqrt(2 * p * (1 - p) / n)
    others = [r for r in ok[1:] if r.per_image is not None and top.per_image is not None
              and len(r.per_image) == len(top.per_image) > 1]
    if not others:
        return Z * math.sqrt(2) * float(top.stderr or 0.0)
    t = torch.tensor(top.per_image, dtype=torch.float64)
    var = sum(float((t - torch.tensor(r.per_image, dtype=torch.float64)).var(unbiased=True)) for r in others)
    return Z * math.sqrt(var / len(others) / len(t))


def chance_levels(settings: dict) -> tuple[float | None, float | None]:
    """(chance, majority-class rate) of the mode: labelled ``1 / num_classes`` and the held-out share of
    the training set's most frequent class (``settings["majority_rate"]``); label-free
    cross-prediction 0 (R^2 of predicting the train mean), retrieval ``H_n / n`` (the mean reciprocal
    rank of a random order of ``n`` held-out images)."""
    if settings.get("mode") == "label-free":
        n = settings["n_test"]  # a count
        return (sum(1 / k for k in range(1, n + 1)) / n if settings.get("criterion") == "retrieval" else 0.0), None
    k = settings.get("num_classes")
    return (1.0 / k if k else None), settings.get("majority_rate")


def _what(settings: dict) -> str:
    if settings.get("mode") != "label-free":
        return "accuracy"
    return ("augmentation-retrieval score (MRR)" if settings.get("criterion") == "retrieval" else
            "cross-prediction score (R^2 of the other architectures' features)")


def _rank(results: list[CandidateResult], settings: dict) -> Selection:
    """Rank ok results (higher score first, faster first on equal scores), flag ties with the top one
    and the loss networks that beat the baselines, and write the recommendation."""
    ok = sorted([r for r in results if r.status == "ok"], key=lambda r: (-r.score, r.seconds))
    rest = [r for r in results if r.status != "ok"]
    for i, r in enumerate(ok, start=1):
        r.rank = i
    n = settings["n_test"]  # a count
    label_free = settings.get("mode") == "label-free"
    chance, majority = chance_levels(settings)
    base = next((r for r in ok if r.arch == BASELINE), None)
    baselines = {"chance": chance, "majority": majority, "pixels": base.score if base is not None else None}
    nets = [r for r in ok if r.arch != BASELINE]
    cautions: list[dict] = []
    if not nets:
        return Selection(ok + rest, None, "No loss network could be evaluated (see the reasons above).", settings,
                         baselines=baselines)
    noise = noise_margin(ok, n, label_free)
    for r in ok:
        r.tied_with_best = ok[0].score - r.score <= noise
    floor = max(v for v in (chance, majority, -math.inf) if v is not None)
    for r in nets:
        r.beats_baselines = r.score - floor > noise and (base is None or r.score - base.score > noise)
    best = nets[0]
    what = _what(settings)
    levels = _levels_text(chance, majority, label_free)
    if best.beats_baselines:
        tied = [r for r in nets if r.tied_with_best]
        flops = lambda r: r.gflops if r.gflops is not None else math.inf  # noqa: E731
        cheapest = min([r for r in tied if r.beats_baselines], key=lambda r: (flops(r), -r.score))
        budget = cheapest if flops(cheapest) < 0.8 * flops(best) else None  # only a clear saving counts
        text = (f"Recommended: {best.name}, the highest held-out {what} ({best.score:.3f} +- {best.stderr:.3f} on "
                f"{n} images); it beats {levels}" + (f" and the pixel baseline ({base.score:.3f})" if base else "") +
                f" by more than the noise margin ({noise:.3f}).")
        if len(tied) > 1:
            text += f" Within noise of it: {', '.join(r.name for r in tied if r is not best)}."
        if budget is not None:
            text += (f" If compute matters: {budget.name} is within noise and needs {1e3 * budget.gflops:.1f} instead "
                     f"of {1e3 * best.gflops:.1f} MFLOPs per image.")
        recommended, budget_name = best.name, (budget.name if budget is not None else None)
    else:
        below_pixels = base is not None and best.score - base.score <= noise
        rate = "chance" if label_free or majority is None else "chance or the majority-class rate"
        text = ("No recommendation: no loss network beats " + ("pixels" if below_pixels else rate) + " on these images"
                + (f", nor {rate}" if below_pixels and best.score - floor <= noise else "") +
                f" (beyond the noise margin {noise:.3f}). The best, {best.name}, has a held-out {what} of "
                f"{best.score:.3f} +- {best.stderr:.3f} on {n} images; {_values(baselines)}. " +
                ("An encoder trained on the pixels does as well here: a loss network may not help on these images, "
                 "or more images (--max-images) or epochs (--epochs) are needed to tell." if below_pixels else
                 "The embeddings do not carry the labels at this scale: more images or epochs may, or the labels "
                 "are not visible in the images."))
        cautions.append({"code": "NOTHING_BEATS_BASELINES", "text": text})
        recommended = budget_name = None
    if base is None:
        cautions.append({"code": "NO_PIXEL_BASELINE", "text": "The pixel baseline was not run (--no-baseline): "
                         "whether any loss network beats a pixel-trained encoder is unchecked."})
    if label_free:
        crit = settings.get("criterion")
        cautions.append({"code": "LABEL_FREE", "text": "Label-free: the score measures " + (
            "how well each embedding tells held-out images apart under small perturbations" if crit == "retrieval"
            else "how much of what other loss networks see in the held-out images each embedding keeps (linearly)") +
            ", not a downstream task" + (
            "; it agreed with labelled rankings less often than the default cross-prediction" if crit == "retrieval"
            else "; it agreed with labelled rankings across seeds on LunarLander frames and on photograph crops "
            "(rho ~0.7, at the labelled rankings' own seed-to-seed agreement)") +
            ". With a few labelled images the labelled mode is more direct (docs/choosing.md)."})
    if n < FEW_HELD_OUT:
        cautions.append({"code": "FEW_HELD_OUT", "text": (
            f"Caution: only {n} held-out images (noise margin {noise:.3f}); in docs/choosing.md 72 held-out images "
            "were too few for any ranking to be reproducible and 216 were enough: give more images (--max-images) "
            "if you have them.")})
    cautions.append({"code": "PROXY", "text": "This is a small-scale proxy (few epochs, a subsample): confirm the "
                     "top candidates with `lossnet sweep autoencoding` or full training before committing."})
    text += f" It ranks for {RANKS_FOR}."
    text += "".join(" " + c["text"] for c in cautions if c["code"] != "NOTHING_BEATS_BASELINES")
    return Selection(ok + rest, recommended, text, settings, budget_name, baselines, noise, cautions)


def _levels_text(chance, majority, label_free: bool) -> str:
    if label_free:
        return f"chance ({chance:.3f})"
    return f"chance ({chance:.3f})" + (f" and the majority-class rate ({majority:.3f})" if majority is not None else "")


def _values(b: dict) -> str:
    """"chance 0.500, majority class 0.520, pixels 0.533" (those that apply)."""
    parts = [f"{label} {b[k]:.3f}" for k, label in (("chance", "chance"), ("majority", "majority class"),
                                                    ("pixels", "pixels")) if b.get(k) is not None]
    return ", ".join(parts + ([] if b.get("pixels") is not None else ["pixels not run"]))


def format_table(sel: Selection) -> str:
    """The ranking as a plain-text table, followed by the baselines and the noise margin."""
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
                ["within noise of the best"] if r.tied_with_best and r.rank != 1 else []) + (
                ["does not beat the baselines beyond noise"] if r.beats_baselines is False else [])
            note = "; ".join(notes)
            lines.append(f"{r.rank:>4}  {r.name:<24}{r.score:>9.3f}{r.stderr:>7.3f}{r.seconds:>9.1f}  {chw:<16}"
                         f"{r.target_dim:>7}{1e3 * (r.gflops or 0):>9.1f}  {note}")
        else:
            lines.append(f"{'-':>4}  {r.name:<24}{'-':>9}{'-':>7}{'-':>9}  {'-':<16}{'-':>7}{'-':>9}  "
                         f"{r.status}: {(r.reason or '')[:70]}")
    line = "baselines: " + _values(sel.baselines)
    if sel.noise is not None:
        line += (f"; noise margin {sel.noise:.3f} on {sel.settings.get('n_test')} held-out images (a loss network "
                 "must beat each baseline by more to be recommended)")
    return "\n".join(lines + ["", line])
