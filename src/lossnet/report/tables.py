"""Markdown tables from the tidy results table (``results.jsonl`` rows).

Aggregation over repeats: mean and *uncorrected* sample standard deviation (``ddof = 0``), as the
thesis states for Figs. 6-8 ("the mean and uncorrected sample standard deviation").

* :func:`paper_b_markdown` -- per procedure x z: test score and epoch time (mean ± std, n), total
  training time, and the Table 2 analogue (each procedure at its best z).
* :func:`paper_a_markdown` -- Tables II-IV (MLP probes) and V-VII (linear regressor) analogues:
  score per z x model (AE, VAE, P. AE, P. VAE) plus the "Any" row (best z), and Table VIII
  (reconstruction after decoder retraining).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

__all__ = [
    "PROCEDURE_ORDER",
    "MODEL_ORDER",
    "load_rows",
    "mean_std",
    "md_table",
    "group_rows",
    "fmt_value",
    "paper_a_markdown",
    "paper_b_markdown",
    "table8",
]

PROCEDURE_ORDER = ("I-I-PW", "I-I-PS", "F-I-PW", "F-I-PS", "I-F-FP", "F-F-FP")
MODEL_ORDER = ("AE-PW", "VAE-PW", "AE-PS", "VAE-PS")
BASELINE_LABELS = {"simple_cnn": "Simple CNN"}
MODEL_LABELS = {"AE-PW": "AE", "VAE-PW": "VAE", "AE-PS": "P. AE", "VAE-PS": "P. VAE"}
DATASET_LABELS = {"lunarlander": "LunarLander", "stl10": "STL-10", "svhn": "SVHN"}
# paper A table numbers: (MLP, linear) per dataset
PAPER_A_TABLES = {"lunarlander": ("II", "V"), "stl10": ("III", "VI"), "svhn": ("IV", "VII")}


def load_rows(path: str | Path, required: Sequence[str] = ()) -> list[dict]:
    """Rows of ``results.jsonl`` (a run directory or the file itself), one per distinct cell id.

    Read by :func:`lossnet.utils.read_jsonl`: a torn last line (a crash mid-write) is skipped.
    Rows repeating an earlier row's ``cell_id`` (two commands that computed the same cell) are dropped, so aggregates count distinct repeats.
    A line that is not valid UTF-8 JSON, not an object, or lacks a key of ``required``, is a
    :class:`~lossnet.errors.UserError` naming the file and line.
    """
    from lossnet.utils import read_jsonl

    p = Path(path)
    if p.is_dir():
        p = p / "results.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"no results table at {p}; run `lossnet run EXPERIMENT out={p.parent}` first")
    rows, seen = [], set()
    for row in read_jsonl(p, required=required):
        cid = row.get("cell_id")
        if cid is not None:
            if cid in seen:
                continue
            seen.add(cid)
        rows.append(row)
    return rows


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, uncorrected standard deviation (divide by n) and n of the finite values."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan"), 0
    m = sum(v) / len(v)
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / len(v)), len(v)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def group_rows(rows: Iterable[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys`` (insertion order kept)."""
    g: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        g[tuple(r.get(k) for k in keys)].append(r)
    return dict(g)


def fmt_value(metric: str, x: float, *, percent: bool = False) -> str:
    """A score in its units: position error in pixels (2 decimals); accuracy as a fraction
    (3 decimals) or a percentage (1 decimal)."""
    if x is None or not math.isfinite(x):
        return "–"
    if metric == "accuracy":
        return f"{100 * x:.1f}%" if percent else f"{x:.3f}"
    return f"{x:.2f}"


def _ms(metric: str, vals: Sequence[float], *, percent: bool = False, show_n: bool = False,
        std: bool = True) -> str:
    m, s, n = mean_std(vals)
    if n == 0:
        return "–"
    txt = fmt_value(metric, m, percent=percent)
    if std and n > 1:
        txt += f" ± {fmt_value(metric, s, percent=percent)}"
    if show_n:
        txt += f" (n={n})"
    return txt


def _secs(vals: Sequence[float]) -> str:
    m, s, n = mean_std(vals)
    if n == 0:
        return "–"
    return f"{m:.2f} ± {s:.2f}" if n > 1 else f"{m:.2f}"


def _better(metric_higher: bool) -> Callable[[float, float], bool]:
    return (lambda a, b: a > b) if metric_higher else (lambda a, b: a < b)


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    vals = list(dict.fromkeys(values))
    return [v for v in order if v in vals] + [v for v in vals if v not in order]


def _metric_words(metric: str) -> str:
    return ("mean Euclidean distance between predicted and true lander position, pixels (lower is better)"
            if metric == "position_error" else "classification accuracy (higher is better)")


