"""Paper A: autoencoders and VAEs trained with pixel-wise (PW) or deep perceptual (PS) loss.

Sweep: ``repeats`` x ``z`` (per dataset: LunarLander 32-256, STL-10 64-512, SVHN 32-128) x
``models`` (AE-PW, VAE-PW, AE-PS, VAE-PS = the paper's AE, VAE, P. AE, P. VAE: procedures I-I-PW /
I-I-PS with ``variational`` off/on). Each cell trains the autoencoder, fits two probe grids on its
embeddings -- the MLP grid of paper A (Tables II-IV) and a linear regressor (Tables V-VII) -- and
retrains a fresh image decoder on the frozen encoder with pixel-wise MSE loss, scoring the test
reconstructions with the L1 norm (Table VIII; :mod:`lossnet.eval.decoder_retrain`).

Fig. 5 (originals and their reconstructions by a pixel-wise and a perceptually trained autoencoder,
before and after the decoder is retrained): each cell writes the first ``figures.reconstructions``
test images, the autoencoder's own reconstructions and the retrained decoder's to
``cells/<id>/reconstructions.npz`` (uint8 (K, 3, S, S) ``original``, ``before``, ``after``); the
row's ``recon_examples`` names the file and the report draws the figure
(:func:`lossnet.report.figures.reconstructions`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lossnet.config import typed
from lossnet.errors import ConfigError
from lossnet.eval.decoder_retrain import retrain_decoder
from lossnet.runs.cells import cell_id
from lossnet.runs.encoder_cells import (
    RunContext,
    encoder_row,
    finish_cell,
    fmt_score,
    run_probes,
    train_and_embed,
)
from lossnet.schema import identity as identity_of
from lossnet.schema.files import PaperADecoder
from lossnet.schema.sections import Encoder, Probe
from lossnet.train.engine import FitConfig

NAME = "paper_a"

MODELS: dict[str, tuple[str, bool]] = {
    "AE-PW": ("I-I-PW", False),
    "VAE-PW": ("I-I-PW", True),
    "AE-PS": ("I-I-PS", False),
    "VAE-PS": ("I-I-PS", True),
}
"""Model id -> (procedure, variational)."""

LABELS = {"AE-PW": "AE", "VAE-PW": "VAE", "AE-PS": "P. AE", "VAE-PS": "P. VAE"}
"""Column names of paper A's tables."""


def check(cfg) -> None:
    """What the schema (models, repeats, decoder.init) cannot say: z resolved to a non-empty list, a
    linear probe grid (the linear regressor of Tables V-VII)."""
    cfg = typed(NAME, cfg)
    if not cfg.z:
        raise ConfigError(f"z must be a non-empty list of positive ints, got {cfg.z}")
    if cfg.probe.linear_grid is None:
        raise ConfigError("paper_a scores every cell with a linear regressor too: set probe.linear_grid (e.g. linear)")


def plan(cfg) -> list[dict]:
    cfg = typed(NAME, cfg)
    return [{"model": m, "z": z, "repeat": r, "seed": cfg.seed + r}
            for r in range(cfg.repeats) for z in cfg.z for m in cfg.models]


def decoder_settings(cfg) -> dict | None:
    d = cfg.decoder
    if not d.enabled:
        return None
    return identity_of(d, PaperADecoder, drop=("enabled",))


def setting(ctx: RunContext) -> dict:
    return {"experiment": NAME, "data": ctx.data.identity, "loss_net": ctx.loss_net_id,
            "encoder": identity_of(ctx.cfg.encoder, Encoder), "probe": identity_of(ctx.cfg.probe, Probe),
            "decoder": decoder_settings(ctx.cfg)}


def cells(ctx: RunContext) -> list[tuple[dict, dict, str, str]]:
    shared = setting(ctx)
    out = []
    for c in plan(ctx.cfg):
        proc, var = MODELS[c["model"]]
        sp = {"setting": shared, "cell": {**c, "procedure": proc, "variational": var}}
        out.append((c, sp, cell_id(sp), f"{c['model']} z={c['z']} r{c['repeat']}"))
    return out


