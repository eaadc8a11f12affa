"""PNG figures from results rows (matplotlib, Agg backend; no display needed).

* :func:`performance_vs_time` -- thesis Figs. 6-8: test score against training time, one colour and
  marker per procedure, one point per z (labelled), error bars = uncorrected std over repeats in
  both directions. ``time_key="epoch_seconds"`` (the thesis' x axis) or ``"train_seconds"`` /
  ``"time_to_best_seconds"`` (total time, the convergence-aware view).
* :func:`convergence` -- thesis Fig. 9: validation loss per epoch scaled so every run is 1 after
  its first epoch, averaged over repeats, one line per procedure, at one z.
* :func:`score_vs_z` -- paper A: score against z per model, MLP (solid) and linear (dashed).
* :func:`image_grid` -- image crops side by side (e.g. super-resolution input / outputs / target);
  :func:`save_png` writes the images such figures are built from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lossnet.report.tables import (
    MODEL_LABELS,
    MODEL_ORDER,
    PROCEDURE_ORDER,
    _ordered,
    group_rows,
    mean_std,
)
from lossnet.utils import atomic_write

__all__ = ["performance_vs_time", "convergence", "score_vs_z", "scaled_val_curves", "image_grid", "save_png"]

_STYLE = {"I-I-PW": ("tab:blue", "o"), "I-I-PS": ("tab:orange", "s"), "F-I-PW": ("tab:green", "^"),
          "F-I-PS": ("tab:red", "v"), "I-F-FP": ("tab:purple", "*"), "F-F-FP": ("tab:brown", "D"),
          "AE-PW": ("tab:blue", "o"), "VAE-PW": ("tab:green", "^"), "AE-PS": ("tab:orange", "s"),
          "VAE-PS": ("tab:red", "v")}
_TIME_LABELS = {"epoch_seconds": "training time per epoch (s)",
                "train_seconds": "total training time, all epochs (s)",
                "time_to_best_seconds": "training time to the best validation epoch (s)",
                "total_seconds": "total training + validation time (s)"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def MaxNLocator(**kw):  # noqa: N802 - matplotlib's class, imported lazily
    from matplotlib.ticker import MaxNLocator as _M

    return _M(**kw)


def _ylabel(metric: str) -> str:
    return "test position error (px, lower is better)" if metric == "position_error" else "test accuracy"


def performance_vs_time(rows: Sequence[dict], path: str | Path, *, time_key: str = "epoch_seconds",
                        title: str | None = None) -> Path:
    """Scatter of mean test score vs mean ``time_key`` per (procedure, z) with std error bars."""
    plt = _plt()
    metric = rows[0]["metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    key = "procedure"
    for p in _ordered((r[key] for r in rows), PROCEDURE_ORDER):
        color, marker = _STYLE.get(p, (None, "o"))
        pts = []
        for (z,), g in sorted(group_rows([r for r in rows if r[key] == p], ["z"]).items()):
            xm, xs, _ = mean_std(r.get(time_key) for r in g)
            ym, ys, _ = mean_std(r["test_score"] for r in g)
            pts.append((z, xm, xs, ym, ys))
        if not pts:
            continue
        ax.errorbar([q[1] for q in pts], [q[3] for q in pts], xerr=[q[2] for q in pts], yerr=[q[4] for q in pts],
                    fmt=marker, color=color, ms=8 if marker != "*" else 12, capsize=3, label=p,
                    mec="black" if p == "I-F-FP" else None)
        for z, xm, _, ym, _ in pts:
            ax.annotate(f"{z}", (xm, ym), textcoords="offset points", xytext=(5, 4), fontsize=7, color=color)
    ax.set_xlabel(_TIME_LABELS.get(time_key, time_key))
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(title or f"{rows[0]['dataset']}: performance vs training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="procedure (labels: z)", title_fontsize=8)
    return _save(fig, path)


def scaled_val_curves(rows: Sequence[dict]) -> dict[str, list[float]]:
    """Per procedure: validation loss per epoch divided by the first epoch's, averaged over repeats
    (epochs run by only some repeats are averaged over those)."""
    curves: dict[str, list[float]] = {}
    for (p,), g in group_rows(rows, ["procedure"]).items():
        runs = []
        for r in g:
            h = [e.get("val_loss") for e in r.get("history") or []]
            if h and h[0] not in (None, 0):
                runs.append([v / h[0] if v is not None else None for v in h])
        if not runs:
            continue
        n = max(len(x) for x in runs)
        curves[p] = [mean_std(x[i] for x in runs if i < len(x))[0] for i in range(n)]
    return curves


def convergence(rows: Sequence[dict], path: str | Path, *, z: int | None = None, title: str | None = None) -> Path:
    """Fig. 9: scaled validation loss per epoch, one line per procedure, at ``z`` (default smallest)."""
    plt = _plt()
    zs = sorted({int(r["z"]) for r in rows})
    z = int(z) if z is not None and int(z) in zs else zs[0]
    sel = [r for r in rows if int(r["z"]) == z]
    curves = scaled_val_curves(sel)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for p in _ordered(curves, PROCEDURE_ORDER):
        color, marker = _STYLE.get(p, (None, "o"))
        ys = curves[p]
        ax.plot(range(1, len(ys) + 1), ys, color=color, marker=marker, ms=4, label=p,
                lw=2.2 if p == "I-F-FP" else 1.4)
    ax.axhline(1.0, color="gray", lw=0.6, ls=":")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation loss / validation loss after epoch 1")
    n = len(group_rows(sel, ["repeat"]))
    ax.set_title(title or f"{rows[0]['dataset']}: convergence, z = {z} (mean of {n} repeat{'s' if n != 1 else ''})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def score_vs_z(rows: Sequence[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Paper A: test score vs z per model; MLP probes solid, linear regressors dashed."""
    plt = _plt()
    metric = rows[0]["metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for m in _ordered((r["model"] for r in rows), MODEL_ORDER):
        color, marker = _STYLE.get(m, (None, "o"))
        g = group_rows([r for r in rows if r["model"] == m], ["z"])
        zs = sorted(z for (z,) in g)
        for key, ls, suffix in (("test_score", "-", "MLP"), ("linear_score", "--", "linear")):
            ys = [mean_std(r.get(key) for r in g[(z,)])[0] for z in zs]
            ax.plot(zs, ys, ls=ls, marker=marker, color=color, label=f"{MODEL_LABELS.get(m, m)} ({suffix})")
    ax.set_xscale("log", base=2)
    all_z = sorted({int(r["z"]) for r in rows})
    ax.set_xticks(all_z, [str(z) for z in all_z])
    ax.minorticks_off()
    ax.set_xlabel("z (embedding size)")
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(title or f"{rows[0]['dataset']}: paper A models")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def save_png(img, path: str | Path) -> Path:
    """Write a uint8 image tensor, (3, H, W) or (H, W), as PNG (atomically, creating folders)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (img.permute(1, 2, 0) if img.ndim == 3 else img).cpu().numpy()
    return atomic_write(path, lambda t: Image.fromarray(arr).save(t, format="PNG"))


def image_grid(rows: Sequence[Sequence[tuple[str, object]]], path: str | Path, *, row_labels: Sequence[str] = (),
               title: str | None = None, cell_inches: float = 1.8) -> Path:
    """Images in a grid, one row per example: ``rows[i] = [(column title, uint8 (3, H, W) tensor
    or None), ...]`` (None leaves the cell empty). Column titles are drawn on the first row."""
    import numpy as np

    plt = _plt()
    n_r, n_c = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_r, n_c, figsize=(cell_inches * n_c, cell_inches * n_r + (0.4 if title else 0)),
                             squeeze=False)
    for i, r in enumerate(rows):
        for j in range(n_c):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(r):
                ax.axis("off")
                continue
            label, img = r[j]
            if img is not None:
                ax.imshow(np.asarray(img.permute(1, 2, 0)), interpolation="nearest")
            else:
                ax.axis("off")
            if i == 0:
                ax.set_title(label, fontsize=7)
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lay out, write (creating folders) and close a figure; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return atomic_write(path, lambda t: fig.savefig(t, format=path.suffix.lstrip(".") or "png", dpi=120))
    finally:
        plt.close(fig)


def reconstructions(rows: Sequence[dict], run_dir: str | Path, path: str | Path, *, z: int | None = None,
                    n: int = 4, title: str | None = None) -> Path | None:
    """Paper A Fig. 5: original test images and their reconstructions by every model of one z
    (default: the smallest z with a pixel-wise and a perceptual autoencoder), before (the
    autoencoder's own decoder) and after retraining the decoder with pixel-wise loss. Reads the
    ``recon_examples`` files of the rows (repeat 0 where present); one row of the grid per test
    image, columns "Original", then "<model>" / "<model> retrained" in paper A's model order.
    Returns None when no row has reconstructions."""
    import numpy as np
    import torch

    have = [r for r in rows if r.get("recon_examples")]
    if not have:
        return None
    zs = sorted({int(r["z"]) for r in have})
    if z is None:
        both = [zz for zz in zs if {"pw", "ps"} <= {r.get("loss") for r in have if int(r["z"]) == zz}]
        z = (both or zs)[0]
    picked: dict[str, dict] = {}
    for r in sorted(have, key=lambda r: int(r.get("repeat", 0))):
        if int(r["z"]) == z and r["model"] not in picked:
            picked[r["model"]] = r
    models = _ordered(picked, MODEL_ORDER)
    arrays = {}
    for m in models:
        with np.load(Path(run_dir) / picked[m]["recon_examples"]) as f:
            arrays[m] = {k: torch.from_numpy(f[k]) for k in ("original", "before", "after")}
    k = min(n, *(len(a["original"]) for a in arrays.values()))
    grid = []
    for i in range(k):
        row = [("Original", arrays[models[0]]["original"][i])]
        for m in models:
            label = picked[m].get("model_label") or m
            row += [(label, arrays[m]["before"][i]), (f"{label} retrained", arrays[m]["after"][i])]
        grid.append(row)
    return image_grid(grid, path, title=title or f"Reconstructions (z={z}): before / after decoder retraining")