def _n_note(rows: Sequence[dict], key: str) -> str:
    ns = {len(v) for v in group_rows(rows, [key, "z"]).values()}
    if len(ns) == 1:
        n = ns.pop()
        return f"n = {n} repeat{'s' if n != 1 else ''} per cell"
    return f"n = {min(ns)}-{max(ns)} repeats per cell (an unfinished sweep)"


# --------------------------------------------------------------------------------------------
# Paper B
# --------------------------------------------------------------------------------------------


def paper_b_markdown(rows: Sequence[dict]) -> str:
    """Paper B tables for the rows of one dataset and setting. Baseline rows (``baseline`` set:
    the Simple CNN of thesis Table 2) are left out of the per-procedure tables and shown as their
    own row of the Table 2 analogue."""
    base = [r for r in rows if r.get("baseline")]
    rows = [r for r in rows if not r.get("baseline")]
    if not rows:
        return _baseline_only(base)
    metric = rows[0]["metric"]
    higher = bool(rows[0]["higher_is_better"])
    procs = _ordered((r["procedure"] for r in rows), PROCEDURE_ORDER)
    zs = sorted({int(r["z"]) for r in rows})
    by = group_rows(rows, ["procedure", "z"])
    out = [f"Metric: {_metric_words(metric)}. Mean ± uncorrected std over repeats; {_n_note(rows, 'procedure')}."]

    out.append("\n**Test score per procedure and z** (selected probe = lowest validation loss of the grid)\n")
    out.append(md_table(["procedure"] + [f"z={z}" for z in zs],
                        [[p] + [_ms(metric, [r["test_score"] for r in by.get((p, z), [])]) for z in zs]
                         for p in procs]))

    out.append("\n**Training time per epoch (s)** (training pass only; Figs. 6-8 x axis)\n")
    out.append(md_table(["procedure"] + [f"z={z}" for z in zs],
                        [[p] + [_secs([r["epoch_seconds"] for r in by.get((p, z), [])]) for z in zs]
                         for p in procs]))

    out.append("\n**Total training time (s)** (all epochs run, training passes; and up to the best "
               "validation epoch)\n")
    out.append(md_table(["procedure"] + [f"z={z} total" for z in zs] + [f"z={z} to best" for z in zs],
                        [[p] + [_secs([r["train_seconds"] for r in by.get((p, z), [])]) for z in zs]
                         + [_secs([r.get("time_to_best_seconds") for r in by.get((p, z), [])]) for z in zs]
                         for p in procs]))

    # Table 2 analogue: each procedure at its best z (by mean test score) + all z pooled
    better = _better(higher)
    t2 = []
    for p in procs:
        best_z, best_m = None, None
        for z in zs:
            m, _, n = mean_std(r["test_score"] for r in by.get((p, z), []))
            if n and (best_m is None or better(m, best_m)):
                best_z, best_m = z, m
        sel = by.get((p, best_z), [])
        pooled = [r["test_score"] for r in rows if r["procedure"] == p]
        t2.append([p, best_z, _ms(metric, [r["test_score"] for r in sel], show_n=True),
                   _secs([r["epoch_seconds"] for r in sel]), _ms(metric, pooled, show_n=True)])
    for (name,), g in group_rows(base, ["baseline"]).items():
        label = BASELINE_LABELS.get(name, name)
        t2.append([f"{label} (z={g[0]['z']}, end to end)", "–", _ms(metric, [r["test_score"] for r in g], show_n=True),
                   _secs([r["epoch_seconds"] for r in g]), "–"])
    out.append("\n**Table 2 analogue** (each procedure at its best z by mean test score; and pooled over all z"
               + ("; the Simple CNN trained end to end on the labels" if base else "") + ")\n")
    out.append(md_table(["procedure", "best z", "test score", "s / epoch", "all z pooled"], t2))
    return "\n".join(out)


def _baseline_only(base: Sequence[dict]) -> str:
    metric = base[0]["metric"]
    body = [[f"{BASELINE_LABELS.get(n, n)} (z={g[0]['z']}, end to end)",
             _ms(metric, [r["test_score"] for r in g], show_n=True), _secs([r["epoch_seconds"] for r in g])]
            for (n,), g in group_rows(base, ["baseline"]).items()]
    return (f"Metric: {_metric_words(metric)}.\n\n**Table 2 analogue** (baseline only)\n\n"
            + md_table(["model", "test score", "s / epoch"], body))


# --------------------------------------------------------------------------------------------
# Paper A
# --------------------------------------------------------------------------------------------


