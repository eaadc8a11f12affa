"""Benchmark 3 (systematic analysis, Sec. IV-C): delineation with a topology-aware loss.

One cell = one loss network (architecture ``arch`` truncated at extraction layer ``layer`` in
E/S/M/L, no sigmoid, ImageNet normalisation) used as the topology loss of Mosinska et al.
(CVPR 2018, "Beyond the pixel-wise loss for topology-aware delineation"):

1. a U-Net (:class:`~lossnet.models.unet.UNet`) applied iteratively ``iterations`` (3) times
   (:class:`~lossnet.models.unet.IterativeUNet`: iteration k sees the image and the probability
   map of iteration k-1, a blank map at k = 1; gradients flow through all iterations unless
   ``detach=true``) is trained with ``L = L_bce + mu * L_top`` (Eq. 4, ``mu = 0.01``) per
   iteration, where ``L_top`` is the feature reconstruction loss of Eq. 5 between the loss
   network's features of the predicted probability map and of the ground-truth map (both
   repeated to 3 channels); the iterations' losses are combined with ``iteration_weights``:
   ``linear`` (Mosinska: ``sum_k k L_k / sum_k k``, later iterations weigh more; default),
   ``uniform`` or ``last`` (final iteration only);
2. the epoch with the best validation quality (``validation=quality``, default; ``loss``: the
   training loss on the validation part) is kept;
3. the scores are completeness, correctness and quality (Wiedemann et al. 1998,
   :mod:`lossnet.eval.delineation`: thresholded at 0.5, thinned, tolerance 3 px, counts summed
   over the test set) of the last iteration on the test set.

A cell without a loss network (``loss_net=None``) is the BCE-only baseline (``mu`` ignored);
:func:`run_baseline_and_topology` runs both.

Data: ``dataset=massachusetts`` (the paper: the Massachusetts Roads Dataset, official
train/valid/test splits, 300 x 300 tiles resized to 224 x 224, :func:`~lossnet.data.roads.
load_massachusetts_roads`) or ``dataset=synthetic`` (:func:`~lossnet.data.roads.
synthetic_curvilinear`: a seeded training set, 80/20 train/validation, and a separate test set
drawn with another seed). The data are built once per run directory and cached in
``<out>/data/delineation-<hash>.pt`` (:func:`prepare`).

Paper scale: MRD, 224 x 224, U-Net base 64 / depth 4 (Ronneberger), 100 epochs. Quick scale: a
small synthetic road set at 96 x 96, U-Net base 8 / depth 3, 10 epochs (docs/delineation.md has
the timings and measured scores).

Entry points: :func:`delineation_cell` (one cell, from Python), :func:`run_baseline_and_topology`,
and the sweep (:mod:`lossnet.benchmarks.sweep`) through :data:`DEFAULTS`, :func:`scores`,
:func:`check`, :func:`identity`, :func:`prepare` and :func:`run_cell`.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lossnet.benchmarks.base import Benchmark, register_benchmark, single_layer_cell
from lossnet.benchmarks.delineation_task import DelineationTask, evaluate_iterations, loss_magnitudes, predict
from lossnet import distributed
from lossnet.config import read_text, typed
from lossnet.errors import ConfigError
from lossnet.schema import identity as identity_of
from lossnet.schema.files import Massachusetts, Synthetic, UNet
from lossnet.schema.sections import Fit
from lossnet.utils import load_torch, save_torch, stable_hash

NAME = "delineation"

SCORE_NAMES = ("completeness", "correctness", "quality")


DEFAULTS = read_text("delineation")
"""The defaults: ``configs/delineation.yaml``."""


def load_defaults(scale: str = "quick") -> DictConfig:
    """:data:`DEFAULTS` with ``scales.<scale>`` merged in (presets removed)."""
    from lossnet.config import scaled_defaults

    return scaled_defaults(DEFAULTS, scale)


def _typed(cfg):
    """The settings as :class:`lossnet.schema.files.Benchmark3` (values typed; an instance as it is)."""
    return typed(NAME, cfg)


def scores(cfg) -> list:
    """The three :class:`~lossnet.report.analysis.Score` columns (fractions, higher is better)."""
    from lossnet.report.analysis import Score

    return [Score(n, NAME, True) for n in SCORE_NAMES]


def check(cfg) -> None:
    """Validate the benchmark-3 settings: the schema's ranges and choices (:func:`lossnet.config.validate`),
    then what it cannot say: the U-Net's depth against the image size, enough training images."""
    from lossnet.config import validate

    validate(NAME, cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg))
    cfg = _typed(cfg)
    size, depth = cfg.size, cfg.unet.depth
    if not 1 <= depth <= 6:
        raise ConfigError(f"unet.depth must be in 1..6, got {depth}")
    if size % 2 ** depth:
        raise ConfigError(f"size must be divisible by 2^unet.depth = {2 ** depth}, got {size}")
    if cfg.dataset == "synthetic" and cfg.synthetic.n_train < 5:
        raise ConfigError(f"synthetic.n_train must be >= 5, got {cfg.synthetic.n_train}")


