"""The SR VAE's training task (:mod:`lossnet.experiments.sr_vae`): the perceptual loss network,
the model of ``cfg.model``, the engine task (reconstruction + KL + perceptual) and one training."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lossnet.config import typed
from lossnet.errors import ConfigError
from lossnet.experiments.sr_vae_data import training_data
from lossnet.train.cache import with_target_features
from lossnet.utils import log

KL_REDUCTIONS = ("mean", "sum")


def build_perceptual_net(cfg):
    """The perceptual loss network (VGG-16 relu3_3 by default), frozen, eval mode."""
    from lossnet.zoo import LossNetwork

    p = typed("srvae", cfg).perceptual
    layer = p.layer  # an index (15, or "15" from a string) or a layer name
    layer = int(layer) if str(layer).lstrip("-").isdigit() else str(layer)
    try:
        net = LossNetwork(p.arch, layers=[layer], weights=p.weights,
                          seed=p.init_seed if p.weights == "random" else None)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"perceptual: {e}") from None
    return net.requires_grad_(False).eval()


class SRVAETask(nn.Module):
    """The engine task: ``lr`` -> VAE -> weighted reconstruction + KL + perceptual loss against ``hr``.

    ``loss_weights``: ``{"reconstruction", "kl", "perceptual"}``. Reconstruction = per-pixel MSE (mean
    over N, C, H, W); KL = mean over the latent elements (``kl_reduction="mean"``) or summed over
    them and averaged over the batch (``"sum"``, D_KL per image); perceptual = feature reconstruction loss
    of ``loss_net`` (needed only when its weight is > 0; a batch may carry ``feat``, the features of
``hr`` computed once). :meth:`components` returns the running
    means of the three terms (unweighted) since the last call, over training batches.
    """

    def __init__(self, model: nn.Module, loss_weights: dict[str, float], loss_net=None,
                 kl_reduction: str = "mean") -> None:
        super().__init__()
        if kl_reduction not in KL_REDUCTIONS:
            raise ValueError(f"kl_reduction must be one of {KL_REDUCTIONS}, got {kl_reduction!r}")
        self.kl_reduction = kl_reduction
        from lossnet.losses import FeatureReconstructionLoss
        from lossnet.train.engine import Frozen

        self.model = model
        self.loss_weights = {k: float(loss_weights[k]) for k in ("reconstruction", "kl", "perceptual")}
        if self.loss_weights["perceptual"] > 0 and loss_net is None:
            raise ValueError("a perceptual weight > 0 needs a loss network")
        # Frozen: the loss network is not part of the checkpoint and follows the batch's device
        self.criterion = FeatureReconstructionLoss(Frozen(loss_net)) if self.loss_weights["perceptual"] > 0 else None
        self._sums = {"reconstruction": 0.0, "kl": 0.0, "perceptual": 0.0}
        self._n = 0

    def terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The unweighted loss terms of a batch."""
        from lossnet.losses import kl_divergence

        sr, mu, logvar = self.model(batch["lr"])
        hr = batch["hr"]
        out = {"reconstruction": (sr - hr).pow(2).mean(),
               "kl": kl_divergence(mu.flatten(1), logvar.flatten(1), reduction=self.kl_reduction)}
        if self.criterion is not None:  # ``feat``: the target's features, when computed once
            out["perceptual"] = self.criterion(sr, hr, [batch["feat"]] if "feat" in batch else None)
        else:
            out["perceptual"] = sr.new_zeros(())
        return out

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.terms(batch)
        if self.training:
            for k, v in t.items():
                self._sums[k] += float(v.detach())
            self._n += 1
        return sum(self.loss_weights[k] * t[k] for k in t)

    def components(self) -> dict[str, float]:
        n = max(self._n, 1)
        out = {f"train_{k}": v / n for k, v in self._sums.items()}
        self._sums = dict.fromkeys(self._sums, 0.0)
        self._n = 0
        return out


def build_model(cfg, factor: int):
    """The untrained model of ``cfg.model`` for ``factor``: ``kind=dfc`` the paper's
    :class:`~lossnet.models.sr_vae.GlobalSRVAE` (input ``patch / factor``), ``kind=residual``
    :class:`~lossnet.models.sr_vae.SRVAE`."""
    from lossnet.models.sr_vae import SRVAE, GlobalSRVAE

    cfg = typed("srvae", cfg)
    m = cfg.model
    if m.kind == "dfc":
        return GlobalSRVAE(factor, cfg.patch // factor, m.latent, m.widths, m.normalize)
    return SRVAE(factor, m.channels, m.z_channels, m.blocks, m.down, m.residual, m.logvar_init, m.normalize)


def train_sr_vae(cfg, factor: int, weights: dict[str, float], loss_net, *, seed: int, ckpt_dir: Path | None,
                 data=None, label: str = ""):
    """Train one SR-VAE; returns ``(model in eval mode, FitResult, data info)`` (best validation PSNR kept)."""
    from lossnet.benchmarks.super_resolution import val_psnr
    from lossnet.train.engine import FitConfig, fit

    cfg = typed("srvae", cfg)
    train, val, info = data or training_data(cfg, factor, seed)
    torch.manual_seed(seed)
    model = build_model(cfg, factor)
    loss_net = loss_net if weights["perceptual"] > 0 else None
    train = with_target_features(train, "hr", loss_net, cfg)
    task = SRVAETask(model, weights, loss_net, cfg.kl_reduction)
    fc = FitConfig.from_section(cfg.train, seed=seed, device=cfg.device, progress=cfg.progress,
                                desc=label or f"srvae x{factor}")

    def validate(task, v, device):
        return -val_psnr(task.model.upscale, v, factor, cfg, device)

    def on_epoch_end(epoch, row):
        row.update(task.components())
        row["val_psnr"] = -row["val_loss"]
        log(f"    {label} epoch {epoch}: loss {row['train_loss']:.4g} (rec {row['train_reconstruction']:.4g}, "
            f"kl {row['train_kl']:.4g}, perc {row['train_perceptual']:.4g}), val PSNR {row['val_psnr']:.2f} dB, "
            f"{row['train_seconds']:.0f}+{row['val_seconds']:.0f} s")

    result = fit(task, train, fc, ckpt_dir=ckpt_dir, val_data=val, validate=validate, on_epoch_end=on_epoch_end)
    for row in result.history:
        row["val_psnr"] = -row["val_loss"]
    return model.eval(), result, info
