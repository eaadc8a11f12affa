"""Benchmark 2 (systematic analysis, Sec. IV-B): super-resolution with deep perceptual loss.

One cell = one loss network (architecture ``arch`` truncated at extraction layer ``layer``, no
sigmoid) x one upscaling factor:

1. Johnson et al.'s transformation network (:class:`~lossnet.models.transformer.TransformerNet`)
   is trained on random ``patch``-sized crops of an image folder degraded by Gaussian blur
   (sigma 1) + bicubic downsampling (:func:`lossnet.data.sr.degrade`), with the feature
   reconstruction loss of Eq. 3, ``||phi(x_hat) - phi(x)||^2 / (C H W)``. ``scale=paper``: 10k
   MS-COCO 2014 train images drawn without replacement with ``subset_seed``, one 288 px crop
   each (``train_images``); quick: 512 crops drawn with replacement from
   ``../shared/data/sr/CSun_Hays80``;
2. after every epoch it is validated and the epoch with the best PSNR is kept -- the paper's guard
   against models that collapse to black images. ``scale=paper``: ``val_images=100`` images of
   ``val_root`` (MS-COCO 2014 val), none of them trained on; quick (``val_root=holdout``): the last
   ``val_images`` files of the training folder, held out of training (central crops);
3. the kept model super-resolves the full images of the test sets (the paper: Set5, Set14,
   BSD100; quick: CSet5, CSet14 and CBSD68, whose columns say ``cbsd68``); the scores are their
   mean PSNR and SSIM (:mod:`lossnet.eval.sr`: luma Y of BT.601, ``factor`` border pixels removed,
   8-bit output).

Reference rows (not loss networks, computed once per sweep in :func:`prepare` and written to
``<out>/reference/results.jsonl``): ``bicubic`` upsampling and the transformation network trained with
``pixel`` loss (MSE), Johnson et al.'s baseline. The sweep's ``analysis.md`` lists them next to
the loss networks (:mod:`~lossnet.benchmarks.super_resolution_report`), with input / output / target crops.

Entry points: :func:`super_resolution_cell` (Python) and ``lossnet sweep super_resolution``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lossnet.benchmarks.base import Benchmark, register_benchmark, single_layer_cell
from lossnet.config import read_text, require_dir, typed
from lossnet.errors import ConfigError
from lossnet.runs.cells import cell_id
from lossnet.train.cache import with_target_features
from lossnet.utils import best_device

NAME = "super_resolution"
METRICS = ("psnr", "ssim")
REFERENCES = ("bicubic", "pixel")

DEFAULTS = read_text("super_resolution")
"""The defaults: ``configs/super_resolution.yaml``."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def load_defaults(scale: str = "quick") -> DictConfig:
    """:data:`DEFAULTS` with ``scales.<scale>`` merged in (presets removed)."""
    from lossnet.config import scaled_defaults

    return scaled_defaults(DEFAULTS, scale)


def _typed(cfg):
    """The settings as :class:`lossnet.schema.files.Benchmark2` (values typed; an instance as it is)."""
    return typed(NAME, cfg)


def _list(v) -> list:
    return [v] if isinstance(v, (str, int)) else list(v)


def _factors(cfg) -> list[int]:
    return [int(f) for f in _list(cfg.factors)]


def _sets(cfg) -> list[str]:
    return [str(s) for s in _list(cfg.test_sets)]


def set_key(name: str) -> str:
    """Column-friendly key of a test set: ``set5`` for set5 / Set5 / CSet5 / .../CSet5, ``bsd100``
    for bsd100 / .../BSD100, ``cbsd68`` for cbsd68 / .../CBSD68 (:data:`lossnet.data.sr.TEST_SETS`);
    otherwise the folder name, lower case."""
    from lossnet.data.sr import TEST_SETS

    base = Path(str(name)).name.lower()
    for k, folders in TEST_SETS.items():
        if base == k or base in (f.lower() for f in folders):
            return k
    return "".join(c if c.isalnum() else "_" for c in base)


def score_name(test_set: str, metric: str, factor: int) -> str:
    """Score column, e.g. ``set5_psnr_x4``."""
    return f"{set_key(test_set)}_{metric}_x{factor}"


