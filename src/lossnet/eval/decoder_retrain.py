"""Decoder retraining (paper A, Table VIII; thesis Table 2.2).

The encoder of a trained autoencoder is frozen and a fresh image decoder is trained on its
embeddings with pixel-wise (MSE) loss on the one training engine; the reconstructions of the test
images are then scored with the L1 norm.

Paper A: "the decoders of all autoencoders were retrained with pixel-wise MSE loss"; Table VIII:
"relative performance of reconstruction as measured by the L1 norm after retraining for the best
autoencoders". The thesis (Table 2.2) gives the same numbers as L1 losses "of the autoencoders with
the lowest L1-norm loss of each type (scaled per dataset such that the lowest L1-norm loss is 1)";
Paper A's percentages are the reciprocals (e.g. 1 / 1.07 = 93 %). This module reports per model

* ``rel_l1 = sum |x - x_hat| / sum |x|`` over all test pixels (x in [0, 1]), the relative L1 error;
* ``l1`` = mean |x - x_hat| per element and ``mse``;

and the report turns them into Table VIII (``min_model L1 / L1``, best z per model type).
Both rel_l1 and l1 give identical Table VIII ratios on one test set.

The encoder is frozen (``requires_grad=False``) and kept in eval mode (BatchNorm statistics fixed),
and the embedding is the deterministic ``mu`` (also for VAEs), so the embeddings are fixed numbers:
by default they are computed once and the engine trains the decoder on them
(``precompute=True``), which gives the same training as running the frozen encoder every batch
(``precompute=False``) at a fraction of the cost.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from lossnet.losses import pixel_loss
from lossnet.models import Autoencoder, ImageDecoder
from lossnet.train.engine import FitConfig, FitResult, fit
from lossnet.utils import batched, best_device, to_unit

__all__ = ["DecoderRetrainResult", "FrozenEncoderDecoder", "retrain_decoder", "reconstruction_errors"]


class FrozenEncoderDecoder(nn.Module):
    """Training task: frozen ``encoder`` -> trainable ``decoder``, pixel-wise loss.

    Batches hold ``image`` (N, 3, S, S) in [0, 1] and either ``z`` (N, Z) precomputed embeddings or
    ``input`` (what the encoder takes: images, or loss-network features for feature encoders).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, pixel_loss_kind: str = "mse") -> None:
        super().__init__()
        self.encoder, self.decoder, self.kind = encoder, decoder, pixel_loss_kind
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> "FrozenEncoderDecoder":
        super().train(mode)
        self.encoder.eval()  # frozen BatchNorm statistics
        return self

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "z" in batch:
            return batch["z"]
        with torch.no_grad():
            return self.encoder(batch["input"])[0]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return pixel_loss(self.decoder(self.embed(batch)), batch["image"], self.kind)


@dataclass
class DecoderRetrainResult:
    """Outcome of :func:`retrain_decoder` (errors on the test images, pixel values in [0, 1])."""

    rel_l1: float  # sum|x - x_hat| / sum|x|
    l1: float  # mean |x - x_hat| per element
    mse: float  # mean (x - x_hat)^2 per element
    result: FitResult  # the decoder's training history
    decoder: nn.Module
    seconds: float  # wall time of embedding + training + evaluation

    def as_dict(self) -> dict:
        return {"rel_l1": self.rel_l1, "l1": self.l1, "mse": self.mse, "best_epoch": self.result.best_epoch,
                "epochs_run": len(self.result.history), "val_loss": self.result.best_val,
                "epoch_seconds": self.result.epoch_seconds, "seconds": self.seconds}


