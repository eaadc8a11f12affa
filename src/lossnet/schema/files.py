"""Schemas of the config files (``configs/NAME.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from lossnet.schema.fields import (BIG, MAX_SIDE, MAX_THREADS, PROCEDURES, choice, count, device, fraction, items, num,
                                   precision, seed, text, threads)
from lossnet.schema.sections import Data, Encoder, Fit, LossNet, LunarLander, Probe, SrEval, SrTrain, Svhn

__all__ = ["Autoencoding", "Delineation", "Demo", "PaperA", "PaperB", "Run", "Similarity", "SrVae", "SuperResolution",
           "Sweep"]


@dataclass
class Run:
    """Settings shared by paper_a and paper_b (``lossnet run``)."""

    experiment: str = text("paper_b")
    dataset: str = choice("lunarlander", "lunarlander", "stl10", "svhn", doc="dataset")
    scale: str = text("quick", "scale preset")
    variant: Optional[str] = text(None, "variant preset")
    out: Optional[str] = text(None, "run directory")
    data_root: Optional[str] = None
    collection: Optional[str] = None
    seed: int = seed()
    repeats: int = count(1, 1, 1000, "repeats of every cell")
    z: Optional[List[int]] = items(None, ge=1, le=1 << 16, doc="embedding sizes")
    device: Optional[str] = device()
    threads: Optional[int] = threads()
    workers: Optional[int] = count(None, 1, MAX_THREADS, "rendering processes (null: all cores)")
    progress: bool = True
    feature_cache: str = choice("memory", "memory", "run", "home", doc="where teacher features are kept")
    keep_checkpoints: bool = False
    export_encoders: bool = False
    report: bool = True
    lunarlander: LunarLander = field(default_factory=LunarLander)
    svhn: Svhn = field(default_factory=Svhn)
    data: Data = field(default_factory=Data)
    loss_net: LossNet = field(default_factory=LossNet)
    encoder: Encoder = field(default_factory=Encoder)
    probe: Probe = field(default_factory=Probe)


@dataclass
class PaperADecoder:
    enabled: bool = True
    init: str = choice("fresh", "fresh", "pretrained", doc="decoder initialisation")
    epochs: int = count(50, 1, 100_000, "decoder epochs")
    batch_size: int = count(512, 1, BIG, "decoder batch size")
    lr: float = num(1e-3, gt=0.0, le=10.0, doc="decoder learning rate")
    val_fraction: float = fraction(0.2)


@dataclass
class PaperAFigures:
    reconstructions: int = count(4, 0, 1000, "test images whose reconstructions each cell keeps")


@dataclass
class ZByDataset:
    lunarlander: List[int] = items([32], ge=1, le=1 << 16)
    stl10: List[int] = items([64], ge=1, le=1 << 16)
    svhn: List[int] = items([32], ge=1, le=1 << 16)


@dataclass
class PaperA(Run):
    models: List[str] = items(["AE-PW"], choices=("AE-PW", "VAE-PW", "AE-PS", "VAE-PS"), doc="models")
    z_by_dataset: ZByDataset = field(default_factory=ZByDataset)
    decoder: PaperADecoder = field(default_factory=PaperADecoder)
    figures: PaperAFigures = field(default_factory=PaperAFigures)


@dataclass
class Baseline:
    simple_cnn: bool = True
    z: Optional[int] = count(None, 1, 1 << 16, "encoder output width")
    hidden: int = count(256, 1, 1 << 16, "MLP width")
    epochs: Optional[int] = count(None, 1, 100_000)
    batch_size: Optional[int] = count(None, 1, BIG)
    lr: Optional[float] = num(None, gt=0.0, le=10.0)
    val_fraction: Optional[float] = num(None, gt=0.0, lt=1.0)
    patience: Optional[int] = count(None, 1, 100_000)


@dataclass
class PaperBFigures:
    convergence_z: Optional[int] = count(None, 1, 1 << 16, "z of the convergence figure")


@dataclass
class PaperB(Run):
    procedures: List[str] = items(list(PROCEDURES), choices=PROCEDURES, doc="pretraining procedures")
    baseline: Baseline = field(default_factory=Baseline)
    figures: PaperBFigures = field(default_factory=PaperBFigures)


@dataclass
class Demo:
    """``lossnet demo`` (configs/demo.yaml)."""

    out: str = text("demo_out", "output directory")
    scale: str = choice("quick", "quick", "paper", doc="quick (2-core CPU, minutes) or paper (GPU)")
    procedures: List[str] = items(["I-I-PW", "I-I-PS", "I-F-FP"], choices=PROCEDURES, doc="procedures to compare")
    z: int = count(64, 1, 1 << 16, "embedding size")
    seed: int = seed()
    lr: float = num(1e-3, gt=0.0, le=10.0, doc="encoder learning rate")
    rollouts: Optional[List[int]] = items(None, min_len=3, max_len=3, ge=1, le=100_000, doc="rollouts of runs 1-3")
    epochs: Optional[int] = count(None, 1, 100_000, "encoder epochs (null: from the scale)")
    probe_epochs: Optional[int] = count(None, 1, 100_000, "probe epochs (null: from the scale)")
    batch_size: Optional[int] = count(None, 1, BIG, "encoder batch size (null: from the scale)")
    workers: Optional[int] = count(None, 1, MAX_THREADS, "rendering processes (null: all cores)")
    device: Optional[str] = device()
    progress: bool = True
    precision: str = precision()
    channels_last: bool = False
    compile: bool = False
    logger: str = choice("csv", "csv", "tensorboard", "none", doc="per-epoch history")




@dataclass
class Slurm:
    partition: Optional[str] = None
    time_min: int = count(120, 1, 1_000_000, "minutes per cell")
    gpus: int = count(1, 0, 64, "GPUs per cell")
    cpus: int = count(8, 1, MAX_THREADS, "CPUs per cell")
    mem_gb: float = num(32, gt=0, le=1e5, doc="memory per cell (GB)")
    array_parallelism: int = count(32, 1, 100_000, "cells running at once")
    cluster: Optional[str] = choice(None, "slurm", "local", "debug", doc="submitit cluster")
    folder: Optional[str] = None
    additional: Dict[str, Any] = field(default_factory=dict)
    poll_seconds: float = num(10, gt=0, le=3600, doc="seconds between polls")


@dataclass
class Sweep:
    """``lossnet sweep`` settings every benchmark shares (configs/sweep.yaml)."""

    loss_net: Any = text("all", "all | available | registered | names")
    layer: Any = text(None, "extraction layers, e.g. E,L")
    weights: str = choice("imagenet", "imagenet", "random", doc="ImageNet or seeded random weights")
    init_seed: int = seed("seed of random weights")
    seed: int = seed("the cells' seed")
    scale: str = text("quick", "scale preset")
    out: Optional[str] = None
    jobs: int = count(1, 1, MAX_THREADS, "local worker processes")
    threads: Optional[int] = threads("torch threads per cell")
    mp_context: str = choice("spawn", "spawn", "forkserver", "fork", doc="start method of local workers")
    launcher: str = choice("local", "local", "slurm", doc="local processes or SLURM")
    device: Optional[str] = device()
    workers: Optional[int] = count(None, 1, MAX_THREADS, "rendering processes")
    progress: bool = False
    keep_checkpoints: bool = False
    report: bool = True
    slurm: Slurm = field(default_factory=Slurm)


@dataclass
class Similarity(Sweep):
    """Benchmark 1, perceptual similarity (configs/similarity.yaml)."""

    data: str = choice("proxy", "proxy", "bapps", doc="proxy distortions or BAPPS")
    root: Optional[str] = None
    normalize: str = choice("imagenet", "imagenet", "lpips", doc="input normalisation")
    tasks: List[str] = items(["2afc", "jnd"], choices=("2afc", "jnd"), doc="BAPPS tasks")
    split: str = choice("val", "val", "train", doc="BAPPS split")
    n_patches: int = count(64, 1, BIG, "proxy patches")
    batch_size: int = count(64, 1, BIG, "batch size")


@dataclass
class SrModel:
    blocks: int = count(5, 1, 64, "residual blocks")
    channels: int = count(64, 1, 4096, "channels")
    residual: bool = False


@dataclass
class SuperResolution(Sweep):
    """Benchmark 2, super-resolution (configs/super_resolution.yaml)."""

    factors: List[int] = items([4, 8], ge=2, le=16, doc="upscaling factors")
    sr_root: Optional[str] = None
    train_root: Optional[str] = None
    test_sets: List[str] = items(["set5"], doc="test sets")
    val_root: Optional[str] = None
    val_images: int = count(100, 1, BIG, "validation images")
    val_patch: int = count(256, 8, 4096, "validation crop side (px)")
    patch: int = count(288, 8, MAX_SIDE, "training patch side (px)")
    train_images: Optional[int] = count(None, 1, BIG * 16, "distinct training images")
    n_patches: int = count(10000, 1, BIG * 16, "training crops")
    subset_seed: int = seed()
    blur_sigma: float = num(1.0, ge=0.0, le=100.0, doc="Gaussian blur sigma")
    antialias: bool = True
    references: List[str] = items(["bicubic", "pixel"], min_len=0, choices=("bicubic", "pixel"))
    model: SrModel = field(default_factory=SrModel)
    train: SrTrain = field(default_factory=SrTrain)
    feature_cache_gb: float = num(2.0, ge=0.0, le=1e5, doc="feature cache budget (GB)")
    tv_weight: float = num(0.0, ge=0.0, le=1e6, doc="total-variation weight")
    eval: SrEval = field(default_factory=SrEval)
    examples: List[str] = items([], min_len=0)
    crop: int = count(96, 8, MAX_SIDE, "example crop side (px)")


@dataclass
class Synthetic:
    kind: str = choice("roads", "roads", "cracks", doc="synthetic images")
    n_train: int = count(2000, 2, BIG, "training images")
    n_test: int = count(400, 1, BIG, "test images")
    train_seed: int = seed()
    test_seed: int = seed()


@dataclass
class Massachusetts:
    mode: str = choice("tiles", "tiles", "resize", doc="tiles or whole images")
    tile: int = count(300, 8, 1500, "tile side (px)")
    max_blank: float = num(0.5, ge=0.0, le=1.0, doc="largest no-data share of a tile")
    max_train: Optional[int] = count(None, 1, BIG)
    max_test: Optional[int] = count(None, 1, BIG)
    validation: str = choice("official", "official", "split", doc="validation split")


@dataclass
class UNet:
    base: int = count(64, 1, 1024, "channels at the first level")
    depth: int = count(4, 1, 8, "poolings")
    up: str = choice("transpose", "transpose", "bilinear", doc="upsampling")


@dataclass
class Delineation(Sweep):
    """Benchmark 3, delineation (configs/delineation.yaml)."""

    dataset: str = choice("synthetic", "synthetic", "massachusetts", doc="dataset")
    data_root: Optional[str] = None
    size: int = count(224, 16, MAX_SIDE, "input side (px)")
    synthetic: Synthetic = field(default_factory=Synthetic)
    massachusetts: Massachusetts = field(default_factory=Massachusetts)
    unet: UNet = field(default_factory=UNet)
    iterations: int = count(3, 1, 100, "U-Net applications")
    detach: bool = False
    mu: float = num(0.01, ge=0.0, le=1e6, doc="topology loss weight")
    iteration_weights: str = choice("linear", "linear", "uniform", "last", doc="weights of the iterations")
    tolerance: float = num(3.0, ge=0.0, le=100.0, doc="completeness/correctness buffer (px, a Euclidean distance)")
    threshold: float = num(0.5, gt=0.0, lt=1.0, doc="road threshold")
    feature_cache_gb: float = num(2.0, ge=0.0, le=1e5, doc="feature cache budget (GB)")
    validation: str = choice("quality", "quality", "loss", doc="epoch selection")
    baseline: bool = True
    train: Fit = field(default_factory=Fit)


@dataclass
class DataRoots:
    svhn: Optional[str] = None
    stl10: Optional[str] = None


@dataclass
class Autoencoding(Sweep):
    """Benchmark 4, autoencoding (configs/autoencoding.yaml)."""

    datasets: List[str] = items(["lunarlander"], choices=("lunarlander", "svhn", "stl10"), doc="datasets")
    procedure: str = choice("I-I-PS", *PROCEDURES, doc="pretraining procedure")
    z: int = count(64, 1, 1 << 16, "embedding size")
    sigmoid: Optional[bool] = None
    fp_max_dim: Optional[int] = count(16384, 1, BIG * 64, "largest feature target size (null: never pool)")
    ps_targets: str = choice("auto", "auto", "cache", "online", doc="I-I-PS targets")
    ps_cache_max_gb: float = num(4.0, ge=0.0, le=1e5, doc="target cache budget (GB)")
    data_root: Optional[str] = None
    data_roots: DataRoots = field(default_factory=DataRoots)
    collection: Optional[str] = None
    feature_cache: str = choice("memory", "memory", "run", "home", doc="where teacher features are kept")
    export_encoders: bool = False
    normalize: str = choice("imagenet", "none", "imagenet", "lpips", doc="loss-network input normalisation")
    lunarlander: LunarLander = field(default_factory=LunarLander)
    svhn: Svhn = field(default_factory=Svhn)
    data: Data = field(default_factory=Data)
    encoder: Encoder = field(default_factory=Encoder)
    probe: Probe = field(default_factory=Probe)


@dataclass
class SrLossWeights:
    preset: str = choice("tuned", "tuned", "paper", "paper_literal", doc="loss weights preset")
    reconstruction: Optional[float] = num(None, ge=0.0, le=1e6)
    kl: Optional[float] = num(None, ge=0.0, le=1e6)
    perceptual: Optional[float] = num(None, ge=0.0, le=1e6)


@dataclass
class Perceptual:
    arch: str = text("vgg16", "architecture")
    layer: Any = text(15, "layer index, E/S/M/L or node name")
    weights: str = choice("imagenet", "imagenet", "random", doc="ImageNet or seeded random weights")
    init_seed: int = seed()


@dataclass
class SrVaeModel:
    kind: str = choice("residual", "residual", "dfc", doc="model")
    normalize: str = choice("none", "none", "imagenet", doc="VAE input normalisation")
    latent: int = count(100, 1, 1 << 16, "global latent size")
    widths: List[int] = items([32, 64, 128, 256], ge=1, le=4096, doc="encoder conv channels")
    channels: int = count(48, 1, 4096)
    z_channels: int = count(16, 1, 4096)
    blocks: int = count(2, 0, 64)
    down: int = count(0, 0, 8)
    residual: bool = True
    logvar_init: float = num(-6.0, ge=-30.0, le=30.0)


@dataclass
class SrVae:
    """``lossnet srvae`` (configs/srvae.yaml)."""

    scale: str = choice("quick", "quick", "paper", "paper_residual", doc="preset")
    out: str = text("runs/srvae", "output directory")
    seed: int = seed()
    device: Optional[str] = device()
    threads: Optional[int] = threads()
    progress: bool = False
    data: str = choice("folder", "folder", "pets", doc="training data")
    train_root: Optional[str] = None
    pets_root: Optional[str] = None
    max_images: Optional[int] = count(None, 1, BIG)
    sr_root: Optional[str] = None
    test_sets: List[str] = items(["set5"])
    pets_test_images: Optional[int] = count(None, 1, BIG)
    pets_test_size: Optional[int] = count(None, 8, MAX_SIDE)
    factors: List[int] = items([2, 4], ge=2, le=16, doc="upscaling factors")
    runs: List[str] = items(["perceptual"], choices=("perceptual", "no_perceptual"))
    val_images: int = count(8, 1, BIG)
    val_patch: int = count(192, 8, 4096)
    patch: int = count(96, 8, MAX_SIDE)
    n_patches: int = count(2000, 1, BIG * 16)
    sampling: str = choice("patches", "patches", "resize", doc="training samples")
    blur_sigma: float = num(1.0, ge=0.0, le=100.0)
    antialias: bool = True
    feature_cache_gb: float = num(2.0, ge=0.0, le=1e5)
    kl_reduction: str = choice("mean", "mean", "sum", doc="KL reduction")
    loss_weights: SrLossWeights = field(default_factory=SrLossWeights)
    perceptual: Perceptual = field(default_factory=Perceptual)
    model: SrVaeModel = field(default_factory=SrVaeModel)
    train: SrTrain = field(default_factory=SrTrain)
    eval: SrEval = field(default_factory=SrEval)
    examples: List[str] = items([], min_len=0)
    crop: int = count(96, 8, MAX_SIDE)
    keep_checkpoints: bool = False
