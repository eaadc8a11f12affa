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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..train.cache import FeatureCache, compute_features, feature_shape, images_fingerprint, net_identity
from ..losses import feature_prediction_loss, kl_divergence, perceptual_loss, pixel_loss
from ..models import Autoencoder, FeatureDecoder, FeatureEncoder, ImageDecoder, ImageEncoder
from ..zoo.network import LossNetwork
from ..errors import UserError
from ..utils import CorruptFileError, batched, load_safetensors, read_json, write_failure
from ..zoo.weights import ChecksumError, sha256_file
from ..schema.fields import build
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

    @classmethod
    def from_section(cls, section, **extra) -> "EncoderConfig":
        """The encoder settings of config ``section`` (``cfg.encoder``: ``gamma``, ``hidden``,
        ``pixel_loss``; its training keys are FitConfig's), cast to these types; ``extra``
        (``procedure``, ``z``, ``variational``) wins (:func:`lossnet.schema.build`)."""
        return build(cls, section, **extra)


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
                f"Use a later loss-network layer, pool the features (fp_max_dim=... in the autoencoding benchmark / select), "
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
        """Embeddings ``mu`` (N, z) of images (N, 3, S, S), S the training size: uint8 in 0..255,
        or floating point (any float dtype, float64 included) in [0, 1]. Floats above 1 (0..255
        values) are refused with a :class:`~lossnet.errors.UserError`, not silently clipped.
        Feature encoders need ``feats``, the loss network's features of ``images``."""
        self.model.eval()
        dev = next(self.model.parameters()).device
        check_images(images, self.image_size, "images")
        src = feats if self.uses_features else images
        if src is None:
            raise UserError(f"{self.procedure} encodes loss-network features: pass feats=")
        return batched(self.model.embed, src, batch_size, dev)

    def export(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write ``encoder.safetensors`` (whole autoencoder) and ``config.json`` to ``directory``.

        ``config.json`` records the safetensors file's sha256 (``encoder_sha256``), checked by
        :func:`load_encoder` / :func:`embed_images`, plus the JSON-able ``extra`` entries (e.g.
        ``lossnet pretrain``'s settings and data fingerprint). Both files are written to temporary
        names first and renamed at the end, so a failed export (full disk: one error naming the
        file) leaves a previous export in ``directory`` intact.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        weights, cfg_path = d / "encoder.safetensors", d / "config.json"
        tmp_w, tmp_c = d / f".encoder.safetensors.tmp{os.getpid()}", d / f".config.json.tmp{os.getpid()}"
        try:
            save_file({k: v.contiguous().cpu() for k, v in self.model.state_dict().items()}, str(tmp_w))
            cfg = {"procedure": self.procedure, "encoder": asdict(self.config), "fit": asdict(self.fit),
                   "image_size": self.image_size, "feat_shape": list(self.feat_shape), "loss_net": self.loss_net,
                   "best_epoch": self.result.best_epoch, "history": self.result.history,
                   "encoder_sha256": sha256_file(tmp_w), **(extra or {})}
            tmp_c.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
            os.replace(tmp_w, weights)
            os.replace(tmp_c, cfg_path)
        except BaseException as e:
            full = write_failure(e, d)  # a full disk, however safetensors or json report it: one line naming d
            if full is not None and full is not e:
                raise full from None
            raise
        finally:
            tmp_w.unlink(missing_ok=True)
            tmp_c.unlink(missing_ok=True)
        return d


class ImageInputError(UserError, ValueError):
    """Images passed to the training API are not (N, 3, S, S) uint8 / [0, 1] floats of the right size."""


def check_images(images, size: int | None = None, what: str = "images") -> None:
    """Raise one :class:`ImageInputError` (a :class:`~lossnet.errors.UserError`) unless ``images`` is a (N, 3, S, S) tensor,
    uint8 (0..255) or floating point in [0, 1], with S = ``size`` when given."""
    if not isinstance(images, torch.Tensor):
        raise ImageInputError(f"{what} must be a torch.Tensor (N, 3, S, S), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ImageInputError(f"{what} must be (N, 3, S, S) RGB, got shape {tuple(images.shape)}")
    if size is not None and tuple(images.shape[2:]) != (size, size):
        raise ImageInputError(f"{what} must be {size}x{size} px for this encoder, got {images.shape[2]}x{images.shape[3]}; "
                        f"resize them (e.g. load_image_folder(..., size={size}))")
    if images.dtype == torch.uint8:
        return
    if not images.is_floating_point():
        raise ImageInputError(f"{what} must be uint8 (0..255) or floating point in [0, 1], got {images.dtype}")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= 0 and hi <= 1):  # NaN fails too
            hint = "; these look like 0..255 values: pass uint8 or divide by 255" if hi > 1 and hi <= 255 else ""
            raise ImageInputError(f"floating-point {what} must be in [0, 1], got values in [{lo:g}, {hi:g}]{hint}")


class ExportChecksumError(ChecksumError, UserError):
    """``encoder.safetensors`` differs from the sha256 its ``config.json`` records."""


class ExportMissingError(UserError, FileNotFoundError):
    """A directory given as an exported encoder lacks ``config.json`` or ``encoder.safetensors``."""


_EXPORT_FIX = "re-export the encoder (`lossnet pretrain --out DIR --force`, or TrainedEncoder.export)"
_EXPORT_KEYS = ("procedure", "encoder", "image_size", "feat_shape", "loss_net")


def _check_export_config(cfg: dict, cfg_path: Path) -> None:
    def bad(problem: str):
        return CorruptFileError(f"{cfg_path} {problem}: {_EXPORT_FIX}")

    if not isinstance(cfg["procedure"], str) or cfg["procedure"].upper() not in PROCEDURES:
        raise bad(f"names an unknown procedure {cfg['procedure']!r}")
    enc = cfg["encoder"]
    fields = set(EncoderConfig.__dataclass_fields__)
    if not isinstance(enc, dict) or not set(enc) <= fields:
        raise bad(f"has a malformed 'encoder' entry (an object with keys among {', '.join(sorted(fields))})")
    if not isinstance(enc.get("z", 64), int) or isinstance(enc.get("z"), bool) or enc.get("z", 64) < 1 or \
            not isinstance(enc.get("hidden", 1), int) or enc.get("hidden", 1) < 1:
        raise bad("has a malformed 'encoder' entry (z and hidden must be positive integers)")
    size = cfg["image_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 64 or (size - 64) % 16:
        raise bad(f"has image_size {size!r}, not 64 + 16n px")
    fs = cfg["feat_shape"]
    if not isinstance(fs, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                                     for x in fs):
        raise bad(f"has feat_shape {fs!r}, not a list of positive integers")
    ln = cfg["loss_net"]
    if not isinstance(ln, dict) or not {"arch", "layers", "sigmoid"} <= set(ln) or not isinstance(ln["layers"], list):
        raise bad("has a malformed 'loss_net' entry (an object with arch, layers (a list), sigmoid)")


def read_export(directory: str | Path) -> tuple[Path, dict]:
    """``(directory, its config.json)`` of an exported encoder, validated: the one reader of
    exports. A missing file, invalid JSON, a config lacking keys or of the wrong type, or an
    ``encoder.safetensors`` whose sha256 differs from the recorded one raises one
    :class:`~lossnet.errors.UserError` naming the file and the fix."""
    d = Path(directory)
    cfg_path, weights = d / "config.json", d / "encoder.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise ExportMissingError(f"{p} is missing: {d} is not an exported encoder (written by `lossnet pretrain "
                                   f"--out DIR` or TrainedEncoder.export)")
    cfg = read_json(cfg_path, _EXPORT_FIX, required=_EXPORT_KEYS)
    _check_export_config(cfg, cfg_path)
    expected = cfg.get("encoder_sha256")
    if expected is None:
        warnings.warn(f"{cfg_path} records no encoder_sha256 (exported by an older lossnet): {weights} cannot be "
                      "verified; re-export it to add the checksum", UserWarning, stacklevel=3)
    else:
        got = sha256_file(weights)
        if got != expected:
            raise ExportChecksumError(f"{weights} has sha256 {got} but {cfg_path} records {expected}: the file was corrupted "
                                f"or changed after export. Copy the export again or re-run `lossnet pretrain`.")
    return d, cfg


_read_export = read_export  # the name earlier callers used


def load_encoder(directory: str | Path) -> Autoencoder:
    """Rebuild an exported autoencoder (eval mode) from :meth:`TrainedEncoder.export`'s files
    (read by :func:`read_export`; weights that do not fit the recorded shapes are one
    :class:`~lossnet.utils.CorruptFileError` naming both files)."""
    d, cfg = read_export(directory)
    enc_cfg = EncoderConfig(**cfg["encoder"])
    feat_dim = 1
    for s in cfg["feat_shape"]:
        feat_dim *= s
    model = build_autoencoder(get_procedure(cfg["procedure"]), enc_cfg, cfg["image_size"], feat_dim)
    weights = d / "encoder.safetensors"
    state = load_safetensors(weights, _EXPORT_FIX)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # missing/unexpected keys, size mismatch
        first = str(e).strip().splitlines()
        why = next((ln.strip() for ln in first[1:] if ln.strip()), first[0] if first else "")[:160]
        raise CorruptFileError(f"{weights} does not match the model described by {d / 'config.json'} ({why}): "
                               f"{_EXPORT_FIX}") from None
    return model.eval()


def embed_images(directory: str | Path, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Embeddings (N, z) of uint8 images (N, 3, S, S) under an exported encoder.

    Feature encoders get the loss network named in the export's config (its features are
    computed here); image sizes must match the encoder's.
    """
    d, cfg = read_export(directory)
    check_images(images, cfg["image_size"])
    model = load_encoder(d)
    src = images
    if get_procedure(cfg["procedure"]).encoder == "feature":
        ln = cfg["loss_net"]
        layers = [int(x) if str(x).lstrip("-").isdigit() else x for x in ln["layers"]]
        net = LossNetwork(ln["arch"], layers=layers, sigmoid=ln["sigmoid"])
        src = FeatureCache(directory=None, progress=False).get(images, net)
    return batched(model.embed, src, batch_size)


def train_encoder(images: torch.Tensor, cfg: EncoderConfig, fit_cfg: FitConfig, *, loss_net: LossNetwork | None,
                  cache: FeatureCache | None = None, ckpt_dir: str | Path | None = None,
                  identity: dict | None = None) -> TrainedEncoder:
    """Pretrain an encoder with one procedure on uint8 images (N, 3, S, S).

    The loss network's features of ``images`` come from ``cache`` (computed once per dataset and
    loss network) or, without one, are computed for this call on ``fit_cfg``'s device (and stay
    there on a GPU when they fit: :func:`~lossnet.train.cache.compute_features`); the images are
    hashed only for the cache's key or a checkpoint. ``loss_net`` must return a single layer, and may be ``None`` only for I-I-PW,
    which never reads loss-network features. Images are checked first: at least 2 (a training
    and a validation split), square, 64 + 16n px; else one :class:`~lossnet.errors.UserError`.
    A checkpoint in ``ckpt_dir`` is
    resumed only when it was written for the same images (digest), procedure and model settings,
    loss network and fit settings, plus ``identity`` (anything else the caller's result depends
    on); otherwise training starts fresh (one line on stderr says what changed).
    """
    proc = get_procedure(cfg.procedure)
    check_images(images)
    if images.dtype != torch.uint8:
        raise ImageInputError(f"images must be uint8 (N, 3, S, S) for training, got {images.dtype}; "
                              "convert with (x * 255).round().to(torch.uint8)")
    if len(images) < 2:
        raise ImageInputError(f"train_encoder needs at least 2 images (a training and a validation split), "
                              f"got {len(images)}")
    h, w = images.shape[2:]
    if h != w or h < 64 or (h - 64) % 16:
        raise ImageInputError(f"images must be square, 64 + 16n px (64, 80, 96, ...), got {h}x{w}; resize them "
                              "(e.g. load_image_folder(..., size=64))")
    needs_feats = proc.encoder == "feature" or proc.loss in ("ps", "fp")
    if loss_net is None and needs_feats:
        raise UserError(f"{proc.name} needs a loss network (its {'loss' if proc.loss != 'pw' else 'encoder input'} "
                        "uses loss-network features): pass loss_net=LossNetwork(...); only I-I-PW trains without one")
    # the images are hashed (~0.15 s per 200 MB) only for a FeatureCache's key or a checkpoint, and
    # once; other caches (``get(images, net)``: fixed targets, benchmarks.autoencoding) need no key
    keyed = isinstance(cache, FeatureCache) and needs_feats
    digest = images_fingerprint(images) if keyed or ckpt_dir is not None else None
    t0 = time.perf_counter()
    # I-I-PW reads no features: none are computed (their shape comes from the shapes alone).
    # Without a cache they are computed for this call only, and stay on the GPU when they fit.
    if not needs_feats:
        feats = None
    elif cache is not None:
        feats = cache.get(images, loss_net, fingerprint=digest) if keyed else cache.get(images, loss_net)
    else:
        feats = compute_features(images, loss_net, device=fit_cfg.device, progress=fit_cfg.progress,
                                 keep_on_device=True)
    feature_seconds = time.perf_counter() - t0
    if feats is not None:
        feat_shape = tuple(feats.shape[1:])
    else:
        feat_shape = feature_shape(loss_net, tuple(images.shape[-2:])) if loss_net is not None else ()
    feat_dim = int(torch.Size(feat_shape).numel()) if feat_shape else 1
    torch.manual_seed(fit_cfg.seed)
    model = build_autoencoder(proc, cfg, images.shape[-1], feat_dim)
    task = EncoderTask(proc, cfg, model, loss_net)
    fit_cfg = replace(fit_cfg, desc=fit_cfg.desc if fit_cfg.desc != "train" else proc.name)
    # batches carry only what the procedure reads (I-I-PW never touches the features)
    data = {"image": images}
    if needs_feats:
        data["feat"] = feats
    ident = {"data": digest, "procedure": proc.name, "model": asdict(cfg),
             "loss_net": net_identity(loss_net) if loss_net is not None else None} if ckpt_dir is not None else {}
    result = fit(task, data, fit_cfg, ckpt_dir=ckpt_dir, identity={**ident, **(identity or {})})
    ln = ({"arch": loss_net.arch, "layers": [str(x) for x in loss_net.layer_refs], "sigmoid": loss_net.sigmoid}
          if loss_net is not None else {"arch": None, "layers": [], "sigmoid": False})
    return TrainedEncoder(proc.name, model, cfg, fit_cfg, result, images.shape[-1], feat_shape, ln, feature_seconds)