def scores(cfg) -> list:
    """PSNR and SSIM (higher is better) for every test set and factor."""
    from lossnet.report.analysis import Score

    return [Score(score_name(s, m, f), NAME, True) for f in _factors(cfg) for s in _sets(cfg) for m in METRICS]


def check(cfg) -> None:
    """Validate the benchmark-2 settings."""
    import math

    cfg = _typed(cfg)
    for f in _factors(cfg):
        if f < 2 or math.log2(f) != int(math.log2(f)):
            raise ConfigError(f"factors must be powers of two >= 2 (the transformation network upsamples by 2s), got {f}")
        if cfg.patch % f or cfg.patch // f < 4:
            raise ConfigError(f"patch={cfg.patch} must be a multiple of the factor {f} and at least 4x it")
    if not _sets(cfg):
        raise ConfigError("test_sets is empty")
    bad = [r for r in _list(cfg.references) if r not in REFERENCES]
    if bad:
        raise ConfigError(f"references must be a subset of {list(REFERENCES)}, got {bad}")
    check_sr_training(cfg)


def check_sr_training(cfg) -> None:
    """The settings benchmark 2 and the SR VAE share: ``eval.colour``, ``n_patches``,
    ``val_images``, ``train.epochs``, ``train.batch_size``."""
    if cfg.eval.colour not in ("y", "rgb"):
        raise ConfigError(f"eval.colour must be y or rgb, got {cfg.eval.colour!r}")
    for k in ("n_patches", "val_images"):
        if getattr(cfg, k) < 1:
            raise ConfigError(f"{k} must be >= 1, got {getattr(cfg, k)}")
    n_img = getattr(cfg, "train_images", None)  # benchmark 2 only
    if n_img is not None and not 1 <= n_img <= cfg.n_patches:
        raise ConfigError(f"train_images must be null or 1..n_patches={cfg.n_patches} (at least one crop per "
                          f"image), got {n_img}")
    if cfg.train.epochs < 1 or cfg.train.batch_size < 1:
        raise ConfigError("train.epochs and train.batch_size must be >= 1")


def variants(cfg) -> list[dict]:
    """Extra cell coordinates: one cell per upscaling factor."""
    return [{"factor": f} for f in _factors(cfg)]


def _root(value, what: str) -> Path:
    return require_dir(value, what, "docs/super_resolution.md")


HOLDOUT = "holdout"
"""``val_root`` value: validate on the last ``val_images`` files of ``train_root`` (quick scale)."""


def val_root(cfg) -> Path | None:
    """The validation folder, or None for :data:`HOLDOUT` (ConfigError when unset or missing)."""
    v = _typed(cfg).val_root
    if v == HOLDOUT:
        return None
    if not v:
        raise ConfigError("set val_root=DIR, a folder of validation images (the paper: MS-COCO 2014 val, "
                          f"val_images=100 of them), or val_root={HOLDOUT} to hold out the last val_images "
                          "training files (see docs/super_resolution.md)")
    return _root(v, "val_root")


def data_options(cfg) -> dict:
    """Keyword arguments of :func:`lossnet.data.sr.sr_training_data` besides the factor."""
    cfg = _typed(cfg)
    return dict(patch=cfg.patch, n_patches=cfg.n_patches, val_images=cfg.val_images, val_patch=cfg.val_patch,
                sigma=cfg.blur_sigma, antialias=cfg.antialias, val_root=val_root(cfg), train_images=cfg.train_images,
                subset_seed=cfg.subset_seed)


