"""Cross-analysis of loss networks (systematic-analysis paper, Section V).

Input: result rows with ``arch``, ``layer`` (E/S/M/L), ``status`` (``"ok"``, the default, or
``"skipped"`` with a ``reason``) and one or more score columns, e.g. a sweep's ``results.jsonl``
(:mod:`lossnet.benchmarks.sweep`). Output (:func:`analysis_markdown`):

* Table III -- for each score, architectures ranked 1 (best) .. n by their best layer (ties share
  the mean rank); the average rank per benchmark and overall (each benchmark weighted equally);
* Table IV -- the best extraction layer per architecture and score (ties: the earlier layer);
* Fig. 2 -- score by extraction layer per architecture; Fig. 3 -- grouped by layer;
  Fig. 4 -- score vs log10 FLOPs of the truncated network; Fig. 5 -- best score vs ImageNet top-1;
* Pearson and Spearman correlations (with p-values) between every score and the attributes, one
  observation per loss network (:func:`correlations`): of the truncated network (parameters and
  depth up to the layer, fraction of parameters, features and channels at the layer, FLOPs, batch
  norm, 1x1 convs) and of the whole architecture (ImageNet top-1, Table I's depth and MFLOPS, all
  parameters, skip connections, branching);
* the whole-architecture attributes (:data:`ARCH_ATTRIBUTES`) against each architecture's best
  layer, one observation per architecture (:func:`arch_correlations`; Fig. 5b);
* correlations between every pair of scores (:func:`score_correlations`);
* which population Table III ranks: the paper's 14 architectures or others
  (:func:`population_note`);
* the skipped cells with their reasons.

Scores where lower is better (e.g. a position error in pixels) are ranked accordingly and keep
their sign in the correlations. Attributes are computed by :func:`lossnet.zoo.describe` (cached on
disk for the built-in architectures) and read from the registry (top-1, Table I's depth and
MFLOPS, skip, branch, conv1x1, batch norm of the whole architecture).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossnet.report.formatting import format_p
from lossnet.utils import atomic_write
from lossnet.zoo.layers import LAYER_KEYS as LAYERS


@dataclass(frozen=True)
class Score:
    """A score column: its benchmark and whether higher is better."""

    name: str
    benchmark: str
    higher_is_better: bool


def _benchmark_order(names) -> list[str]:
    """Benchmark names in the paper's order (benchmarks 1 to 4), any others after them by name."""
    from lossnet.schema import BENCHMARK_ALIASES

    order = list(BENCHMARK_ALIASES.values())
    return sorted(names, key=lambda b: (order.index(b) if b in order else len(order), b))


def _attr_cache_path() -> Path:
    from lossnet.utils import lossnet_home

    return lossnet_home() / "describe_cache.json"


_ATTR_MEMO: dict[str, dict] = {}


def _builtin_archs() -> set[str]:
    from lossnet.zoo.registry import _specs

    return {s.name for s in _specs()}


def attributes(arch: str, layer: str, input_size: int = 224) -> dict:
    """Architecture + layer attributes used in the correlations.

    Computed by :func:`lossnet.zoo.describe` once per process; for the built-in architectures
    also cached on disk (``$LOSSNET_HOME/describe_cache.json``). Architectures registered at run
    time are never cached on disk (a name can be re-registered with another network).
    """
    from lossnet.zoo import describe, get_spec

    spec = get_spec(arch)
    key = f"{arch}|{layer}|{input_size}"
    memo_key = f"{key}|{id(spec)}"
    if memo_key not in _ATTR_MEMO:
        on_disk = arch in _builtin_archs()
        path = _attr_cache_path()
        cache = {}
        if on_disk and path.exists():
            try:
                cache = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                cache = {}
        if "total_params" in cache.get(key, {}):  # entries written before total_params are recomputed
            d = cache[key]
        else:
            d = describe(arch, layer, input_size).as_dict()
            if on_disk:
                cache[key] = d
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, json.dumps(cache))
        _ATTR_MEMO[memo_key] = d
    d = dict(_ATTR_MEMO[memo_key])
    t = spec.table
    d.update(top1=t.top1, skip=t.skip, branch=t.branch, family=spec.family, arch_depth=t.depth,
             arch_mflops=t.mflops, arch_params=d["total_params"], arch_batchnorm=t.batchnorm,
             arch_conv1x1=t.conv1x1)
    return d


