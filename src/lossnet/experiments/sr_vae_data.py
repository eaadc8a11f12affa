"""The SR VAE's data (:mod:`lossnet.experiments.sr_vae`): training pairs from ``train_root`` or
Oxford-IIIT Pet, the ``pets`` test split and the evaluation on every configured test set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from lossnet import distributed
from lossnet.config import require_dir, typed
from lossnet.errors import ConfigError

PETS_TEST = "pets"
"""The test-set name of Oxford-IIIT Pet's ``annotations/test.txt`` split (at ``pets_root``)."""


def as_list(v) -> list:
    """``v`` as a list (a config value may be one item or a list)."""
    return [v] if isinstance(v, (str, int)) else list(v)


def _dir(value, what: str) -> Path:
    return require_dir(value, what, "docs/sr_vae.md")


def data_identity(cfg) -> dict:
    """What identifies the training images in a run id."""
    from lossnet.data.sr import folder_digest

    cfg = typed("srvae", cfg)
    if cfg.data == "pets":
        lst = _pets_base(cfg) / "annotations" / "trainval.txt"
        return {"source": "pets", "list_size": lst.stat().st_size if lst.exists() else None,
                "max_images": cfg.max_images}
    return {"source": "folder", "digest": folder_digest(_dir(cfg.train_root, "train_root")),
            "max_images": cfg.max_images}


def training_data(cfg, factor: int, seed: int) -> tuple[dict, dict, dict]:
    """``(train, val, info)`` uint8 pairs from ``train_root`` or Oxford-IIIT Pet."""
    cfg = typed("srvae", cfg)
    kw = dict(factor=factor, patch=cfg.patch, n_patches=cfg.n_patches, val_images=cfg.val_images,
              val_patch=cfg.val_patch, sigma=cfg.blur_sigma, antialias=cfg.antialias, seed=seed,
              max_images=cfg.max_images, sampling=cfg.sampling)
    if cfg.data == "pets":
        from lossnet.data.pets import pets_training_data

        return pets_training_data(_dir(cfg.pets_root, "pets_root"), **kw)
    from lossnet.data.sr import sr_training_data

    return sr_training_data(_dir(cfg.train_root, "train_root"), **kw)


def _pets_base(cfg) -> Path:
    from lossnet.data.pets import pets_root

    try:
        return pets_root(_dir(cfg.pets_root, "pets_root"))
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


def check_test_roots(cfg) -> None:
    """Raise one :class:`~lossnet.errors.ConfigError` if a configured test set's folder is missing."""
    sets = [str(t) for t in as_list(cfg.test_sets)]
    if any(t != PETS_TEST for t in sets):
        _dir(cfg.sr_root, "sr_root")
    if PETS_TEST in sets:
        _pets_base(cfg)


def pets_test_identity(cfg) -> dict:
    """What identifies the ``pets`` test set in a row id (list size, subset, scaling)."""
    lst = _pets_base(cfg) / "annotations" / "test.txt"
    return {"list_size": lst.stat().st_size if lst.exists() else None, "images": cfg.pets_test_images,
            "size": cfg.pets_test_size}


def pets_test_images(cfg) -> list[tuple[str, torch.Tensor]]:
    """The ``pets`` test set: ``[(name, uint8 (3, H, W))]`` of Oxford-IIIT Pet's ``annotations/test.txt``
    (``pets_test_images`` of them spread over the breeds), scaled to ``pets_test_size`` squares when set."""
    from lossnet.data.pets import load_oxford_pets
    from lossnet.data.sr import resize_square

    cfg = typed("srvae", cfg)
    try:
        ps = load_oxford_pets(_pets_base(cfg), "test", cfg.pets_test_images)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"test set {PETS_TEST}: {e}") from None
    items = ps.items()
    if cfg.pets_test_size is not None:
        items = [(n, resize_square([im], cfg.pets_test_size)[0]) for n, im in items]
    return items


def evaluate_all(cfg, upscale, factor: int, device="cpu", keep_for: Path | None = None) -> dict:
    """Benchmark 2's :func:`~lossnet.benchmarks.super_resolution.evaluate` on the folder test sets
    plus the ``pets`` test split (same conventions: degraded by blur + bicubic, Y-channel PSNR/SSIM,
    ``factor`` border, 8-bit outputs). Returns ``{score column: value, "images": {set: rows}}``."""
    from lossnet.benchmarks.super_resolution import METRICS, evaluate, score_name
    from lossnet.eval.sr import evaluate_sr
    from lossnet.report.figures import save_png

    cfg = typed("srvae", cfg)
    sets = cfg.test_sets
    others = [t for t in sets if t != PETS_TEST]
    out: dict = {"images": {}}
    if others:
        out = evaluate(replace(cfg, test_sets=others), upscale, factor, device, keep_for=keep_for)
    if PETS_TEST in sets:
        keep = [e.split("/", 1)[1] for e in cfg.examples if e.startswith(PETS_TEST + "/")]
        res = evaluate_sr(upscale, pets_test_images(cfg), factor, sigma=cfg.blur_sigma, antialias=cfg.antialias,
                          border=cfg.eval.border, colour=cfg.eval.colour, quantize=cfg.eval.quantize, device=device,
                          keep=keep)
        for m in METRICS:
            out[score_name(PETS_TEST, m, factor)] = res[m]
        out["images"][PETS_TEST] = res["images"]
        if keep_for is not None and distributed.is_main():
            for name, img in res["outputs"].items():
                save_png(img, keep_for / f"{PETS_TEST}_{name}_x{factor}.png")
    return out
