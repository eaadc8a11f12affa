"""The encoder-pretraining procedures of papers A and B on the one training engine.

Named ``(encoder)-(decoder)-(loss)`` (paper B): ``I`` image, ``F`` feature (the loss network's
features of the input image), ``PW`` pixel-wise, ``PS`` deep perceptual similarity, ``FP`` feature
prediction.

=========  ===============  ===============  =====================================================
name       encoder input    decoder output   loss
=========  ===============  ===============  =====================================================
I-I-PW     image            image            MSE(reconstruction, image)
I-I-PS     image            image            MSE(p(reconstruction), p(image))
F-I-PW     p(image)         image            MSE(reconstruction, image)
F-I-PS     p(image)         image            MSE(p(reconstruction), p(image))
I-F-FP     image            features         MSE(prediction, p(image))
F-F-FP     p(image)         features         MSE(prediction, p(image))
=========  ===============  ===============  =====================================================

Any procedure becomes a VAE (paper A) with ``variational=True``: the loss gains
``gamma * KL`` (KL averaged over latent dimensions). ``p(image)`` always comes from the
teacher-feature cache; only PS reconstructions pass through the loss network during training.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..train.cache import FeatureCache, feature_shape, images_fingerprint, net_identity
from ..losses import feature_prediction_loss, kl_divergence, perceptual_loss, pixel_loss
from ..models import Autoencoder, FeatureDecoder, FeatureEncoder, ImageDecoder, ImageEncoder
from ..zoo.network import LossNetwork
from ..zoo.weights import ChecksumError, sha256_file
from .engine import FitConfig, FitResult, Frozen, fit

DECODER_WARN_PARAMS = 100_000_000
"""Feature decoders with more parameters than this get a warning before they are built
(override per call with ``warn_params=`` or for a whole run with ``$LOSSNET_DECODER_WARN_PARAMS``)."""


class LargeModelWarning(UserWarning):
    """A model about to be built is very large (memory, checkpoint size)."""


def _warn_params() -> int:
    v = os.environ.get("LOSSNET_DECODER_WARN_PARAMS")
    try:
        return int(float(v)) if v else DECODER_WARN_PARAMS
    except ValueError:
        raise ValueError(f"LOSSNET_DECODER_WARN_PARAMS must be a number of parameters, got {v!r}") from None


def feature_decoder_params(z: int, feat_dim: int, hidden: int) -> int:
    """Parameters of :class:`~lossnet.models.FeatureDecoder` (z -> hidden -> feat_dim MLP)."""
    return z * hidden + hidden + hidden * feat_dim + feat_dim


@dataclass(frozen=True)
class Procedure:
    name: str
    encoder: str  # "image" | "feature"
    decoder: str  # "image" | "feature"
    loss: str  # "pw" | "ps" | "fp"

    @property
    def needs_loss_net_in_training(self) -> bool:
        return self.loss == "ps"


PROCEDURES: dict[str, Procedure] = {
    p.name: p for p in [
        Procedure("I-I-PW", "image", "image", "pw"),
        Procedure("I-I-PS", "image", "image", "ps"),
        Procedure("F-I-PW", "feature", "image", "pw"),
        Procedure("F-I-PS", "feature", "image", "ps"),
        Procedure("I-F-FP", "image", "feature", "fp"),
        Procedure("F-F-FP", "feature", "feature", "fp"),
    ]
}


def get_procedure(name: str) -> Procedure:
    try:
        return PROCEDURES[name.upper()]
    except KeyError:
        raise ValueError(f"unknown procedure {name!r}; choose from {', '.join(PROCEDURES)}") from None


@dataclass
class EncoderConfig:
    """Settings of one encoder-pretraining run (all of it is recorded with the results)."""

    procedure: str = "I-F-FP"
    z: int = 64
    variational: bool = False
    gamma: float = 1.0  # KL weight for VAEs
    hidden: int = 2048  # feature encoder/decoder MLP width
    pixel_loss: str = "mse"


def build_autoencoder(proc: Procedure, cfg: EncoderConfig, size: int, feat_dim: int, *,
                      warn_params: int | None = None) -> Autoencoder:
    """The encoder/decoder pair of ``proc`` for ``size`` x ``size`` images and ``feat_dim`` features.

    A feature decoder (FP procedures) has ``hidden * feat_dim`` weights, so an early layer with
    a large feature map makes it huge (vgg11 E at 64 px: 537M parameters, an 8.6 GB ``last.pt``).
    Over ``warn_params`` parameters (default :data:`DECODER_WARN_PARAMS` or
    ``$LOSSNET_DECODER_WARN_PARAMS``) one :class:`LargeModelWarning` line says how big and what to do.
    """
    if proc.decoder == "feature":
        n = feature_decoder_params(cfg.z, feat_dim, cfg.hidden)
        limit = _warn_params() if warn_params is None else warn_params
        if n > limit:
            gb = n * 4 / 1e9
            warnings.warn(
                f"{proc.name}: the feature decoder for {feat_dim:,} feature values has {n / 1e6:,.0f}M parameters "
                f"({gb:.1f} GB float32; a training checkpoint with Adam state and the best copy is ~{4 * gb:.1f} GB). "
                f"Use a later loss-network layer, pool the features (fp_max_dim=... in benchmark4 / select), "
                f"or a smaller hidden width; raise LOSSNET_DECODER_WARN_PARAMS (now {limit:,}) to silence this.",
                LargeModelWarning, stacklevel=2)
    enc = (ImageEncoder(cfg.z, size, cfg.variational) if proc.encoder == "image"
           else FeatureEncoder(feat_dim, cfg.z, cfg.hidden, cfg.variational))
    dec = ImageDecoder(cfg.z, size) if proc.decoder == "image" else FeatureDecoder(cfg.z, feat_dim, cfg.hidden)
    return Autoencoder(enc, dec)


class EncoderTask(nn.Module):
    """Training task of one procedure: ``loss(batch)`` with batch keys ``image`` (N, 3, S, S) in
    [0, 1] and ``feat`` (N, C, H, W) cached loss-network features of the images."""

    def __init__(self, proc: Procedure, cfg: EncoderConfig, model: Autoencoder, loss_net: LossNetwork | None) -> None:
        super().__init__()
        if proc.loss == "ps" and loss_net is None:
            raise ValueError(f"{proc.name} needs a loss network")
        self.proc, self.cfg, self.model = proc, cfg, model
        # Frozen: not a submodule, so neither last.pt nor best_state ever holds the loss network's weights
        self.loss_net = Frozen(loss_net) if proc.loss == "ps" else None

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inp = batch["image"] if self.proc.encoder == "image" else batch["feat"]
        out, mu, logvar = self.model(inp)
        if self.proc.loss == "pw":
            loss = pixel_loss(out, batch["image"], self.cfg.pixel_loss)
        elif self.proc.loss == "ps":
            loss = perceptual_loss(self.loss_net, out, target_features=batch["feat"])
        else:
            loss = feature_prediction_loss(out, batch["feat"])
        if logvar is not None:
            loss = loss + self.cfg.gamma * kl_divergence(mu, logvar)
        return loss


@dataclass
class TrainedEncoder:
    """A trained autoencoder with what it took to train it."""

    procedure: str
    model: Autoencoder
    config: EncoderConfig
    fit: FitConfig
    result: FitResult
    image_size: int
    feat_shape: tuple[int, ...]
    loss_net: dict  # arch, layers, sigmoid
    feature_seconds: float  # time spent computing teacher features (cache misses)

    @property
    def uses_features(self) -> bool:
        return get_procedure(self.procedure).encoder == "feature"

    @torch.no_grad()
    def embed(self, images: torch.Tensor, feats: torch.Tensor | None = None, batch_size: int = 512) -> torch.Tensor:
        """Embeddings ``mu`` (N, z) of uint8 images (N, 3, S, S); feature encoders need ``feats``."""
        self.model.eval()
        dev = next(self.model.parameters()).device
        src = feats if self.uses_features else images
        if src is None:
            raise ValueError(f"{self.procedure} encodes loss-network features: pass feats")
        out = []
        for i in range(0, len(src), batch_size):
            x = src[i:i + batch_size].to(dev)
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            out.append(self.model.embed(x).cpu())
        return torch.cat(out)

    def export(self, directory: str | Path) -> Path:
        """Write ``encoder.safetensors`` (whole autoencoder) and ``config.json`` to ``directory``.

        ``config.json`` records the safetensors file's sha256 (``encoder_sha256``), checked by
        :func:`load_encoder` / :func:`embed_images`.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".encoder.safetensors.tmp{os.getpid()}"
        save_file({k: v.contiguous().cpu() for k, v in self.model.state_dict().items()}, str(tmp))
        digest = sha256_file(tmp)
        os.replace(tmp, d / "encoder.safetensors")
        (d / "config.json").write_text(json.dumps({
            "procedure": self.procedure, "encoder": asdict(self.config), "fit": asdict(self.fit),
            "image_size": self.image_size, "feat_shape": list(self.feat_shape), "loss_net": self.loss_net,
            "best_epoch": self.result.best_epoch, "history": self.result.history, "encoder_sha256": digest}, indent=2))
        return d


