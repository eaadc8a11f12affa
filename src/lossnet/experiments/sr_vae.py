"""The super-resolution VAE with perceptual loss (Wickramasurendra, "Perceptual Loss in (Variational)
Autoencoder"): the paper's model and a working one, against bicubic upsampling.

Models (``model.kind``): ``dfc`` -- the paper's :class:`~lossnet.models.sr_vae.GlobalSRVAE`
(DFC-VAE-like, one global latent vector, ImageNet-normalised input; ``scale=paper``);
``residual`` -- :class:`~lossnet.models.sr_vae.SRVAE` (spatial latent, residual over bicubic; the
named improvement, default at quick scale and in ``scale=paper_residual``).

For every upscaling factor and every run in ``runs``:

* ``perceptual``: the model trained with
  ``L = w_rec * MSE(sr, hr) + w_kl * KL(q(z | lr) || N(0, I)) + w_perc * ||phi(sr) - phi(hr)||^2 / (C H W)``,
  ``phi`` = VGG-16 relu3_3 (``perceptual.layer = 15``, ImageNet weights);
* ``no_perceptual``: the same with ``w_perc = 0`` (the VGG is then not even evaluated);

plus one ``bicubic`` row per factor. The loss weights come from ``loss_weights.preset`` (explicit
``loss_weights.reconstruction / kl / perceptual`` override it):

* ``tuned`` (default): reconstruction 1, KL 1e-6, perceptual 1e-4 -- measured to beat bicubic
  (docs/sr_vae.md: with the paper's weights the latent collapses and the perceptual term
  outweighs the pixel term ~1500:1);
* ``paper``: reconstruction 1, KL 0.001, perceptual 0.8 -- the paper's alpha = 0.001 read as the
  KL weight (beta-VAE style) and gamma = 0.8;
* ``paper_literal``: reconstruction 0.001, KL 1, perceptual 0.8 -- ``L_vae = alpha * L_rec + D_KL``
  as printed, which makes the KL 1000x heavier than the pixel term.

Reductions: reconstruction = per-pixel MSE (mean over N, C, H, W of [0, 1] images); KL = mean over
the latent elements (N x z_channels x h x w, :func:`lossnet.losses.kl_divergence` with
``reduction="mean"``); perceptual = :class:`lossnet.losses.FeatureReconstructionLoss` (mean over
C, H, W and the batch).

Training goes through :func:`lossnet.train.engine.fit` on random ``patch`` crops
(``sampling: patches``) or whole images scaled to ``patch`` squares (``sampling: resize``, the
paper's) of ``train_root`` (``data: folder``, default CSun_Hays80) or of Oxford-IIIT Pet
(``data: pets``, the paper's data, :mod:`lossnet.data.pets`), degraded by Gaussian blur (sigma 1) +
bicubic downsampling; after every epoch the model (``z = mu``) is validated by PSNR on held-out images and
the best epoch is kept (benchmark 2's :func:`~lossnet.benchmarks.super_resolution.val_psnr`). Test
scores are benchmark 2's :func:`~lossnet.benchmarks.super_resolution.evaluate` (full images, Y channel
of BT.601, ``factor`` border pixels removed, 8-bit outputs) plus, for the test set ``pets``, the same
on Oxford-IIIT Pet's ``annotations/test.txt`` images (:func:`evaluate_all`).

Output directory: ``results.jsonl`` / ``results.csv`` (:class:`~lossnet.runs.table.ResultsTable`,
one row per (run, factor), rows with ids already there are not recomputed), ``runs/<id>/``
(engine checkpoints while training, ``model.pt`` after), ``examples/`` (example outputs),
``figures/crops_x<f>.png`` and ``report.md``.

Entry points: :func:`run_sr_vae` and ``lossnet srvae [key=value ...]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from lossnet import distributed
from lossnet.config import typed
from lossnet.errors import ConfigError
from lossnet.runs.cells import cell_id, environment
from lossnet.experiments.sr_vae_data import (PETS_TEST, as_list as _list, check_test_roots, data_identity,
                                             evaluate_all, pets_test_identity, training_data)
from lossnet.experiments.sr_vae_task import KL_REDUCTIONS, build_perceptual_net, train_sr_vae
from lossnet.runs.loop import Cell, final_report, run_cells, run_directory
from lossnet.runs.table import ResultsTable
from lossnet.utils import best_device, log

NAME = "srvae"
RUNS = ("perceptual", "no_perceptual")
DATA_SOURCES = ("folder", "pets")
MODEL_KINDS = ("residual", "dfc")

LOSS_WEIGHT_PRESETS: dict[str, dict[str, float]] = {
    # measured to work at quick scale (docs/sr_vae.md): KL light enough not to collapse the spatial
    # posterior, perceptual term on the scale of the pixel term instead of 1000x above it
    "tuned": {"reconstruction": 1.0, "kl": 1e-6, "perceptual": 1e-4},
    # alpha = 0.001 read as the KL weight: the reading that trains
    "paper": {"reconstruction": 1.0, "kl": 0.001, "perceptual": 0.8},
    # L_vae = alpha * L_rec + D_KL as printed (alpha = 0.001), L_total = 1 * L_vae + 0.8 * L_perc
    "paper_literal": {"reconstruction": 0.001, "kl": 1.0, "perceptual": 0.8},
}


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def load_config(overrides: Sequence[str] | dict | None = None) -> DictConfig:
    """Resolved settings: ``configs/srvae.yaml`` < ``scales[scale]`` < overrides (``key=value``
    strings or a nested dict), by the one loader (:func:`lossnet.config.resolve`: keys and values
    checked). Raises :class:`ConfigError` for unknown keys or bad values."""
    from lossnet.config import resolve

    cfg = resolve(NAME, overrides or ())
    check(cfg)
    return cfg


def factors_of(cfg) -> list[int]:
    """The configured upscaling factors as ints (``factors`` may be one value or a list)."""
    return [int(f) for f in _list(cfg.factors)]


def resolve_loss_weights(cfg, run: str = "perceptual") -> dict[str, float]:
    """The loss weights ``{"reconstruction", "kl", "perceptual"}`` of ``run`` (``no_perceptual``:
    perceptual weight 0): the preset's, overridden by explicit ``loss_weights.*`` values."""
    w = typed(NAME, cfg).loss_weights
    if w.preset not in LOSS_WEIGHT_PRESETS:
        raise ConfigError(f"loss_weights.preset must be one of {', '.join(LOSS_WEIGHT_PRESETS)}, got {w.preset!r}")
    out = dict(LOSS_WEIGHT_PRESETS[w.preset])
    for k in out:
        if getattr(w, k) is not None:
            out[k] = getattr(w, k)
    if run == "no_perceptual":
        out["perceptual"] = 0.0
    elif run != "perceptual":
        raise ConfigError(f"runs must be a subset of {list(RUNS)}, got {run!r}")
    return out