def _data_identity(cfg) -> dict:
    d = {"dataset": cfg.dataset, "size": cfg.size}
    if cfg.dataset == "synthetic":
        d["synthetic"] = identity_of(cfg.synthetic, Synthetic)
    else:
        d["massachusetts"] = identity_of(cfg.massachusetts, Massachusetts)
    return d


def identity(cfg, coords: dict) -> dict:
    """Everything besides (arch, layer, weights, seed) that determines a cell's result."""
    cfg = _typed(cfg)
    return {"data": _data_identity(cfg), "unet": identity_of(cfg.unet, UNet), "iterations": cfg.iterations,
            "detach": cfg.detach, "mu": cfg.mu, "iteration_weights": cfg.iteration_weights,
            "tolerance": cfg.tolerance,
            "threshold": cfg.threshold, "validation": cfg.validation, "train": identity_of(cfg.train, Fit)}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def data_file(cfg, out: Path) -> Path:
    """Where the cell data of these settings are cached: ``<out>/data/delineation-<hash>.pt``."""
    h = stable_hash(_data_identity(cfg), 12, compact=False)
    return Path(out) / "data" / f"delineation-{h}.pt"


def _build_data(cfg) -> dict[str, torch.Tensor]:
    """``train_image``/``train_mask``, ``test_image``/``test_mask`` and, for MRD with the official
    validation split, ``val_image``/``val_mask`` (uint8; masks in {0, 255})."""
    from lossnet.data.parts import subset
    from lossnet.data.roads import load_massachusetts_roads, synthetic_curvilinear

    size = cfg.size  # cfg: typed, or a finished sweep's manifest config (the report)
    if cfg.dataset == "synthetic":
        s = cfg.synthetic
        parts = {"train": synthetic_curvilinear(s.n_train, size, s.train_seed, s.kind),
                 "test": synthetic_curvilinear(s.n_test, size, s.test_seed, s.kind)}
    else:
        m = cfg.massachusetts
        root = Path(cfg.data_root).expanduser()
        kw = dict(size=size, mode=m.mode, tile=m.tile, max_blank=m.max_blank, progress=cfg.progress)
        splits = {"train": "train", "test": "test"}
        if m.validation == "official":
            splits["val"] = "valid"
        try:
            parts = {k: load_massachusetts_roads(root, s, **kw) for k, s in splits.items()}
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(str(e)) from None
        for key, limit in (("train", m.max_train), ("test", m.max_test)):
            idx = subset(len(parts[key]), limit, 0)
            if idx is not None:
                p = parts[key]
                p.images, p.masks = p.images[idx].contiguous(), p.masks[idx].contiguous()
    out = {}
    for k, p in parts.items():
        out[f"{k}_image"], out[f"{k}_mask"] = p.images, p.masks
    return out