ATTRIBUTES = ("top1", "params", "params_fraction", "depth", "features", "channels", "flops", "batchnorm", "skip",
              "branch", "conv1x1", "arch_depth", "arch_mflops", "arch_params")
"""Attributes correlated per loss network. ``params``, ``params_fraction``, ``depth``, ``features``,
``channels``, ``flops`` (log10), ``batchnorm`` and ``conv1x1`` describe the network truncated at the
layer; ``top1``, ``skip``, ``branch`` and the ``arch_*`` ones the whole architecture: ``arch_depth``
and ``arch_mflops`` (log10) as the paper's Table I gives them (None for architectures not in it),
``arch_params`` counted on the full model, classifier included."""

ARCH_ATTRIBUTES = ("top1", "arch_depth", "arch_mflops", "arch_params", "arch_batchnorm", "skip", "branch",
                   "arch_conv1x1")
"""Whole-architecture attributes (Table I) correlated with each architecture's best layer
(:func:`arch_correlations`); ``arch_mflops`` as log10."""

LOG_ATTRIBUTES = ("flops", "arch_mflops")
"""Attributes correlated (and plotted) as log10."""


def cells(rows: list[dict], scores: list[Score]) -> dict[tuple[str, str], dict]:
    """``{(arch, layer): {score: value}}`` from rows, averaging repeated cells; skipped rows ignored."""
    acc: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in rows:
        if r.get("status", "ok") != "ok":
            continue
        key = (r["arch"], r["layer"])
        for s in scores:
            v = r.get(s.name)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                acc.setdefault(key, {}).setdefault(s.name, []).append(float(v))
    return {k: {s: float(np.mean(v)) for s, v in d.items()} for k, d in acc.items()}


def best_layers(table: dict, scores: list[Score]) -> dict[str, dict[str, tuple[str, float]]]:
    """Table IV: ``{score: {arch: (best layer, its score)}}``."""
    out: dict[str, dict[str, tuple[str, float]]] = {}
    archs = sorted({a for a, _ in table}, key=_arch_order)
    for s in scores:
        for a in archs:
            vals = [(l, table[(a, l)][s.name]) for l in LAYERS if (a, l) in table and s.name in table[(a, l)]]
            if vals:
                pick = max(vals, key=lambda t: t[1]) if s.higher_is_better else min(vals, key=lambda t: t[1])
                out.setdefault(s.name, {})[a] = pick
    return out


def _arch_order(a: str) -> int:
    from lossnet.zoo import list_archs

    archs = list_archs()
    return archs.index(a) if a in archs else len(archs)


def _rank(values: dict[str, float], higher_is_better: bool) -> dict[str, float]:
    """Ranks 1 (best) .. n; ties share the mean rank."""
    from scipy.stats import rankdata

    names = list(values)
    v = np.array([values[n] for n in names])
    r = rankdata(-v if higher_is_better else v, method="average")
    return dict(zip(names, r.tolist()))


def average_ranks(best: dict, scores: list[Score]) -> dict[str, dict[str, float]]:
    """Table III: ``{arch: {benchmark: mean rank over its scores, ..., "overall": mean over benchmarks}}``."""
    per_score = {s.name: _rank({a: v for a, (_, v) in best.get(s.name, {}).items()}, s.higher_is_better)
                 for s in scores if best.get(s.name)}
    out: dict[str, dict[str, float]] = {}
    benchmarks = _benchmark_order({s.benchmark for s in scores})
    for a in sorted({a for d in per_score.values() for a in d}, key=_arch_order):
        row = {}
        for b in benchmarks:
            rs = [per_score[s.name][a] for s in scores if s.benchmark == b and a in per_score.get(s.name, {})]
            if rs:
                row[b] = float(np.mean(rs))
        row["overall"] = float(np.mean([row[b] for b in benchmarks if b in row]))
        out[a] = row
    return out