def check(cfg) -> None:
    """Validate the settings (one-line :class:`ConfigError`)."""
    import math

    cfg = typed(NAME, cfg)
    for f in factors_of(cfg):
        if f < 2 or math.log2(f) != int(math.log2(f)):
            raise ConfigError(f"factors must be powers of two >= 2, got {f}")
        m = f * 2 ** cfg.model.down
        if cfg.patch % m or cfg.patch // f < 8:
            raise ConfigError(f"patch={cfg.patch} must be a multiple of {m} (factor x 2^down) and at least 8x the factor")
    if cfg.data not in DATA_SOURCES:
        raise ConfigError(f"data must be one of {', '.join(DATA_SOURCES)}, got {cfg.data!r}")
    from lossnet.data.sr import SAMPLINGS
    from lossnet.models.sr_vae import INPUT_NORMS

    for key, value, allowed in (("model.kind", cfg.model.kind, MODEL_KINDS), ("model.normalize", cfg.model.normalize,
                                INPUT_NORMS), ("sampling", cfg.sampling, SAMPLINGS),
                                ("kl_reduction", cfg.kl_reduction, KL_REDUCTIONS)):
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    if cfg.model.kind == "dfc":
        m = 2 ** len(cfg.model.widths)
        for f in factors_of(cfg):
            if cfg.patch % (f * m):
                raise ConfigError(f"model.kind=dfc: patch={cfg.patch} must be a multiple of factor x 2^len(widths) = "
                                  f"{f * m} (its input, patch / factor, is halved {len(cfg.model.widths)} times)")
        if cfg.model.latent < 1 or not cfg.model.widths or min(cfg.model.widths) < 1:
            raise ConfigError("model.latent and every model.widths entry must be >= 1")
    for k in ("pets_test_images", "pets_test_size"):
        if getattr(cfg, k) is not None and getattr(cfg, k) < 1:
            raise ConfigError(f"{k} must be >= 1 or null, got {getattr(cfg, k)}")
    bad = [r for r in _list(cfg.runs) if r not in RUNS]
    if bad or not _list(cfg.runs):
        raise ConfigError(f"runs must be a non-empty subset of {list(RUNS)}, got {list(_list(cfg.runs))}")
    for k, v in resolve_loss_weights(cfg).items():
        if v < 0:
            raise ConfigError(f"loss_weights.{k} must be >= 0, got {v}")
    if cfg.perceptual.weights not in ("imagenet", "random"):
        raise ConfigError(f"perceptual.weights must be imagenet or random, got {cfg.perceptual.weights!r}")
    from lossnet.benchmarks.super_resolution import check_sr_training

    check_sr_training(cfg)
    if not _list(cfg.test_sets):
        raise ConfigError("test_sets is empty")


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def _common_setting(cfg, factor: int) -> dict:
    cfg = typed(NAME, cfg)
    s = {"factor": factor, "test_sets": cfg.test_sets, "blur_sigma": cfg.blur_sigma, "antialias": cfg.antialias,
         "eval": asdict(cfg.eval)}
    if PETS_TEST in s["test_sets"]:
        s["pets_test"] = pets_test_identity(cfg)
    return s


