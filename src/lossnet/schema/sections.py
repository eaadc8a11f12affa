"""Sections shared by several schemas: training loop, encoder, probes, loss network, data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

__all__ = ["Data", "Encoder", "Fit", "LossNet", "LunarLander", "Probe", "SrEval", "Svhn", "SrTrain"]

from lossnet.schema.fields import (BIG, MAX_SIDE, choice, count, fraction, in_identity, items, num, precision, seed,
                                   text, threads)

GRIDS = ("paper_b", "paper_b_leaky", "paper_a", "linear")
"""The probe grids of :mod:`lossnet.eval.probe_specs` (checked equal there by tests/test_schema.py)."""


@dataclass
class Fit:
    """Training loop settings (``lossnet.train.engine.FitConfig``)."""

    epochs: int = count(10, 1, 100_000, "training epochs")
    batch_size: int = count(128, 1, BIG, "batch size")
    lr: float = num(1e-3, gt=0.0, le=10.0, doc="learning rate (Adam)")
    weight_decay: float = num(0.0, ge=0.0, le=10.0, doc="weight decay")
    precision: str = in_identity(precision(), "never")  # how a cell runs, not what it computes
    channels_last: bool = in_identity(field(default=False, metadata={"doc": "channels_last memory format"}), "never")
    compile: bool = in_identity(field(default=False, metadata={"doc": "torch.compile the training step"}), "never")
    logger: str = in_identity(choice("csv", "csv", "tensorboard", "none", doc="per-epoch history"), "never")
    val_fraction: float = fraction(0.2, "validation share of the training images")
    patience: Optional[int] = count(None, 1, 100_000, "early-stopping patience (epochs; null: none)")


@dataclass
class Encoder(Fit):
    """Encoder pretraining (``lossnet.train.procedures.EncoderConfig``)."""

    gamma: float = num(1.0, ge=0.0, le=1e6, doc="KL weight of a VAE")
    hidden: int = count(2048, 1, 1 << 16, "feature encoder/decoder MLP width")
    pixel_loss: str = choice("mse", "mse", "l1", "bce", doc="pixel-wise loss")
    deterministic: bool = in_identity(field(default=False, metadata={
        "doc": "deterministic kernels, bit-identical reruns"}), "never")


@dataclass
class Probe:
    """Probe training (``lossnet.eval.probe_training``)."""

    grid: str = choice("paper_b", *GRIDS, doc="probe grid")
    linear_grid: Optional[str] = in_identity(choice(None, *GRIDS, doc="grid of the linear regressor (null: none)"),
                                             "when set")
    epochs: int = count(100, 1, 100_000, "probe epochs")
    batch_size: int = count(512, 1, BIG, "probe batch size")
    lr: float = num(1e-3, gt=0.0, le=10.0, doc="probe learning rate")
    val_fraction: float = fraction(0.2, "validation share of the probe images")
    standardize_inputs: Optional[bool] = in_identity(field(default=False, metadata={
        "doc": "embeddings to mean 0 / std 1 (null: fit_probe_grid's default)", "id_key": "standardize"}), "when set")
    standardize_targets: Optional[bool] = in_identity(field(default=True, metadata={
        "doc": "positions to mean 0 / std 1 (null: fit_probe_grid's default)"}), "when set")
    classification_loss: Optional[str] = in_identity(choice(
        "mse", "mse", "cross_entropy", doc="classification probe loss (null: fit_probe_grid's default)"), "when set")
    threads: Optional[int] = in_identity(threads("torch threads while probes train (null: as the run)"), "never")


@dataclass
class LossNet:
    """The loss network (``lossnet.runs.loss_nets.build_loss_net``)."""

    name: str = text("paper", "preset 'paper' or an architecture")
    layers: Optional[Any] = text(None, "layers of an architecture, e.g. [S]")
    sigmoid: Optional[bool] = None
    normalize: str = choice("none", "none", "imagenet", "lpips", doc="input normalisation")
    weights: str = choice("imagenet", "imagenet", "random", doc="ImageNet or seeded random weights")
    init_seed: int = seed("seed of random weights")


@dataclass
class Data:
    """Splits and subsets of the image datasets."""

    encoder_split: Optional[str] = None
    probe_split: Optional[str] = None
    test_split: Optional[str] = None
    max_encoder: Optional[int] = count(None, 1, BIG * 16, "at most this many encoder images")
    max_probe: Optional[int] = count(None, 1, BIG * 16, "at most this many probe images")
    max_test: Optional[int] = count(None, 1, BIG * 16, "at most this many test images")
    subset_seed: int = seed("seed of the subsets")
    verify: bool = True


@dataclass
class LunarLander:
    """The LunarLander collection (``lossnet.data.lunarlander.generate_collection``)."""

    layout: str = choice("paper_b", "paper_a", "paper_b", doc="three runs (paper_b) or two (paper_a)")
    rollouts: List[int] = items([700, 700, 700], ge=1, le=100_000, doc="rollouts per run")
    test_fraction: float = fraction(0.2, "test share of run 2 (layout paper_a)")
    rollout: str = choice("reset_on_done", "reset_on_done", "authors", doc="episode ends: reset, or keep stepping "
                          "(the authors')")
    offscreen_tolerance: float = num(18.0, ge=0.0, le=600.0, doc="render pixels beyond the image edge")
    steps: int = count(150, 1, 1000, "frames per rollout")
    seed: int = seed("collection seed")
    size: int = count(64, 8, 512, "square frame side in pixels")


@dataclass
class Svhn:
    size: int = count(64, 32, MAX_SIDE, "image side")
    mode: str = choice("tile", "tile", "reflect", "resize", doc="32 -> size")


@dataclass
class SrEval:
    colour: str = choice("y", "y", "rgb", doc="scored channel(s)")
    border: Optional[int] = count(None, 0, MAX_SIDE, "pixels removed on each side (null: the factor)")
    quantize: bool = True




@dataclass
class SrTrain:
    """Training of the super-resolution models (benchmark 2, SR-VAE)."""

    epochs: int = count(10, 1, 100_000, "training epochs")
    batch_size: int = count(16, 1, BIG, "batch size")
    lr: float = num(1e-3, gt=0.0, le=10.0, doc="learning rate (Adam)")
    weight_decay: float = num(0.0, ge=0.0, le=10.0, doc="weight decay")
    precision: str = precision()
    channels_last: bool = False
    compile: bool = False
    logger: str = choice("csv", "csv", "tensorboard", "none", doc="per-epoch history")