def _attr_values(dicts: list[dict], a: str) -> np.ndarray:
    """Attribute ``a`` of each dict as floats (NaN where missing; log10 for :data:`LOG_ATTRIBUTES`)."""
    x = np.array([np.nan if d.get(a) is None else float(d[a]) for d in dicts])
    if a in LOG_ATTRIBUTES:
        x = np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)
    return x


def _corr(x: np.ndarray, y: np.ndarray) -> dict:
    """``n``, Pearson and Spearman r with two-sided p over the pairs where ``x`` is known; NaN with
    fewer than 3 pairs or a constant side."""
    from scipy.stats import pearsonr, spearmanr

    ok = ~np.isnan(x)
    row = {"n": int(ok.sum())}
    if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        pr, pp = pearsonr(x[ok], y[ok])
        sr, sp = spearmanr(x[ok], y[ok])
        row.update(pearson=float(pr), pearson_p=float(pp), spearman=float(sr), spearman_p=float(sp))
    else:
        row.update(pearson=float("nan"), pearson_p=float("nan"), spearman=float("nan"), spearman_p=float("nan"))
    return row


def correlations(table: dict, scores: list[Score], input_size: int = 224) -> list[dict]:
    """Pearson and Spearman coefficients and p-values of each score against each of :data:`ATTRIBUTES`.

    Every loss network (arch, layer) is one observation (whole-architecture attributes repeat over
    its layers). Scores where lower is better are kept as they are (read the sign accordingly).
    Constant attributes give NaN; loss networks without a value (e.g. Table I's depth of an
    architecture not in the paper) are left out of that attribute's ``n``.
    """
    keys = sorted(table, key=lambda k: (_arch_order(k[0]), LAYERS.index(k[1])))
    attrs = {k: attributes(k[0], k[1], input_size) for k in keys}
    out = []
    for s in scores:
        ks = [k for k in keys if s.name in table[k]]
        y = np.array([table[k][s.name] for k in ks])
        for a in ATTRIBUTES:
            out.append({"score": s.name, "attribute": a, **_corr(_attr_values([attrs[k] for k in ks], a), y)})
    return out


def arch_correlations(table: dict, scores: list[Score], input_size: int = 224) -> list[dict]:
    """Each score of an architecture's best layer (:func:`best_layers`) against its whole-architecture
    attributes (:data:`ARCH_ATTRIBUTES`: ImageNet top-1, Table I's depth and log10 MFLOPS, all
    parameters, batch norm, skip connections, branching, 1x1 convs); one observation per architecture."""
    best = best_layers(table, scores)
    out = []
    for s in scores:
        picks = best.get(s.name, {})
        archs = list(picks)
        y = np.array([picks[a][1] for a in archs])
        attrs = [attributes(a, picks[a][0], input_size) for a in archs]
        for a in ARCH_ATTRIBUTES:
            out.append({"score": s.name, "attribute": a, **_corr(_attr_values(attrs, a), y)})
    return out


def population_note(archs) -> str:
    """Which population Table III ranks: the paper's 14 architectures, some of them, or a set with
    architectures the paper does not have (whose ranks are then not comparable to its Table III)."""
    from lossnet.zoo import PAPER_ARCHS

    archs = sorted(set(archs), key=_arch_order)
    paper = [a for a in archs if a in PAPER_ARCHS]
    extra = [a for a in archs if a not in PAPER_ARCHS]
    n = len(archs)
    if not extra and len(paper) == len(PAPER_ARCHS):
        return f"Ranks among the paper's {len(PAPER_ARCHS)} architectures (as its Table III)."
    if not extra:
        return (f"Ranks among {n} of the paper's {len(PAPER_ARCHS)} architectures ({', '.join(paper)}); "
                f"the paper ranks all {len(PAPER_ARCHS)}, so ranks here (1..{n}) are not its Table III ranks.")
    return (f"Ranks among {n} architectures incl. {', '.join(extra)} (not in the paper) and {len(paper)} of the "
            f"paper's {len(PAPER_ARCHS)}; not comparable to the paper's Table III.")