def run_setting(cfg, factor: int, weights: dict[str, float]) -> dict:
    """Everything that determines a VAE row's result (its id is the hash of this + run + seed)."""
    cfg = typed(NAME, cfg)
    s = _common_setting(cfg, factor)
    s.update({"data": data_identity(cfg), "val_images": cfg.val_images, "val_patch": cfg.val_patch,
              "patch": cfg.patch, "n_patches": cfg.n_patches, "weights": weights, "sampling": cfg.sampling,
              "kl_reduction": cfg.kl_reduction, "model": asdict(cfg.model), "train": asdict(cfg.train)})
    if weights["perceptual"] > 0:
        p = cfg.perceptual
        s["perceptual"] = {"arch": p.arch, "layer": p.layer, "weights": p.weights}
        if p.weights == "random":
            s["perceptual"]["init_seed"] = p.init_seed
    return s


def row_label(row: dict) -> str:
    """The report's name of a results row: ``bicubic`` or model kind, run, preset and loss weights."""
    if row["run"] == "bicubic":
        return "bicubic"
    w = row["weights"]
    kind = row.get("model_kind", "residual")
    kl = (row.get("config") or {}).get("kl_reduction", "mean")
    return (f"SR-VAE {kind} {row['run'].replace('_', ' ')} ({row.get('preset', '?')}: rec {w['reconstruction']:g}, "
            f"KL {w['kl']:g} ({kl}), perc {w['perceptual']:g})")


def _example_dir(out: Path, rid: str) -> Path:
    return out / "examples" / rid


def run_sr_vae(overrides: Sequence[str] | dict | None = None, out: str | Path | None = None) -> Path:
    """Train and evaluate the SR-VAE for every factor and run, plus bicubic; write the results
    table, figures and ``report.md`` under ``out`` (default ``cfg.out``). Rows already in the
    table are not recomputed; an interrupted training resumes from ``out/runs/<id>/last.pt``.
    Returns the path of ``report.md``. Holds the lock of ``out`` (:mod:`lossnet.runs.lock`)."""
    cfg = load_config(overrides)
    out = Path(out if out is not None else cfg.out)
    cfg.out = str(out)
    check_test_roots(cfg)  # one clear error before any work
    with run_directory(out) as d:  # one writer per run directory
        return _run_locked(cfg, d)


def plan(cfg) -> list[Cell]:
    """The cells: per factor, bicubic then every run of ``cfg.runs`` (item: ``(run, factor, weights)``)."""
    cfg = typed(NAME, cfg)
    cells = []
    for factor in cfg.factors:
        rid = cell_id({"experiment": NAME, "run": "bicubic", "setting": _common_setting(cfg, factor)})
        cells.append(Cell(rid, f"bicubic x{factor}", ("bicubic", factor, None)))
        for run in cfg.runs:
            weights = resolve_loss_weights(cfg, run)
            rid = cell_id({"experiment": NAME, "run": run, "seed": cfg.seed,
                           "setting": run_setting(cfg, factor, weights)})
            cells.append(Cell(rid, f"{run} x{factor}", (run, factor, weights)))
    return cells