def run_cell(ctx: RunContext, coords: dict, sp: dict[str, Any], cid: str, label: str) -> dict:
    t0 = time.perf_counter()
    proc, var = MODELS[coords["model"]]
    seed = coords["seed"]
    cell = train_and_embed(ctx, cid, procedure=proc, z=coords["z"], variational=var, seed=seed, desc=label)
    t = typed(NAME, ctx.cfg)
    mlp = run_probes(ctx, cell, t.probe.grid, seed)
    lin = run_probes(ctx, cell, t.probe.linear_grid, seed)
    row = {"experiment": NAME, "dataset": ctx.data.name, "procedure": proc, "model": coords["model"],
           "model_label": LABELS[coords["model"]], "loss": "ps" if proc.endswith("PS") else "pw",
           "variational": var, "z": coords["z"], "repeat": coords["repeat"], "seed": seed,
           "metric": ctx.data.metric, "higher_is_better": ctx.data.higher_is_better,
           "test_score": mlp.test_metric, "probe": mlp.selected_name, "probe_val_loss": mlp.selected.best_val_loss,
           "linear_score": lin.test_metric, "linear_probe": lin.selected_name,
           "linear_val_loss": lin.selected.best_val_loss, "probe_seconds": mlp.train_seconds + lin.train_seconds,
           **encoder_row(cell)}
    dcfg = ctx.cfg.decoder
    if dcfg.enabled:
        fit_cfg = FitConfig.from_section(dcfg, options=ctx.cfg.encoder, seed=seed, device=ctx.cfg.get("device"),
                                         progress=ctx.cfg.progress, desc=f"{label} decoder")
        rd = retrain_decoder(cell.encoder.model, ctx.data.encoder_images, fit_cfg, test_images=ctx.data.test_images,
                             init=t.decoder.init, ckpt_dir=ctx.cell_dir(cid) / "decoder")
        row.update({"recon_rel_l1": rd.rel_l1, "recon_l1": rd.l1, "recon_mse": rd.mse,
                    "recon_val_loss": rd.result.best_val, "recon_best_epoch": rd.result.best_epoch,
                    "recon_seconds": rd.seconds})
        k = t.figures.reconstructions
        if k > 0:
            row["recon_examples"] = save_reconstructions(ctx.cell_dir(cid) / "reconstructions.npz",
                                                         ctx.data.test_images[:k], cell.encoder.model, rd.decoder,
                                                         ctx.device).relative_to(ctx.out).as_posix()
    row["cell_seconds"] = time.perf_counter() - t0
    return finish_cell(ctx, cid, sp, row, cell)


def save_reconstructions(path, images, autoencoder, retrained_decoder, device) -> Path:
    """Write ``original`` (the uint8 (K, 3, S, S) ``images``), ``before`` (the autoencoder's own
    reconstructions) and ``after`` (``retrained_decoder`` on the autoencoder's ``mu``) as uint8 to
    ``path`` (npz); returns ``path``. Image-input autoencoders only (papers A/B's I-I models)."""
    import numpy as np
    import torch

    def to_u8(x: torch.Tensor) -> np.ndarray:
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was = autoencoder.training
    autoencoder.eval()
    retrained_decoder.eval()
    try:
        with torch.no_grad():
            x = images.to(device).float() / 255
            mu = autoencoder.to(device).embed(x)
            before = autoencoder.decoder(mu)
            after = retrained_decoder.to(device)(mu)
    finally:
        autoencoder.train(was)
    np.savez_compressed(path, original=images.cpu().numpy(), before=to_u8(before), after=to_u8(after))
    return path


def describe_row(row: dict) -> str:
    s = (f"MLP {fmt_score(row['metric'], row['test_score'])}, linear {fmt_score(row['metric'], row['linear_score'])}")
    if row.get("recon_rel_l1") is not None:
        s += f", retrained-decoder rel. L1 {row['recon_rel_l1']:.3f}"
    return s + f", {row['epoch_seconds']:.1f} s/epoch"
