"""Schemas of the commands without a config file: one field per flag (the field name is the flag's
argparse ``dest``, ``--batch-size`` -> ``batch_size``); ``lossnet.cli`` checks the parsed flags
against them before any data are read or generated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from lossnet.schema.fields import BIG, MAX_SIDE, MAX_THREADS, PROCEDURES, choice, count, device, items, num, precision, \
    seed, text

__all__ = ["Embed", "LunarLanderData", "Pretrain", "Report", "Select"]

IMAGE_SIDE = (32, MAX_SIDE)


@dataclass
class Pretrain:
    """``lossnet pretrain``."""

    images: str = text(None, "image folder, or lunarlander:DIR[:RUN]")
    out: str = text(None, "export directory (encoder.safetensors + config.json)")
    procedure: str = choice("I-F-FP", *PROCEDURES, doc="pretraining procedure")
    loss_net: str = text("paper", "'paper' (AlexNet 2nd ReLU + sigmoid) or an architecture")
    layer: Optional[str] = text(None, "E, S, M, L, an index or a node name (with --loss-net ARCH)")
    sigmoid: bool = field(default=False, metadata={"doc": "sigmoid on the loss network's features (with ARCH)"})
    size: int = count(64, *IMAGE_SIDE, "image side for folders (64 + 16n pixels)")
    z: int = count(64, 1, 1 << 16, "embedding size")
    vae: bool = field(default=False, metadata={"doc": "train a VAE"})
    gamma: float = num(1.0, ge=0.0, le=1e6, doc="KL weight for --vae")
    epochs: int = count(20, 1, 100_000, "training epochs")
    batch_size: int = count(128, 1, BIG, "batch size")
    lr: float = num(1e-3, gt=0.0, le=10.0, doc="learning rate (Adam)")
    patience: Optional[int] = count(None, 1, 100_000, "early-stopping patience in epochs (default: none)")
    seed: int = seed("seed of initialisation, split and batch order")
    device: Optional[str] = device()
    precision: str = precision()
    channels_last: bool = field(default=False, metadata={"doc": "channels_last memory format for the conv layers"})
    compile: bool = field(default=False, metadata={"doc": "torch.compile the training step"})
    logger: str = choice("csv", "csv", "tensorboard", "none", doc="per-epoch history in OUT")
    keep_checkpoint: bool = field(default=False, metadata={"doc": "keep OUT/checkpoint/last.pt after the export"})
    force: bool = field(default=False, metadata={"doc": "retrain and replace a finished export in OUT (kept intact "
                                                         "until the new one is complete); without it a matching "
                                                         "export is reused and a different one refused"})
    json: bool = field(default=False, metadata={"doc": "print the result as JSON (one object)"})


@dataclass
class Select:
    """``lossnet select``."""

    images: str = text(None, "image folder (one sub-folder per class, or unlabeled)")
    candidates: Optional[str] = text(None, "e.g. alexnet:E,alexnet:S,vgg16")
    budget_seconds: Optional[float] = num(None, gt=0.0, le=1e7, doc="time budget (seconds)")
    out: Optional[str] = text(None, "directory for select.json")
    size: int = count(64, *IMAGE_SIDE, "image side (64 + 16n pixels)")
    max_images: int = count(600, 10, BIG, "stratified subsample size")
    test_fraction: float = num(0.3, ge=0.05, le=0.95, doc="held-out share")
    epochs: int = count(3, 1, 100_000, "I-F-FP encoder epochs")
    z: int = count(64, 1, 1 << 16, "embedding size")
    probe_epochs: int = count(60, 1, 100_000, "probe epochs")
    grid: str = choice("paper_b", "paper_b", "linear", doc="probe grid")
    fp_max_dim: int = count(4096, 0, BIG * 64, "largest feature target size (0: never pool)")
    weights: str = choice("imagenet", "imagenet", "random", doc="loss-network weights")
    no_baseline: bool = False
    label_free: bool = False
    criterion: str = choice("cross-prediction", "cross-prediction", "retrieval", doc="label-free criterion")
    seed: int = seed()
    threads: int = count(1, 0, MAX_THREADS, "torch threads (0: torch's default)")
    device: Optional[str] = device()


@dataclass
class Embed:
    """``lossnet embed``."""

    encoder: str = text(None, "directory written by `lossnet pretrain` or the demo (encoders/NAME)")
    images: str = text(None, "image folder, or lunarlander:DIR[:RUN]")
    out: str = text(None, "output .npy file, (N, z) float32")


@dataclass
class LunarLanderData:
    """``lossnet data lunarlander``."""

    out: str = text(None, "output collection directory")
    rollouts: List[int] = items([20, 10, 10], min_len=2, max_len=3, ge=1, le=100_000, doc="rollouts per run")
    offscreen_tolerance: float = num(18.0, ge=0.0, le=600.0, doc="render pixels beyond the image edge")
    steps: int = count(150, 1, 1000, "frames per rollout")
    size: int = count(64, 8, 512, "square frame side in pixels")
    seed: int = seed("collection seed")
    workers: Optional[int] = count(None, 1, MAX_THREADS, "processes (default: all cores)")
    no_progress: bool = False


@dataclass
class Report:
    """``lossnet report``."""

    dir: str = text(None, "run or sweep directory (holding results.jsonl or sweep.json)")
    out: Optional[str] = text(None, "report file (default DIR/report.md or DIR/analysis.md)")
    json: bool = field(default=False, metadata={"doc": "print the written path as JSON"})