def load_cell_data(cfg, out: Path) -> dict[str, torch.Tensor]:
    """The cell data (:func:`_build_data`), read from / written to :func:`data_file` (atomic)."""
    f = data_file(cfg, out)
    with distributed.main_first():  # under torchrun rank 0 builds it, the others read it
        if f.exists():  # one reader: a truncated or foreign file is one error naming it
            return load_torch(f, "delete it; the next run rebuilds it", mmap=True)
        data = _build_data(cfg)
        f.parent.mkdir(parents=True, exist_ok=True)
        save_torch(data, f)  # atomic; a full disk is one error naming the file
        return data


def prepare(cfg, out: Path) -> None:
    """Once per sweep, in the parent: check the MRD root, build the data cache and (``baseline``)
    train the BCE-only reference (:func:`compute_baseline`)."""
    cfg = _typed(cfg)
    prepare_data(cfg, out)
    if cfg.baseline:
        compute_baseline(cfg, Path(out))


def compute_baseline(cfg, out: Path, *, seed: int | None = None) -> dict:
    """The BCE-only U-Net (no topology loss) as a reference row of ``out`` (computed once)."""
    from lossnet.runs.cells import ensure_reference

    cfg = _typed(cfg)
    seed = cfg.seed if seed is None else seed

    def compute(rid):
        res = run_cell(cfg, None, None, {}, loss_net=None, out=out, cid=f"reference-{rid}", seed=seed, label="bce only")
        return {"reference": "bce", **res["scores"], "seed": seed, "details": res["details"]}

    return ensure_reference(out, {"benchmark": NAME, "reference": "bce", "seed": seed, "setting": identity(cfg, {})},
                            compute, "BCE only (no topology loss)")


def prepare_data(cfg, out: Path) -> None:
    """Check the MRD root and build the data cache."""
    cfg = _typed(cfg)
    if cfg.dataset == "massachusetts":
        if not cfg.data_root:
            raise ConfigError("delineation on the Massachusetts Roads Dataset reads the official files: pass "
                              "data_root=DIR (the folder holding tiff/train, tiff/train_labels, ...; "
                              "docs/delineation.md)")
        if not Path(cfg.data_root).expanduser().is_dir():
            raise ConfigError(f"data_root={cfg.data_root} is not a directory")
    load_cell_data(cfg, Path(out))


# --------------------------------------------------------------------------------------------
# The cell
# --------------------------------------------------------------------------------------------