def _score_table(rows: Sequence[dict], key: str, metric: str, higher: bool) -> str:
    models = _ordered((r["model"] for r in rows), MODEL_ORDER)
    zs = sorted({int(r["z"]) for r in rows})
    by = group_rows(rows, ["model", "z"])
    better = _better(higher)
    body = []
    for z in zs:
        body.append([z] + [_ms(metric, [r.get(key) for r in by.get((m, z), [])], percent=True) for m in models])
    anyrow = ["Any"]
    for m in models:
        best = None
        for z in zs:
            mu, _, n = mean_std(r.get(key) for r in by.get((m, z), []))
            if n and (best is None or better(mu, best)):
                best = mu
        anyrow.append(fmt_value(metric, best, percent=True) if best is not None else "–")
    body.append(anyrow)
    return md_table(["z"] + [MODEL_LABELS.get(m, m) for m in models], body)


def table8(rows: Sequence[dict]) -> list[dict]:
    """Table VIII per dataset: for each model type the lowest reconstruction error over z
    (``recon_rel_l1``, mean over repeats), and relative to the best model of the dataset.

    Returns dicts ``{dataset, model, z, rel_l1, scaled (L1 / min L1; thesis Table 2.2),
    performance (min L1 / L1; paper A Table VIII)}``.
    """
    out = []
    for (ds,), drows in group_rows([r for r in rows if r.get("recon_rel_l1") is not None], ["dataset"]).items():
        best: dict[str, tuple[float, int]] = {}
        for (m, z), g in group_rows(drows, ["model", "z"]).items():
            mu, _, n = mean_std(r["recon_rel_l1"] for r in g)
            if n and (m not in best or mu < best[m][0]):
                best[m] = (mu, int(z))
        if not best:
            continue
        lo = min(v[0] for v in best.values())
        for m in _ordered(best, MODEL_ORDER):
            e, z = best[m]
            out.append({"dataset": ds, "model": m, "z": z, "rel_l1": e, "scaled": e / lo if lo > 0 else float("nan"),
                        "performance": lo / e if e > 0 else float("nan")})
    return out


def paper_a_markdown(rows: Sequence[dict]) -> str:
    """Paper A tables (II-VIII analogues) for the rows of one dataset and setting."""
    metric = rows[0]["metric"]
    higher = bool(rows[0]["higher_is_better"])
    ds = rows[0]["dataset"]
    mlp_no, lin_no = PAPER_A_TABLES.get(ds, ("?", "?"))
    unit = "average test distance error in pixels" if metric == "position_error" else "test accuracy"
    reps = {len(v) for v in group_rows(rows, ["model", "z"]).values()}
    note = "" if reps == {1} else f" Mean ± uncorrected std over {'/'.join(map(str, sorted(reps)))} repeats."
    out = [f"Metric: {_metric_words(metric)}.{note} \"Any\" = the best z of each model."]
    out.append(f"\n**Table {mlp_no} analogue**: {unit} for the MLPs with lowest validation loss\n")
    out.append(_score_table(rows, "test_score", metric, higher))
    out.append(f"\n**Table {lin_no} analogue**: {unit} for the linear regressors with lowest validation loss\n")
    out.append(_score_table(rows, "linear_score", metric, higher))
    t8 = table8(rows)
    if t8:
        out.append("\n**Table VIII analogue**: reconstruction after retraining a fresh decoder on the frozen "
                   "encoder with pixel-wise MSE; best z per model by test relative L1 error "
                   "(sum|x - x̂| / sum|x|). *performance* = lowest error / error (paper A's percentages); "
                   "*scaled* = error / lowest error (thesis Table 2.2)\n")
        models = [t["model"] for t in t8]
        cols = ["", *[MODEL_LABELS.get(m, m) for m in models]]
        out.append(md_table(cols, [
            ["performance", *[f"{100 * t['performance']:.0f}%" for t in t8]],
            ["scaled L1", *[f"{t['scaled']:.2f}" for t in t8]],
            ["relative L1 error", *[f"{t['rel_l1']:.4f}" for t in t8]],
            ["z", *[t["z"] for t in t8]],
        ]))
    by = group_rows(rows, ["model", "z"])
    models = _ordered((r["model"] for r in rows), MODEL_ORDER)
    zs = sorted({int(r["z"]) for r in rows})
    out.append("\n**Autoencoder training time per epoch (s)**\n")
    out.append(md_table(["z"] + [MODEL_LABELS.get(m, m) for m in models],
                        [[z] + [_secs([r["epoch_seconds"] for r in by.get((m, z), [])]) for m in models]
                         for z in zs]))
    return "\n".join(out)