def identity(cfg, coords: dict) -> dict:
    """Everything besides (arch, layer, weights, seed) that determines a cell's result."""
    from lossnet.data.sr import folder_digest

    cfg = _typed(cfg)
    train_root = _root(cfg.train_root, "train_root")
    vr = val_root(cfg)
    return {"factor": int(coords["factor"]), "train_data": folder_digest(train_root),
            "val_data": HOLDOUT if vr is None else folder_digest(vr), "train_images": cfg.train_images,
            "subset_seed": cfg.subset_seed, "test_sets": _sets(cfg), "val_images": cfg.val_images,
            "val_patch": cfg.val_patch, "patch": cfg.patch, "n_patches": cfg.n_patches, "blur_sigma": cfg.blur_sigma,
            "antialias": cfg.antialias, "model": asdict(cfg.model), "train": asdict(cfg.train),
            "tv_weight": cfg.tv_weight, "eval": asdict(cfg.eval)}


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels (anisotropic TV, Johnson et al.'s regulariser)."""
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


class SRTask(nn.Module):
    """The engine task: ``lr`` -> model -> Eq. 3 loss against ``hr`` (MSE when ``loss_net`` is None).

    The loss network is held as :class:`~lossnet.train.engine.Frozen` (not checkpointed). A batch
    may carry ``feat``, the loss network's features of ``hr`` computed once
    (:func:`~lossnet.train.cache.target_features`); otherwise they are computed per batch.
    """

    def __init__(self, model: nn.Module, loss_net=None, tv_weight: float = 0.0) -> None:
        super().__init__()
        from lossnet.losses import FeatureReconstructionLoss
        from lossnet.train.engine import Frozen

        self.model = model
        self.criterion = FeatureReconstructionLoss(Frozen(loss_net)) if loss_net is not None else None
        self.tv_weight = float(tv_weight)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(batch["lr"])
        if self.criterion is not None:
            feat = batch.get("feat")
            loss = self.criterion(out, batch["hr"], None if feat is None else [feat])
        else:
            loss = (out - batch["hr"]).pow(2).mean()
        if self.tv_weight:
            loss = loss + self.tv_weight * total_variation(out)
        return loss


def _to_float(x: torch.Tensor, device) -> torch.Tensor:
    return x.to(device).float().div_(255)


def val_psnr(upscale, val: dict[str, torch.Tensor], factor: int, cfg, device, batch: int = 8) -> float:
    """Mean PSNR of ``upscale`` on uint8 validation pairs (the evaluation convention)."""
    from lossnet.eval.sr import psnr_ssim

    border = factor if cfg.eval.border is None else cfg.eval.border  # cfg: benchmark 2's or the SR VAE's
    vals = []
    for i in range(0, len(val["lr"]), batch):
        sr = upscale(_to_float(val["lr"][i:i + batch], device))
        rows = psnr_ssim(sr.cpu(), val["hr"][i:i + batch].float() / 255, border=border, colour=cfg.eval.colour,
                         quantize=cfg.eval.quantize, ssim=False)
        vals += [r["psnr"] for r in rows]
    return sum(vals) / len(vals)


def train_sr(cfg, factor: int, loss_net, *, seed: int, ckpt_dir: Path | None, label: str = "", data=None):
    """Train a transformation network for ``factor`` with ``loss_net`` (None: pixel loss).

    Returns ``(model in eval mode, FitResult, data info)``; the kept epoch is the one with the
    best validation PSNR (``history[i]["val_psnr"]``).
    """
    from lossnet.data.sr import sr_training_data
    from lossnet.models.transformer import TransformerNet
    from lossnet.train.engine import FitConfig, fit

    cfg = _typed(cfg)
    train, val, info = data or sr_training_data(_root(cfg.train_root, "train_root"), factor=factor, seed=seed,
                                                **data_options(cfg))
    torch.manual_seed(seed)
    model = TransformerNet(factor, cfg.model.blocks, cfg.model.channels, cfg.model.residual)
    train = with_target_features(train, "hr", loss_net, cfg)
    task = SRTask(model, loss_net, cfg.tv_weight)
    fc = FitConfig.from_section(cfg.train, seed=seed, device=cfg.device, progress=cfg.progress, desc=label or "sr")

    def validate(task, v, device):
        return -val_psnr(task.model, v, factor, cfg, device)

    result = fit(task, train, fc, ckpt_dir=ckpt_dir, val_data=val, validate=validate)
    for row in result.history:
        row["val_psnr"] = -row["val_loss"]
    return model.eval(), result, info


def evaluate(cfg, upscale, factor: int, device="cpu", keep_for: Path | None = None) -> dict:
    """Mean PSNR/SSIM of ``upscale`` on every test set: ``{score column: value}`` plus the
    per-image rows under ``"images"``. Saves the :data:`examples` outputs as PNG under ``keep_for``
    (under torchrun: rank 0 only)."""
    from lossnet import distributed
    from lossnet.data.sr import load_images, resolve_test_set
    from lossnet.eval.sr import evaluate_sr
    from lossnet.report.figures import save_png

    sr_root = _root(cfg.sr_root, "sr_root")
    examples = {str(e).split("/", 1)[0]: str(e).split("/", 1)[1] for e in _list(cfg.examples or []) if "/" in str(e)}
    out: dict = {"images": {}}
    for s in _sets(cfg):
        imgs = load_images(resolve_test_set(sr_root, s))
        keep = [examples[set_key(s)]] if set_key(s) in examples else []
        res = evaluate_sr(upscale, imgs, factor, sigma=cfg.blur_sigma, antialias=cfg.antialias,  # cfg: either schema's
                          border=cfg.eval.border, colour=cfg.eval.colour, quantize=cfg.eval.quantize, device=device,
                          keep=keep)
        for m in METRICS:
            out[score_name(s, m, factor)] = res[m]
        out["images"][set_key(s)] = res["images"]
        if keep_for is not None and distributed.is_main():
            for name, img in res["outputs"].items():
                save_png(img, keep_for / f"{set_key(s)}_{name}_x{factor}.png")
    return out


def run_model(cfg, factor: int, loss_net, *, out: Path, cell_dir: Path, examples_dir: Path, seed: int,
              label: str = "") -> dict:
    """Train (``loss_net`` None: pixel loss) and evaluate one transformation network."""
    t0 = time.perf_counter()
    cfg = _typed(cfg)
    model, result, info = train_sr(cfg, factor, loss_net, seed=seed, ckpt_dir=cell_dir, label=label)
    device = best_device(cfg.device)
    model.to(device)
    ev = evaluate(cfg, model, factor, device, keep_for=examples_dir)
    images = ev.pop("images")
    details = {"factor": factor, "best_epoch": result.best_epoch, "best_val_psnr": -result.best_val,
               "epoch_seconds": result.epoch_seconds, "train_seconds": result.total_seconds,
               "precision": cfg.train.precision, "history": result.history, "data": info, "images": images,
               "collapsed": bool(max((h["val_psnr"] for h in result.history), default=0.0) < 10.0),
               "cell_seconds": time.perf_counter() - t0}
    return {"scores": ev, "details": details}


def run_cell(cfg, arch: str, layer: str, coords: dict, *, loss_net, out: Path, cid: str, seed: int,
             label: str = "") -> dict:
    """One benchmark-2 cell with a ready single-layer loss network. Returns ``{"scores": {column:
    value}, "details": {...}}``; resumes a half-trained network from ``out/cells/<cid>/last.pt``."""
    from lossnet.runs.loss_nets import loss_net_identity

    factor = int(coords["factor"])
    res = run_model(cfg, factor, loss_net, out=out, cell_dir=out / "cells" / cid,
                    examples_dir=out / "examples" / f"{arch}_{layer}", seed=seed, label=label or f"{arch}:{layer}")
    res["details"]["loss_net"] = loss_net_identity(loss_net)
    return res


# --------------------------------------------------------------------------------------------
# Reference rows: bicubic and pixel loss
# --------------------------------------------------------------------------------------------


def compute_references(cfg, out: Path, *, seed: int | None = None) -> list[dict]:
    """Bicubic and pixel-loss rows for every factor, computed once into ``<out>/reference/``
    (:func:`~lossnet.runs.cells.ensure_reference`)."""
    from lossnet.data.sr import bicubic_upsample
    from lossnet.runs.cells import ensure_reference

    out, cfg = Path(out), _typed(cfg)
    seed = cfg.seed if seed is None else seed
    rows = []
    for factor in _factors(cfg):
        for ref in _list(cfg.references):
            ident = identity(cfg, {"factor": factor})
            if ref == "bicubic":
                ident = {k: ident[k] for k in ("factor", "test_sets", "blur_sigma", "antialias", "eval")}

            def compute(rid, ref=ref, factor=factor):
                if ref == "bicubic":
                    ev = evaluate(cfg, lambda lr: bicubic_upsample(lr, factor), factor,
                                  keep_for=out / "examples" / "bicubic")
                    details = {"images": ev.pop("images")}
                else:
                    res = run_model(cfg, factor, None, out=out, cell_dir=out / "cells" / f"reference-{rid}",
                                    examples_dir=out / "examples" / "pixel", seed=seed, label=f"pixel x{factor}")
                    ev, details = res["scores"], res["details"]
                return {"reference": ref, "factor": factor, **ev, "seed": seed, "details": details}

            rows.append(ensure_reference(out, {"benchmark": NAME, "reference": ref, "seed": seed, "setting": ident},
                                         compute, f"{ref} x{factor}"))
    return rows


def prepare(cfg, out: Path) -> None:
    """Once per sweep, in the parent: check the folders, compute the reference rows."""
    from lossnet.data.sr import image_files, resolve_test_set

    cfg = _typed(cfg)
    n_train = len(image_files(_root(cfg.train_root, "train_root")))
    if cfg.train_images is not None and n_train < cfg.train_images:
        raise ConfigError(f"train_root={cfg.train_root} holds {n_train} images; train_images={cfg.train_images} "
                          "distinct ones are needed (lower train_images, or train_images=null to draw crops with "
                          "replacement)")
    vr = val_root(cfg)
    if vr is not None and len(image_files(vr)) < cfg.val_images:
        raise ConfigError(f"val_root={cfg.val_root} holds {len(image_files(vr))} images; val_images={cfg.val_images} "
                          "are needed")
    sr_root = _root(cfg.sr_root, "sr_root")

    for s in _sets(cfg):
        try:
            resolve_test_set(sr_root, s)
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    compute_references(cfg, out)


def super_resolution_cell(arch: str | None, layer: str | None = None, *, factor: int = 4,
                          out: str | Path = "runs/super_resolution-cell",
                          weights="imagenet", scale: str = "quick", seed: int = 0,
                          overrides: dict | None = None) -> dict:
    """Benchmark 2 for one loss network (``arch=None``: the pixel-loss baseline) from Python.

    Returns ``{"arch", "layer", "factor", <score columns>, "details", "seconds"}``.
    """
    from lossnet.runs.loss_nets import loss_net_identity
    from lossnet.zoo import LossNetwork

    cfg = OmegaConf.merge(load_defaults(scale), {"factors": [factor], "seed": seed},
                          OmegaConf.create(overrides or {}))
    check(cfg)
    out = Path(out)
    t0 = time.perf_counter()
    net = LossNetwork(arch, layers=[layer], weights=weights) if arch is not None else None
    cid = cell_id({"benchmark": NAME, "arch": arch or "pixel", "layer": str(layer), "seed": seed,
                   "loss_net": loss_net_identity(net) if net is not None else None,
                   "setting": identity(cfg, {"factor": factor})})
    if net is None:
        res = run_model(cfg, factor, None, out=out, cell_dir=out / "cells" / cid, examples_dir=out / "examples" / "pixel",
                        seed=seed)
    else:
        res = run_cell(cfg, arch, str(layer), {"factor": factor}, loss_net=net, out=out, cid=cid, seed=seed)
    return {"arch": arch or "pixel", "layer": layer, "factor": factor, **res["scores"], "details": res["details"],
            "seconds": time.perf_counter() - t0}


def report_section(out: Path, rows: list[dict], figures: Path, md_dir: Path) -> str:
    """The report's benchmark 2 section: :func:`lossnet.benchmarks.super_resolution_report.report_section`."""
    from lossnet.benchmarks.super_resolution_report import report_section as section

    return section(out, rows, figures, md_dir)


BENCHMARK = register_benchmark(Benchmark(
    "super_resolution", "super-resolution (Johnson et al. transformation network, PSNR/SSIM)", DEFAULTS, scores,
    partial(single_layer_cell, run_cell), variants=variants, identity=identity, prepare=prepare, check=check,
    report=report_section), overwrite=True)