def run_cell(cfg, arch: str | None, layer: str | None, coords: dict, *, loss_net, out: Path, cid: str, seed: int,
             label: str = "") -> dict:
    """One benchmark-3 cell: train the iterative U-Net with ``L_bce + mu L_top`` (``loss_net``;
    None: BCE only) and score it on the test set.

    Returns ``{"scores": {"completeness", "correctness", "quality"}, "details": {...}}`` (the last
    iteration's corpus-level scores); details hold the per-iteration scores, per-image means and
    pixel counts, the epoch history, the loss magnitudes at initialisation and after training
    (``loss_terms``), seconds and the loss network's identity. Resumes from
    ``out/cells/<cid>/last.pt``.
    """
    from lossnet.models.unet import IterativeUNet, UNet
    from lossnet.runs.loss_nets import loss_net_identity
    from lossnet.train.cache import with_target_features
    from lossnet.train.engine import FitConfig, fit

    t0 = time.perf_counter()
    cfg, out = _typed(cfg), Path(out)
    data = load_cell_data(cfg, out)
    train = with_target_features({"image": data["train_image"], "mask": data["train_mask"]}, "mask", loss_net, cfg)
    val = None
    if "val_image" in data:
        val = {"image": data["val_image"], "mask": data["val_mask"]}
        if cfg.validation == "loss":  # task.loss runs on it: the same precomputed targets
            val = with_target_features(val, "mask", loss_net, cfg)
    fit_cfg = FitConfig.from_section(cfg.train, seed=seed, device=cfg.device, progress=cfg.progress,
                                     desc=label or (f"{arch}:{layer}" if loss_net is not None else "bce"))
    torch.manual_seed(seed)
    unet = UNet(4, 1, base=cfg.unet.base, depth=cfg.unet.depth, up=cfg.unet.up)
    prior = float((train["mask"][:256] > 127).float().mean().clamp(1e-3, 0.5))
    with torch.no_grad():  # start from the road prior instead of p = 0.5 everywhere
        unet.head.bias.fill_(float(torch.logit(torch.tensor(prior))))
    model = IterativeUNet(unet, iterations=cfg.iterations, detach=cfg.detach)
    task = DelineationTask(model, loss_net, cfg.mu if loss_net is not None else 0.0, cfg.iteration_weights)
    tol, thr = cfg.tolerance, cfg.threshold  # tolerance: pixels, a Euclidean distance
    bs_eval = max(1, 2 * fit_cfg.batch_size)

    def validate(task, vdata, device):
        res = evaluate_iterations(task.model, vdata["image"], vdata["mask"], tolerance=tol, threshold=thr,
                                  batch_size=bs_eval, device=device)
        return -res[-1]["quality"] if res[-1]["quality"] == res[-1]["quality"] else 0.0  # NaN (no roads) -> 0

    probe = val if val is not None else train
    from lossnet.utils import best_device

    task.to(best_device(fit_cfg.device))
    terms_init = loss_magnitudes(task, probe)
    result = fit(task, train, fit_cfg, ckpt_dir=out / "cells" / cid, val_data=val,
                 validate=validate if cfg.validation == "quality" else None)
    train_seconds = time.perf_counter() - t0
    terms_final = loss_magnitudes(task, probe)
    t1 = time.perf_counter()
    per_iter = evaluate_iterations(task.model, data["test_image"], data["test_mask"], tolerance=tol, threshold=thr,
                                   batch_size=bs_eval)
    _save_examples(task.model, data["test_image"][:N_EXAMPLES], out / "examples" / (
        f"{arch}_{layer}" if loss_net is not None else "bce"))
    test_seconds = time.perf_counter() - t1
    last = per_iter[-1]
    n_val = len(val["image"]) if val is not None else max(1, round(len(train["image"]) * fit_cfg.val_fraction))
    details = {
        "dataset": cfg.dataset, "size": cfg.size, "topology_loss": loss_net is not None,
        "mu": task.mu, "iteration_weights": cfg.iteration_weights, "iterations": cfg.iterations,
        "per_iteration": [{"iteration": k + 1, **{s: r[s] for s in SCORE_NAMES},
                           **{f"mean_{s}": r[f"mean_{s}"] for s in SCORE_NAMES}} for k, r in enumerate(per_iter)],
        "test": last, "loss_terms": {"init": terms_init, "final": terms_final},
        "best_epoch": result.best_epoch, "best_val": result.best_val, "validation": cfg.validation,
        "history": result.history, "epoch_seconds": result.epoch_seconds, "precision": fit_cfg.precision,
        "resumed_from": result.resumed_from,
        "unet_parameters": sum(p.numel() for p in model.parameters()),
        "n_train": len(train["image"]) - (0 if val is not None else n_val), "n_val": n_val,
        "n_test": len(data["test_image"]),
        "loss_net": loss_net_identity(loss_net) if loss_net is not None else None,
        "train_seconds": train_seconds, "test_seconds": test_seconds, "cell_seconds": time.perf_counter() - t0,
    }
    return {"scores": {s: last[s] for s in SCORE_NAMES}, "details": details}