def _describe(row: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in row.items() if "psnr" in k and k != "best_val_psnr"
                     and isinstance(v, float)) or "done"


def _run_locked(cfg, out: Path) -> Path:
    from lossnet.data.sr import bicubic_upsample
    from lossnet.runs.cells import utc_now

    run_cfg = OmegaConf.to_container(cfg, resolve=True)  # as the rows record it
    cfg = typed(NAME, cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    table = ResultsTable(out)
    main = distributed.is_main()  # the one writer of rows, models and the report
    seed = cfg.seed
    device = best_device(cfg.device)
    shared: dict = {"loss_net": None, "data": (None, None)}  # the perceptual net; one factor's training data

    def run_one(cell: Cell) -> dict:
        run, factor, weights = cell.item
        rid = cell.cid
        t0 = time.perf_counter()
        if run == "bicubic":
            log(f"srvae: bicubic x{factor} ...")
            ev = evaluate_all(cfg, lambda lr: bicubic_upsample(lr, factor), factor, keep_for=_example_dir(out, rid))
            return {"cell_id": rid, "run": "bicubic", "preset": None, "factor": factor, "weights": None,
                    **{k: v for k, v in ev.items() if k != "images"}, "images": ev["images"],
                    "seconds": time.perf_counter() - t0, "config": run_cfg, **environment(), "timestamp": utc_now()}
        label = cell.label
        log(f"srvae: training {label} with weights {weights} ({rid}) ...")
        if weights["perceptual"] > 0 and shared["loss_net"] is None:
            shared["loss_net"] = build_perceptual_net(cfg)
        if shared["data"][0] != factor:
            shared["data"] = (factor, training_data(cfg, factor, seed))
        run_dir = out / "runs" / rid
        model, result, info = train_sr_vae(cfg, factor, weights, shared["loss_net"], seed=seed, ckpt_dir=run_dir,
                                           data=shared["data"][1], label=label)
        train_s = time.perf_counter() - t0
        model.to(device)
        ev = evaluate_all(cfg, model.upscale, factor, device, keep_for=_example_dir(out, rid))
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), run_dir / "model.pt")
            if not cfg.keep_checkpoints:
                (run_dir / "last.pt").unlink(missing_ok=True)
        hist = result.history
        return {"cell_id": rid, "run": run, "preset": cfg.loss_weights.preset, "model_kind": cfg.model.kind,
                "factor": factor, "weights": weights,
                **{k: v for k, v in ev.items() if k != "images"}, "images": ev["images"],
                "best_epoch": result.best_epoch, "best_val_psnr": -result.best_val, "epochs_run": len(hist),
                "resumed_epochs": result.resumed_from, "epoch_seconds": result.epoch_seconds,
                "precision": cfg.train.precision,
                "train_seconds": sum(h["train_seconds"] + h["val_seconds"] for h in hist),
                "seconds": time.perf_counter() - t0, "setup_and_train_seconds": train_s,
                "threads": torch.get_num_threads(), "device": str(device), "data": info,
                "parameters": sum(p.numel() for p in model.parameters()), "history": hist,
                "config": run_cfg, **environment(), "timestamp": utc_now()}

    run_cells(table, plan(cfg), run_one, describe=_describe,
              header=lambda res, n: f"srvae in {out}: {res.planned} cells, {res.done_before} already in {table.path}, "
                                    f"{n} to run")
    return final_report(lambda: write_report(out, cfg)) or out / "report.md"


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def write_figures(out: Path, cfg, rows: list[dict]) -> list[Path]:
    """``figures/crops_x<f>.png``: input (nearest) / bicubic / every VAE row / target crops of the examples."""
    from lossnet.benchmarks.super_resolution_report import sr_crops_figure

    cfg = typed(NAME, cfg)
    figs = []
    for factor in sorted({r["factor"] for r in rows}):
        here = [r for r in rows if r["factor"] == factor]
        ordered = [r for r in here if r["run"] == "bicubic"][:1] + [r for r in here if r["run"] != "bicubic"]
        cols = [("bicubic" if r["run"] == "bicubic" else
                 f"{r.get('model_kind', 'residual')} {'+' if r['weights']['perceptual'] > 0 else '-'}perc "
                 f"({r.get('preset')})",
                 _example_dir(out, r["cell_id"])) for r in ordered]
        p = sr_crops_figure(cfg, factor, cols, Path(out) / "figures" / f"crops_x{factor}.png",
                            f"SR-VAE x{factor}: central {cfg.crop} px crops")
        if p is not None:
            figs.append(p)
    return figs