def _embed(encoder: nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    encoder.eval()
    return batched(lambda x: encoder(x)[0], inputs, batch_size, device, dtype=torch.float32)


@torch.no_grad()
def reconstruction_errors(decoder: nn.Module, z: torch.Tensor, images: torch.Tensor, *, batch_size: int = 256,
                          device: torch.device | str | None = None) -> dict[str, float]:
    """``rel_l1``, ``l1``, ``mse`` of ``decoder(z)`` (N, 3, S, S) against uint8 ``images``."""
    device = torch.device(device) if device is not None else next(decoder.parameters()).device
    decoder.eval()
    abs_sum = ref_sum = sq_sum = 0.0
    n = 0
    for i in range(0, len(z), batch_size):
        x = to_unit(images[i:i + batch_size].to(device))
        x_hat = decoder(z[i:i + batch_size].to(device))
        abs_sum += (x - x_hat).abs().sum().item()
        sq_sum += (x - x_hat).pow(2).sum().item()
        ref_sum += x.abs().sum().item()
        n += x.numel()
    return {"rel_l1": abs_sum / max(ref_sum, 1e-12), "l1": abs_sum / n, "mse": sq_sum / n}


def retrain_decoder(model: Autoencoder | nn.Module, images: torch.Tensor, fit_cfg: FitConfig, *,
                    test_images: torch.Tensor, inputs: torch.Tensor | None = None,
                    test_inputs: torch.Tensor | None = None, init: str = "fresh", precompute: bool = True,
                    pixel_loss_kind: str = "mse", ckpt_dir: str | Path | None = None,
                    batch_size: int = 256) -> DecoderRetrainResult:
    """Freeze ``model``'s encoder, train an image decoder with pixel loss, score test reconstructions.

    Args:
        model: an :class:`~lossnet.models.Autoencoder` (its ``encoder`` is used) or a bare encoder
            module returning ``(mu, logvar)``.
        images: uint8 (N, 3, S, S) decoder training images (80/20 train/val inside :func:`fit`).
        fit_cfg: engine settings for the decoder (epochs, batch size, lr, seed ...).
        test_images: uint8 (M, 3, S, S) images the errors are computed on.
        inputs, test_inputs: what the encoder takes when it is not the images themselves (cached
            loss-network features (N, C, H, W) for feature encoders); default the images.
        init: ``"fresh"`` (a newly initialised :class:`~lossnet.models.ImageDecoder`, seeded with
            ``fit_cfg.seed``) or ``"pretrained"`` (continue from a copy of the model's own image
            decoder).
        precompute: embed once and train on the fixed embeddings (same result, faster).
        ckpt_dir: the engine's resumable checkpoint directory.
    """
    if init not in ("fresh", "pretrained"):
        raise ValueError(f"init must be 'fresh' or 'pretrained', got {init!r}")
    if images.dtype != torch.uint8 or test_images.dtype != torch.uint8:
        raise ValueError("images and test_images must be uint8 (N, 3, S, S)")
    t0 = time.perf_counter()
    encoder = copy.deepcopy(model.encoder if isinstance(model, Autoencoder) else model)
    size = images.shape[-1]
    device = best_device(fit_cfg.device)
    encoder.to(device)
    with torch.no_grad():
        z_dim = encoder(to_unit((inputs if inputs is not None else images)[:2].to(device)))[0].shape[1]
    if init == "pretrained":
        if not isinstance(model, Autoencoder) or not isinstance(model.decoder, ImageDecoder):
            raise ValueError("init='pretrained' needs an Autoencoder with an image decoder")
        decoder = copy.deepcopy(model.decoder)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fit_cfg.seed)
            decoder = ImageDecoder(z_dim, size)
    task = FrozenEncoderDecoder(encoder, decoder, pixel_loss_kind)
    src = inputs if inputs is not None else images
    test_src = test_inputs if test_inputs is not None else test_images
    if precompute:
        data = {"z": _embed(encoder, src, device, batch_size), "image": images}
    else:
        data = {"input": src, "image": images}
    cfg = replace(fit_cfg, desc=fit_cfg.desc if fit_cfg.desc != "train" else "decoder")
    result = fit(task, data, cfg, ckpt_dir=ckpt_dir)
    z_test = _embed(encoder, test_src, device, batch_size)
    errs = reconstruction_errors(task.decoder, z_test, test_images, batch_size=batch_size, device=device)
    task.to("cpu")
    return DecoderRetrainResult(errs["rel_l1"], errs["l1"], errs["mse"], result, task.decoder,
                                time.perf_counter() - t0)