def delineation_cell(arch: str | None, layer: str | None = "M", *, out: str | Path = "runs/delineation-cell",
                     weights: str | dict | None = "imagenet", scale: str = "quick", seed: int = 0,
                     overrides: dict | None = None) -> dict:
    """Benchmark 3 for one loss network (or, with ``arch=None``, the BCE-only baseline), from Python.

    Args:
        arch, layer: architecture and extraction layer (E/S/M/L, a child index or node name);
            ``arch=None``: no topology loss (``layer`` and ``weights`` ignored).
        out: run directory (data cache, checkpoints under ``cells/<id>/``).
        weights: ``"imagenet"`` (raises :class:`~lossnet.zoo.WeightsUnavailableError` when
            missing), ``None`` (random) or a state dict.
        scale: ``quick`` or ``paper`` (:data:`DEFAULTS`).
        overrides: nested settings on top, e.g. ``{"train": {"epochs": 1}, "mu": 0.1}``.

    Returns ``{"arch", "layer", "completeness", "correctness", "quality", "details", "seconds",
    "cell_id"}``.
    """
    from lossnet.runs.cells import cell_id
    from lossnet.runs.loss_nets import loss_net_identity
    from lossnet.zoo import LossNetwork

    cfg = OmegaConf.merge(load_defaults(scale), {"seed": seed, "progress": False, "device": None},
                          OmegaConf.create(overrides or {}))
    check(cfg)
    out = Path(out)
    t0 = time.perf_counter()
    prepare_data(cfg, out)
    net = LossNetwork(arch, layers=[layer], weights=weights) if arch is not None else None
    spec = {"benchmark": NAME, "arch": arch, "layer": None if arch is None else str(layer), "seed": seed,
            "loss_net": loss_net_identity(net) if net is not None else None, "setting": identity(cfg, {})}
    cid = cell_id(spec)
    res = run_cell(cfg, arch, None if arch is None else str(layer), {}, loss_net=net, out=out, cid=cid, seed=seed)
    return {"arch": arch, "layer": None if arch is None else layer, **res["scores"], "details": res["details"],
            "seconds": time.perf_counter() - t0, "cell_id": cid}


def run_baseline_and_topology(arch: str, layer: str = "M", scale: str = "quick", out: str | Path = "runs/delineation",
                              seed: int = 0, weights: str | dict | None = "imagenet",
                              overrides: dict | None = None) -> list[dict]:
    """The BCE-only baseline and ``L_bce + mu L_top`` with ``arch`` at ``layer``, same data, seed
    and settings: two :func:`delineation_cell` rows, each with ``"loss"`` = ``"bce"`` /
    ``"bce+top"``."""
    base = delineation_cell(None, None, out=out, scale=scale, seed=seed, overrides=overrides)
    top = delineation_cell(arch, layer, out=out, weights=weights, scale=scale, seed=seed, overrides=overrides)
    return [{"loss": "bce", **base}, {"loss": "bce+top", **top}]


def format_rows(rows: list[dict]) -> str:
    """A small text table of :func:`run_baseline_and_topology` rows (scores as percentages)."""
    lines = ["loss        loss net     compl.  corr.  quality  quality/iter     seconds"]
    for r in rows:
        net = "-" if r.get("arch") is None else f"{r['arch']}:{r['layer']}"
        per = "/".join(f"{100 * p['quality']:.1f}" for p in r["details"]["per_iteration"])
        lines.append(f"{r.get('loss', ''):<11} {net:<12} {100 * r['completeness']:6.1f} {100 * r['correctness']:6.1f} "
                     f"{100 * r['quality']:8.1f}  {per:<16} {r['seconds']:7.1f}")
    return "\n".join(lines)


N_EXAMPLES = 4
"""Test images whose predicted maps each cell saves (``out/examples/<arch>_<layer>|bce/``) for the report."""


def _save_examples(model, images: torch.Tensor, folder: Path) -> None:
    """The last iteration's probability maps of ``images`` as 8-bit PNGs ``test<i>.png``."""
    from lossnet.report.figures import save_png

    for i, p in enumerate(predict(model, images)[-1]):
        save_png(p[0].mul(255).round().byte(), folder / f"test{i}.png")