def _read_export(directory: str | Path) -> tuple[Path, dict]:
    d = Path(directory)
    cfg_path, weights = d / "config.json", d / "encoder.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: {d} is not an exported encoder (written by `lossnet pretrain "
                                    f"--out DIR` or TrainedEncoder.export)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e}); re-export the encoder") from None
    expected = cfg.get("encoder_sha256")
    if expected is None:
        warnings.warn(f"{cfg_path} records no encoder_sha256 (exported by an older lossnet): {weights} cannot be "
                      "verified; re-export it to add the checksum", UserWarning, stacklevel=3)
    else:
        got = sha256_file(weights)
        if got != expected:
            raise ChecksumError(f"{weights} has sha256 {got} but {cfg_path} records {expected}: the file was corrupted "
                                f"or changed after export. Copy the export again or re-run `lossnet pretrain`.")
    return d, cfg


def load_encoder(directory: str | Path) -> Autoencoder:
    """Rebuild an exported autoencoder (eval mode) from :meth:`TrainedEncoder.export`'s files."""
    d, cfg = _read_export(directory)
    enc_cfg = EncoderConfig(**cfg["encoder"])
    feat_dim = 1
    for s in cfg["feat_shape"]:
        feat_dim *= s
    model = build_autoencoder(get_procedure(cfg["procedure"]), enc_cfg, cfg["image_size"], feat_dim)
    model.load_state_dict(load_file(str(d / "encoder.safetensors")))
    return model.eval()