def stored_config(run_cfg: dict) -> dict:
    """The settings stored with a row (its ``config``) in today's keys: the rows of lossnet 0.1.0 hold
    the loss weights under ``weights`` (now ``loss_weights``)."""
    if "loss_weights" not in run_cfg and isinstance(run_cfg.get("weights"), dict):
        run_cfg = {("loss_weights" if k == "weights" else k): v for k, v in run_cfg.items()}
    return run_cfg


def write_report(out: str | Path, cfg=None) -> Path:
    """``report.md``: every row of the results table against bicubic (PSNR / SSIM / delta dB) + figures."""
    from lossnet.benchmarks.super_resolution import score_name, set_key

    out = Path(out)
    rows = ResultsTable(out).rows()
    if cfg is None:
        cfg = load_config(stored_config(rows[-1]["config"]) if rows else None)
    cfg = typed(NAME, cfg)
    sets = cfg.test_sets
    lines = ["# SR-VAE with perceptual loss vs bicubic", "",
             "PSNR (dB) / SSIM on the Y channel (BT.601), `factor` border pixels removed, 8-bit outputs; "
             "delta = model PSNR - bicubic PSNR. Training: "
             f"`{cfg.data}` data, " + (f"whole images scaled to {cfg.patch} px" if cfg.sampling == "resize" else
                                       f"{cfg.n_patches} patches of {cfg.patch} px") + f", {cfg.train.epochs} epochs, "
             f"batch {cfg.train.batch_size}, lr {cfg.train.lr}; model {asdict(cfg.model)}.", ""]
    head = "| factor | model | " + " | ".join(f"{set_key(s)} PSNR | {set_key(s)} SSIM | {set_key(s)} delta dB"
                                             for s in sets) + " | best epoch | seconds |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for factor in sorted({r["factor"] for r in rows}):
        fr = [r for r in rows if r["factor"] == factor]
        bic = next((r for r in fr if r["run"] == "bicubic"), None)
        for r in sorted(fr, key=lambda r: (r["run"] != "bicubic", str(r.get("model_kind")), str(r.get("preset")),
                                           r["run"])):
            cells = []
            for s in sets:
                p, q = r.get(score_name(s, "psnr", factor)), r.get(score_name(s, "ssim", factor))
                b = bic.get(score_name(s, "psnr", factor)) if bic else None
                d = "" if r["run"] == "bicubic" or p is None or b is None else f"{p - b:+.2f}"
                cells += ["-" if p is None else f"{p:.2f}", "-" if q is None else f"{q:.4f}", d]
            be = "" if r["run"] == "bicubic" or not isinstance(r.get("best_epoch"), int) else str(r["best_epoch"] + 1)
            lines.append(f"| x{factor} | {row_label(r)} | " + " | ".join(cells) + f" | {be} | {r.get('seconds', 0):.0f} |")
    lines += ["", "Loss terms at the kept epoch (unweighted training means: per-pixel MSE, KL per latent element "
              "(per image with `kl_reduction=sum`), "
              "VGG relu3_3 feature MSE):", ""]
    for r in rows:
        if r["run"] == "bicubic" or not r.get("history"):
            continue
        h = r["history"][r["best_epoch"]] if 0 <= r["best_epoch"] < len(r["history"]) else r["history"][-1]
        if "train_reconstruction" in h:
            lines.append(f"- x{r['factor']} {row_label(r)}: rec {h['train_reconstruction']:.5f}, KL {h['train_kl']:.5f}, "
                         f"perc {h['train_perceptual']:.4f}; val PSNR {h['val_psnr']:.2f} dB at epoch {h['epoch']}")
    figs = write_figures(out, cfg, rows)
    if figs:
        lines += ["", "## Example crops", ""]
        lines += [f"![{p.stem}](figures/{p.name})" for p in figs]
    p = out / "report.md"
    p.write_text("\n".join(lines) + "\n")
    return p