def figures(table: dict, scores: list[Score], out_dir: Path, input_size: int = 224) -> list[Path]:
    """Figs. 2-5 as PNGs in ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    archs = sorted({a for a, _ in table}, key=_arch_order)
    paths = []
    n = len(scores)

    def grid(title):
        fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
        fig.suptitle(title)
        return fig, axes[0]

    fig, axes = grid("Fig. 2: score by extraction layer per architecture")
    for ax, s in zip(axes, scores):
        for a in archs:
            xs = [i for i, l in enumerate(LAYERS) if (a, l) in table and s.name in table[(a, l)]]
            ax.plot(xs, [table[(a, LAYERS[i])][s.name] for i in xs], marker="o", label=a)
        ax.set_xticks(range(4), LAYERS)
        ax.set_title(s.name + (" (higher better)" if s.higher_is_better else " (lower better)"), fontsize=9)
    axes[-1].legend(fontsize=7, loc="best")
    paths.append(_save(fig, out_dir / "fig2_layers.png"))

    fig, axes = grid("Fig. 3: score grouped by extraction layer")
    for ax, s in zip(axes, scores):
        data = [[table[(a, l)][s.name] for a in archs if (a, l) in table and s.name in table[(a, l)]] for l in LAYERS]
        ax.boxplot([d if d else [np.nan] for d in data], tick_labels=list(LAYERS))
        for i, d in enumerate(data):
            ax.scatter([i + 1] * len(d), d, s=12, alpha=0.6)
        ax.set_title(s.name, fontsize=9)
    paths.append(_save(fig, out_dir / "fig3_grouped.png"))

    fig, axes = grid("Fig. 4: score vs log10 FLOPs of the truncated network")
    for ax, s in zip(axes, scores):
        for a in archs:
            pts = [(math.log10(attributes(a, l, input_size)["flops"]), table[(a, l)][s.name]) for l in LAYERS
                   if (a, l) in table and s.name in table[(a, l)]]
            if pts:
                ax.scatter(*zip(*pts), label=a)
        ax.set_xlabel("log10 FLOPs")
        ax.set_title(s.name, fontsize=9)
    axes[-1].legend(fontsize=7)
    paths.append(_save(fig, out_dir / "fig4_flops.png"))

    from lossnet.zoo import get_spec

    best = best_layers(table, scores)
    fig, axes = grid("Fig. 5: best layer's score vs ImageNet top-1")
    for ax, s in zip(axes, scores):
        for a, (l, v) in best.get(s.name, {}).items():
            t = get_spec(a).table.top1
            if t is not None:
                ax.scatter(t, v)
                ax.annotate(f"{a}:{l}", (t, v), fontsize=7)
        ax.set_xlabel("ImageNet top-1 (%)")
        ax.set_title(s.name, fontsize=9)
    paths.append(_save(fig, out_dir / "fig5_top1.png"))

    whole = (("arch_depth", "depth (Table I)"), ("arch_mflops", "log10 MFLOPS (Table I)"),
             ("arch_params", "log10 parameters"))
    fig, axes = plt.subplots(n, len(whole), figsize=(4.2 * len(whole), 3.4 * n), squeeze=False)
    fig.suptitle("Fig. 5b: best layer's score vs whole-architecture attributes")
    for row, s in zip(axes, scores):
        for ax, (attr, label) in zip(row, whole):
            for a, (l, v) in best.get(s.name, {}).items():
                x = attributes(a, l, input_size).get(attr)
                if x is not None and x > 0:
                    x = math.log10(x) if attr != "arch_depth" else x
                    ax.scatter(x, v)
                    ax.annotate(f"{a}:{l}", (x, v), fontsize=7)
            ax.set_xlabel(label)
            ax.set_title(s.name, fontsize=9)
    paths.append(_save(fig, out_dir / "fig5b_arch.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        return atomic_write(path, lambda t: fig.savefig(t, format=path.suffix.lstrip(".") or "png", dpi=100))
    finally:
        plt.close(fig)


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def score_correlations(table: dict, scores: list[Score]) -> list[dict]:
    """Pearson and Spearman correlation between every pair of scores over the loss networks that
    have both (the paper's "task-independent trends"); NaN with fewer than 3 or constant values."""
    from scipy.stats import pearsonr, spearmanr

    out = []
    for i, a in enumerate(scores):
        for b in scores[i + 1:]:
            ks = [k for k in table if a.name in table[k] and b.name in table[k]]
            x = np.array([table[k][a.name] for k in ks])
            y = np.array([table[k][b.name] for k in ks])
            row = {"score_a": a.name, "score_b": b.name, "n": len(ks)}
            if len(ks) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                pr, pp = pearsonr(x, y)
                sr, sp = spearmanr(x, y)
                row.update(pearson=float(pr), pearson_p=float(pp), spearman=float(sr), spearman_p=float(sp))
            else:
                row.update(pearson=float("nan"), pearson_p=float("nan"), spearman=float("nan"), spearman_p=float("nan"))
            out.append(row)
    return out


def _md_cell(text: str) -> str:
    """Text safe inside a markdown table cell (pipes escaped, newlines flattened)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def analysis_markdown(rows: list[dict], scores: list[Score], out_dir: Path, input_size: int = 224, *,
                      md_dir: Path | None = None) -> str:
    """The whole cross-analysis as markdown; figures are written to ``out_dir``.

    Args:
        rows: result rows with ``arch``, ``layer`` (E/S/M/L), ``status`` (``"ok"`` default, or
            ``"skipped"`` with ``reason``) and score columns; repeated cells are averaged.
        scores: the score columns to analyse; those without any value are left out.
        out_dir: where Figs. 2-5 go (PNG).
        input_size: image side for the computed attributes (FLOPs, features, ...).
        md_dir: the directory the markdown will be saved in, for relative figure links
            (default ``out_dir``).
    """
    out_dir = Path(out_dir)
    md_dir = Path(md_dir) if md_dir is not None else out_dir
    table = cells(rows, scores)
    scores = [s for s in scores if any(s.name in v for v in table.values())]
    lines = ["# Cross-analysis of loss networks", ""]
    ok_keys = set(table)
    skipped = [r for r in rows if r.get("status") == "skipped" and (r.get("arch"), r.get("layer")) not in ok_keys]
    if not table:
        lines.append("No finished cells yet.")
    else:
        best = best_layers(table, scores)
        ranks = average_ranks(best, scores)
        benchmarks = _benchmark_order({s.benchmark for s in scores})
        lines += ["Scores: " + ", ".join(f"`{s.name}` ({s.benchmark}, {'higher' if s.higher_is_better else 'lower'} "
                                         f"is better)" for s in scores) + ".", "",
                  "## Table III: average rank of each architecture's best layer (1 = best)", "",
                  population_note(ranks), "",
                  "For each score the architectures are ranked by their best layer's value (ties share the mean "
                  "rank); ranks are averaged per benchmark, and `overall` weights each benchmark equally.", "",
                  "| architecture | " + " | ".join(benchmarks) + " | overall |",
                  "| --- | " + " | ".join("---:" for _ in benchmarks) + " | ---: |"]
        for a, r in sorted(ranks.items(), key=lambda t: t[1]["overall"]):
            lines.append(f"| {a} | " + " | ".join(_fmt(r[b]) if b in r else "-" for b in benchmarks) +
                         f" | {_fmt(r['overall'])} |")
        lines += ["", "## Table IV: best extraction layer per architecture and score", "",
                  "| architecture | " + " | ".join(s.name for s in scores) + " |",
                  "| --- | " + " | ".join("---" for _ in scores) + " |"]
        for a in sorted({a for a, _ in table}, key=_arch_order):
            cells_ = [f"{best[s.name][a][0]} ({_fmt(best[s.name][a][1])})" if a in best.get(s.name, {}) else "-"
                      for s in scores]
            lines.append(f"| {a} | " + " | ".join(cells_) + " |")
        lines += ["", "## All cells", "", "| architecture | layer | " + " | ".join(s.name for s in scores) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in scores) + " |"]
        for (a, l) in sorted(table, key=lambda k: (_arch_order(k[0]), LAYERS.index(k[1]))):
            lines.append(f"| {a} | {l} | " + " | ".join(_fmt(table[(a, l)].get(s.name, float('nan'))) for s in scores)
                         + " |")
        corr = correlations(table, scores, input_size)
        corr_head = ["| score | attribute | n | Pearson r | p | Spearman rho | p |",
                     "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]

        def corr_lines(rows_):
            return [f"| {c['score']} | {c['attribute']} | {c['n']} | {_fmt(c['pearson'])} | "
                    f"{format_p(c['pearson_p'], c['n'])} | {_fmt(c['spearman'])} | {format_p(c['spearman_p'], c['n'])} |"
                    for c in rows_]

        lines += ["", "## Correlations with architecture / layer attributes", "",
                  f"One observation per loss network. `params`, `params_fraction`, `depth`, `features`, `channels`, "
                  f"`flops` (log10 at {input_size}x{input_size}), `batchnorm` and `conv1x1` describe the network "
                  "truncated at the layer; `top1`, `skip`, `branch` and `arch_*` the whole architecture "
                  "(`arch_depth`, `arch_mflops` (log10): the paper's Table I, absent for architectures it does not "
                  "have; `arch_params`: all parameters of the full model). p-values are two-sided; tiny ones read "
                  "`< 1e-k`, and `(n = k)` marks those over fewer than 10 loss networks. Scores where "
                  "lower is better keep their sign (read a negative r as 'better').", ""] + corr_head + corr_lines(corr)
        lines += ["", "## Correlations of the best layer with whole-architecture attributes (Table I)", "",
                  "One observation per architecture: its best layer's score (Table IV) against ImageNet top-1, "
                  "Table I's depth and log10 MFLOPS, all parameters, batch norm, skip connections, branching and "
                  "1x1 convolutions of the whole architecture (the paper: 'the total depth and number of parameters "
                  "of a model do not affect its downstream performance as a loss network').", ""]
        lines += corr_head + corr_lines(arch_correlations(table, scores, input_size))
        pairs = score_correlations(table, scores)
        if pairs:
            lines += ["", "## Correlations between scores", "",
                      "| score | score | n | Pearson r | p | Spearman rho | p |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
            for c in pairs:
                lines.append(f"| {c['score_a']} | {c['score_b']} | {c['n']} | {_fmt(c['pearson'])} | "
                             f"{format_p(c['pearson_p'], c['n'])} | {_fmt(c['spearman'])} | "
                             f"{format_p(c['spearman_p'], c['n'])} |")
        paths = figures(table, scores, out_dir, input_size)
        lines += ["", "## Figures", ""] + [f"![{p.stem}]({os.path.relpath(p, md_dir)})" for p in paths]
    if skipped:
        by_arch: dict[str, tuple[list[str], str]] = {}
        for r in skipped:
            layers, reason = by_arch.setdefault(r["arch"], ([], r.get("reason") or ""))
            if r["layer"] not in layers:
                layers.append(r["layer"])
        lines += ["", "## Skipped cells", "", "| architecture | layers | reason |", "| --- | --- | --- |"]
        for a in sorted(by_arch, key=_arch_order):
            layers, reason = by_arch[a]
            lines.append(f"| {a} | {','.join(sorted(layers, key=lambda l: LAYERS.index(l) if l in LAYERS else 9))} | "
                         f"{_md_cell(reason)} |")
    return "\n".join(lines) + "\n"
