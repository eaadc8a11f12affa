"""lossnet: loss networks for PyTorch.

Pretrained image networks whose deep features train or judge other models: deep perceptual
(PS) and feature-prediction (FP) losses, encoder pretraining, downstream probes and the
benchmarks to choose a loss network.

The names below are importable from ``lossnet`` directly (``from lossnet import LossNetwork``);
they are loaded on first use, so ``import lossnet`` (and ``lossnet --help``) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # the zoo
    "LossNetwork": "lossnet.zoo", "describe": "lossnet.zoo",
    "list_archs": "lossnet.zoo", "register": "lossnet.zoo",
    # losses (module and functional forms)
    "PixelLoss": "lossnet.losses", "pixel_loss": "lossnet.losses",
    "PerceptualLoss": "lossnet.losses", "perceptual_loss": "lossnet.losses",
    "FeaturePredictionLoss": "lossnet.losses", "feature_prediction_loss": "lossnet.losses",
    "FeatureReconstructionLoss": "lossnet.losses", "feature_reconstruction_loss": "lossnet.losses",
    "PerceptualDistance": "lossnet.losses", "perceptual_distance": "lossnet.losses",
    "KLDivergence": "lossnet.losses", "kl_divergence": "lossnet.losses",
    # metrics (torchmetrics.Metric: accumulate over batches, sync across processes)
    "PerceptualDistanceMetric": "lossnet.eval.torchmetrics", "DeepPerceptualSimilarity": "lossnet.eval.torchmetrics",
    "SuperResolutionScores": "lossnet.eval.torchmetrics", "SRPSNR": "lossnet.eval.torchmetrics",
    "SRSSIM": "lossnet.eval.torchmetrics", "DelineationScores": "lossnet.eval.torchmetrics",
    # training and evaluation
    "FitConfig": "lossnet.train.engine", "fit": "lossnet.train.engine",
    "EncoderConfig": "lossnet.train.procedures", "train_encoder": "lossnet.train.procedures",
    "embed_images": "lossnet.train.procedures",
    "fit_probe_grid": "lossnet.eval.probes",
    # errors
    "UserError": "lossnet.errors", "ConfigError": "lossnet.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lossnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