def examples_figure(out: Path, cfg, labels: list[str], path: Path) -> Path | None:
    """Input / target / BCE-only / loss-network predictions of the first test images."""
    from lossnet.data.sr import read_image
    from lossnet.report.figures import image_grid

    out = Path(out)
    data = load_cell_data(cfg, out)
    cols = ["bce"] + [lab for lab in labels if lab != "bce"]
    grid = []
    for i in range(min(N_EXAMPLES, len(data["test_image"]))):
        files = {lab: out / "examples" / lab / f"test{i}.png" for lab in cols}
        if not any(f.exists() for f in files.values()):
            continue
        row = [("input", data["test_image"][i]), ("target", data["test_mask"][i].expand(3, -1, -1))]
        row += [("BCE only" if lab == "bce" else ":".join(lab.rsplit("_", 1)),
                 read_image(f) if f.exists() else None) for lab, f in files.items()]
        grid.append(row)
    if not grid:
        return None
    return image_grid(grid, path, row_labels=[f"test {i}" for i in range(len(grid))],
                      title="predicted road probability after the last iteration")


def report_section(out: Path, rows: list[dict], figures: Path, md_dir: Path) -> str:
    """Markdown: every finished cell's scores (percent) and quality per iteration next to the
    BCE-only reference, with the loss magnitudes (mu L_top / L_bce at the start)."""
    from lossnet.report.tables import md_table
    from lossnet.runs.cells import reference_rows
    from lossnet.runs.table import read_sweep_manifest

    man = read_sweep_manifest(out)
    cfg = OmegaConf.create(man["config"])
    entries = [("BCE only", r) for r in reference_rows(out) if r.get("reference") == "bce"]
    entries += [(f"BCE + {cfg.mu} L_top, {r['arch']}:{r['layer']}", r) for r in rows if r.get("status", "ok") == "ok"]
    if not entries:
        return ""
    entries.sort(key=lambda e: -(e[1].get("quality") if e[1].get("quality") is not None else float("-inf")))
    base = next((r for lab, r in entries if lab == "BCE only"), None)

    def pct(r, k):
        v = r.get(k)
        if v is None:
            return "-"
        s = f"{100 * v:.1f}"
        return f"**{s}**" if base is not None and r is not base and base.get(k) is not None and v > base[k] else s

    def ratio(r):
        t = ((r.get("details") or {}).get("loss_terms") or {}).get("init") or {}
        return f"{t['ratio_mu_top_to_bce']:.2f}" if t.get("ratio_mu_top_to_bce") is not None else "-"

    table = md_table(["loss", "completeness", "correctness", "quality", "quality per iteration", "mu L_top / L_bce",
                      "seconds"],
                     [[lab, pct(r, "completeness"), pct(r, "correctness"), pct(r, "quality"),
                       " / ".join(f"{100 * p['quality']:.1f}" for p in (r.get("details") or {}).get("per_iteration", [])
                                  if p.get("quality") is not None),
                       ratio(r), f"{r.get('seconds', 0):.0f}"] for lab, r in entries])
    labels = [f"{r['arch']}_{r['layer']}" for lab, r in entries if "arch" in r][:6]
    fig = examples_figure(out, cfg, labels, Path(figures) / "delineation_examples.png")
    fig_lines = [f"![benchmark 3 examples]({Path(os.path.relpath(fig, md_dir)).as_posix()})", ""] if fig else []
    data = (f"synthetic {cfg.synthetic.kind}" if cfg.dataset == "synthetic" else "Massachusetts Roads") + \
        f", {cfg.size}x{cfg.size}"
    return "\n".join([
        "## Benchmark 3: delineation with and without the topology loss", "",
        f"Test completeness / correctness / quality (%; tolerance {cfg.tolerance} px, counts summed over the test "
        f"set; docs/delineation.md) on {data}, U-Net applied {cfg.iterations} times. Bold: better than BCE only. "
        "`mu L_top / L_bce`: the two loss terms' ratio at initialisation (the paper picks mu to keep them at the "
        "same order of magnitude).", "", table, ""] + fig_lines)


BENCHMARK = register_benchmark(Benchmark(
    "delineation", "delineation (iterative U-Net, BCE + mu x topology loss)", DEFAULTS, scores,
    partial(single_layer_cell, run_cell), identity=identity, prepare=prepare, check=check, report=report_section),
    overwrite=True)