def embed_images(directory: str | Path, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Embeddings (N, z) of uint8 images (N, 3, S, S) under an exported encoder.

    Feature encoders get the loss network named in the export's config (its features are
    computed here); image sizes must match the encoder's.
    """
    d, cfg = _read_export(directory)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != cfg["image_size"]:
        raise ValueError(f"images must be uint8 (N, 3, {cfg['image_size']}, {cfg['image_size']}) for this encoder, "
                         f"got {images.dtype} {tuple(images.shape)}")
    model = load_encoder(d)
    src = images
    if get_procedure(cfg["procedure"]).encoder == "feature":
        ln = cfg["loss_net"]
        layers = [int(x) if str(x).lstrip("-").isdigit() else x for x in ln["layers"]]
        net = LossNetwork(ln["arch"], layers=layers, sigmoid=ln["sigmoid"])
        src = FeatureCache(directory=None, progress=False).get(images, net)
    out = []
    with torch.no_grad():
        for i in range(0, len(src), batch_size):
            x = src[i:i + batch_size]
            out.append(model.embed(x.float().div(255) if x.dtype == torch.uint8 else x.float()))
    return torch.cat(out)


def train_encoder(images: torch.Tensor, cfg: EncoderConfig, fit_cfg: FitConfig, *, loss_net: LossNetwork,
                  cache: FeatureCache | None = None, ckpt_dir: str | Path | None = None,
                  identity: dict | None = None) -> TrainedEncoder:
    """Pretrain an encoder with one procedure on uint8 images (N, 3, S, S).

    The loss network's features of ``images`` come from ``cache`` (computed once per dataset and
    loss network); ``loss_net`` must return a single layer. A checkpoint in ``ckpt_dir`` is
    resumed only when it was written for the same images (digest), procedure and model settings,
    loss network and fit settings, plus ``identity`` (anything else the caller's result depends
    on); otherwise training starts fresh (one line on stderr says what changed).
    """
    proc = get_procedure(cfg.procedure)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
    cache = cache if cache is not None else FeatureCache(directory=None)
    t0 = time.perf_counter()
    # I-I-PW reads no features: none are computed (their shape comes from the shapes alone)
    feats = None if proc.loss == "pw" and proc.encoder == "image" else cache.get(images, loss_net)
    feat_shape = feature_shape(loss_net, tuple(images.shape[-2:])) if feats is None else tuple(feats.shape[1:])
    feature_seconds = time.perf_counter() - t0
    feat_dim = int(torch.Size(feat_shape).numel())
    torch.manual_seed(fit_cfg.seed)
    model = build_autoencoder(proc, cfg, images.shape[-1], feat_dim)
    task = EncoderTask(proc, cfg, model, loss_net)
    fit_cfg = FitConfig(**{**asdict(fit_cfg), "desc": fit_cfg.desc if fit_cfg.desc != "train" else proc.name})
    # batches carry only what the procedure reads (I-I-PW never touches the features)
    data = {"image": images}
    if proc.encoder == "feature" or proc.loss in ("ps", "fp"):
        data["feat"] = feats
    ident = {"data": images_fingerprint(images), "procedure": proc.name, "model": asdict(cfg),
             "loss_net": net_identity(loss_net), **(identity or {})}
    result = fit(task, data, fit_cfg, ckpt_dir=ckpt_dir, identity=ident)
    return TrainedEncoder(proc.name, model, cfg, fit_cfg, result, images.shape[-1], feat_shape,
                          {"arch": loss_net.arch, "layers": [str(x) for x in loss_net.layer_refs],
                           "sigmoid": loss_net.sigmoid}, feature_seconds)
