"""Benchmark 4 (systematic analysis, Sec. IV-D): autoencoding with deep perceptual loss.

One cell = one loss network (architecture ``arch`` truncated at extraction layer ``layer`` in
E/S/M/L, *no* sigmoid) x one dataset:

1. an image autoencoder (the world-models encoder/decoder, ``z = 64``) is trained on the
   dataset's auxiliary images (LunarLander run 1, STL-10 ``unlabeled``, SVHN ``extra``) with the
   deep perceptual loss of Eq. 6, ``sum_k ||phi(x)_k - phi(A(x))_k||^2`` (procedure ``I-I-PS``;
   averaged instead of summed, which only rescales the loss for Adam);
2. the 7 paper-B probe MLPs are trained on the frozen embeddings of the labelled training images
   (80/20 train/validation, best validation epoch kept) and the probe with the lowest validation
   loss is tested;
3. the score is that probe's test metric: accuracy (fraction) on SVHN / STL-10, mean Euclidean
   position error (pixels, lower is better) on LunarLander.

Paper scale: 10 encoder epochs, 100 probe epochs, datasets SVHN (32x32 reflection-padded to
64x64) and STL-10 (96x96), as in the paper, and paper B's conventions, which the benchmark is
adapted from (the authors' code, guspih/Perceptual-Autoencoders): loss-network input not
normalised (``normalize=none``), probes on raw embeddings trained with MSE on one-hot labels,
LeakyReLU probe MLPs (``paper_b_leaky``), batch 512, LunarLander rollouts as the authors generated
them. Quick scale keeps ``fit_probe_grid``'s defaults (standardised inputs, cross-entropy, ReLU)
and ImageNet normalisation (docs/experiments.md, "Documented deviations"). Quick scale: a small LunarLander collection (many short
rollouts), 5 encoder epochs, 100 probe epochs; 0.5-3 minutes per cell on one CPU thread
(:data:`DEFAULTS`, docs/choosing.md).

``procedure=I-F-FP`` is the cheap variant (feature prediction: the loss network only runs once
per image, to cache the targets; paper B shows FP embeddings are as good as PS ones). Its
feature decoder ends in a sigmoid, so FP procedures use sigmoid features (paper B's convention;
``sigmoid=null`` picks this automatically) and, to keep the decoder's last layer small, feature
maps larger than ``fp_max_dim`` values are average-pooled spatially (``fp_max_dim=null``: never).

Entry points: :func:`autoencoding_cell` (one cell, from Python) and the ``autoencoding`` entry of
``lossnet sweep`` (:mod:`lossnet.benchmarks.sweep`), which uses :data:`DEFAULTS`, :func:`scores`,
:func:`variants`, :func:`identity`, :func:`prepare` and :func:`run_cell` from here.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lossnet.benchmarks.base import Benchmark, CellRequest, register_benchmark
from lossnet import distributed
from lossnet.config import read_text, typed
from lossnet.data.parts import load_data
from lossnet.errors import ConfigError
from lossnet.runs.encoder_cells import (
    RunContext,
    encoder_row,
    run_probes,
    train_and_embed,
)
from lossnet.runs.loss_nets import NORMALIZE, loss_net_identity
from lossnet.schema import identity as identity_of
from lossnet.schema.sections import Encoder, Probe

NAME = "autoencoding"

SCORE_NAMES = {"lunarlander": "lunarlander_error_px", "svhn": "svhn_accuracy", "stl10": "stl10_accuracy"}
"""Dataset -> score column of a results row."""

DEFAULTS = read_text("autoencoding")
"""The defaults: ``configs/autoencoding.yaml``."""


def scores(cfg) -> list:
    """The :class:`~lossnet.report.analysis.Score` of each configured dataset."""
    from lossnet.report.analysis import Score

    return [Score(SCORE_NAMES[d], NAME, d != "lunarlander") for d in _datasets(cfg)]


def _datasets(cfg) -> list[str]:
    ds = cfg.datasets
    ds = [ds] if isinstance(ds, str) else list(ds)
    return [str(d) for d in ds]


def check(cfg) -> None:
    """Validate the benchmark-4 settings against their schema (datasets, procedure, z, ps_targets,
    normalize, feature_cache ...: :func:`lossnet.config.validate`)."""
    from lossnet.config import validate

    validate(NAME, cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg))


def variants(cfg) -> list[dict]:
    """Extra cell coordinates: one cell per dataset."""
    return [{"dataset": d} for d in _datasets(cfg)]


def dataset_cfg(cfg, dataset: str) -> DictConfig:
    """A copy of ``cfg`` for one dataset (``dataset``, ``data_root`` resolved), as
    :func:`lossnet.data.parts.load_data` reads it."""
    c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    c.dataset = dataset
    roots = c.get("data_roots") or {}
    if dataset in roots and roots[dataset]:
        c.data_root = roots[dataset]
    return c


def _typed(cfg):
    """The settings as :class:`lossnet.schema.files.Benchmark4` (values typed; an instance as it is)."""
    return typed(NAME, cfg)


def _normalize(cfg) -> str | None:
    """The loss network's ``normalize`` argument: ``None`` for ``normalize=none``."""
    norm = _typed(cfg).normalize
    return None if norm == "none" else norm


def _rollout(cfg) -> str:
    from lossnet.data.lunarlander import DEFAULT_ROLLOUT

    return _typed(cfg).lunarlander.rollout or DEFAULT_ROLLOUT


def _sigmoid(cfg) -> bool:
    from lossnet.train.procedures import get_procedure

    cfg = _typed(cfg)
    if cfg.sigmoid is not None:
        return cfg.sigmoid
    return get_procedure(cfg.procedure).decoder == "feature"


def identity(cfg, coords: dict) -> dict:
    """Everything besides (arch, layer, weights) that determines a cell's result (enters its id)."""
    from lossnet.train.procedures import get_procedure

    ds = coords["dataset"]
    c, t = dataset_cfg(cfg, ds), _typed(cfg)
    roles = ("encoder", "probe", "test")
    data: dict[str, Any] = {"dataset": ds, "splits": {r: getattr(t.data, f"{r}_split") for r in roles},
                            "max": {r: getattr(t.data, f"max_{r}") for r in roles},
                            "subset_seed": t.data.subset_seed}
    if ds == "lunarlander":
        ll = t.lunarlander
        data["collection"] = {"rollouts": list(ll.rollouts), "steps": ll.steps, "seed": ll.seed, "size": ll.size}
        if _rollout(t) != "reset_on_done":  # keeps the ids of collections made before the rollout modes
            data["collection"]["rollout"] = _rollout(t)
    elif ds == "svhn":
        data["svhn"] = {"size": t.svhn.size, "mode": t.svhn.mode}
    proc = get_procedure(t.procedure)
    ident = {"procedure": proc.name, "z": t.z, "sigmoid": _sigmoid(t), "data": data,
             "encoder": identity_of(t.encoder, Encoder, drop=("gamma",)), "probe": identity_of(c.probe, Probe)}
    if proc.loss != "ps" and t.fp_max_dim:
        ident["fp_max_dim"] = t.fp_max_dim
    if t.normalize != "imagenet":  # likewise for configs without the key
        ident["normalize"] = t.normalize
    return ident


def prepare(cfg, out: Path) -> None:
    """Once per sweep, in the parent: generate the LunarLander collection; check data roots."""
    from lossnet.data.lunarlander import generate_collection

    for ds in _datasets(cfg):
        t = _typed(dataset_cfg(cfg, ds))  # data_root: the dataset's own
        if ds == "lunarlander":
            ll = t.lunarlander
            coll = Path(t.collection) if t.collection else out / "collection"
            try:
                generate_collection(coll, n_rollouts=tuple(ll.rollouts), seed=ll.seed, steps=ll.steps, size=ll.size,
                                    rollout=_rollout(t), workers=t.workers or None, progress=t.progress)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        elif not t.data_root:
            raise ConfigError(f"autoencoding on {ds} reads the official files: pass data_root=DIR or "
                              f"data_roots.{ds}=DIR (see docs/choosing.md)")
        elif not Path(t.data_root).expanduser().is_dir():
            raise ConfigError(f"data root for {ds} does not exist: {t.data_root}")


# --------------------------------------------------------------------------------------------
# Feature handling
# --------------------------------------------------------------------------------------------


def pool_to(feats: torch.Tensor, max_dim: int | None) -> torch.Tensor:
    """Average-pool (N, C, H, W) features spatially to the largest square grid with
    ``C * h * w <= max_dim`` (at least 1x1); returned unchanged when they already fit."""
    if not max_dim or feats[0].numel() <= max_dim:
        return feats
    c, h, w = feats.shape[1:]
    side = max(1, int(math.isqrt(max(1, max_dim // c))))
    side_h, side_w = min(side, h), min(side, w)
    out = []
    for i in range(0, len(feats), 256):  # memory-mapped caches: pool in chunks
        out.append(torch.nn.functional.adaptive_avg_pool2d(feats[i:i + 256].float(), (side_h, side_w)))
    return torch.cat(out)


class PooledCache:
    """A :class:`~lossnet.train.cache.FeatureCache` whose features are pooled by :func:`pool_to`
    (memoised per cached tensor), for feature-prediction procedures with large feature maps."""

    def __init__(self, inner, max_dim: int | None) -> None:
        self.inner, self.max_dim = inner, max_dim
        self._pooled: dict[int, torch.Tensor] = {}

    def get(self, images: torch.Tensor, net) -> torch.Tensor:
        full = self.inner.get(images, net)
        key = id(full)
        if key not in self._pooled:
            self._pooled[key] = pool_to(full, self.max_dim)
        return self._pooled[key]


def _feature_cache(cfg, out: Path):
    from lossnet.train.cache import FeatureCache

    cfg = _typed(cfg)
    where = {"memory": None, "run": out / "features", "home": "default"}[cfg.feature_cache]
    return FeatureCache(directory=where, progress=cfg.progress)


def _feature_numel(net, size: int) -> int:
    with torch.no_grad():
        return int(net(torch.zeros(1, 3, size, size))[0][0].numel())


# --------------------------------------------------------------------------------------------
# I-I-PS with targets computed online (datasets whose cached targets would not fit)
# --------------------------------------------------------------------------------------------


class _OnlinePS(torch.nn.Module):
    """I-I-PS task whose target features come from the loss network on every batch."""

    def __init__(self, model, loss_net) -> None:
        super().__init__()
        from lossnet.train.engine import Frozen

        # Frozen: the loss network is not a submodule, so it is never written to last.pt
        self.model, self.loss_net = model, Frozen(loss_net)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from lossnet.losses import perceptual_loss

        out, _, _ = self.model(batch["image"])
        return perceptual_loss(self.loss_net, out, batch["image"])


def _train_online(ctx: RunContext, cid: str, *, z: int, seed: int, desc: str):
    """Like :func:`~lossnet.runs.encoder_cells.train_and_embed` for I-I-PS, without the target
    cache (the loss network runs on the originals too: ~1.5x the compute, no feature memory)."""
    from dataclasses import replace

    from lossnet.runs.encoder_cells import TrainedCell
    from lossnet.train.engine import FitConfig, fit
    from lossnet.train.procedures import (
        EncoderConfig,
        TrainedEncoder,
        build_autoencoder,
        get_procedure,
    )

    e, d = ctx.cfg.encoder, ctx.data
    proc = get_procedure("I-I-PS")
    enc_cfg = EncoderConfig.from_section(e, procedure=proc.name, z=z, variational=False)
    fit_cfg = FitConfig.from_section(e, seed=seed, device=ctx.cfg.get("device"), progress=ctx.cfg.progress, desc=desc)
    torch.manual_seed(fit_cfg.seed)
    model = build_autoencoder(proc, enc_cfg, d.size, 1)
    result = fit(_OnlinePS(model, ctx.loss_net), {"image": d.encoder_images}, fit_cfg, ckpt_dir=ctx.cell_dir(cid))
    te = TrainedEncoder(proc.name, model, enc_cfg, replace(fit_cfg), result, d.size, (),
                        {"arch": ctx.loss_net.arch, "layers": [str(x) for x in ctx.loss_net.layer_refs],
                         "sigmoid": ctx.loss_net.sigmoid}, 0.0)
    t0 = time.perf_counter()
    probe_x, test_x = te.embed(d.probe_images), te.embed(d.test_images)
    return TrainedCell(te, probe_x.float(), test_x.float(), time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# The cell
# --------------------------------------------------------------------------------------------


def run_cell(cfg, arch: str, layer: str, coords: dict, *, loss_net, out: Path, cid: str, seed: int,
             label: str = "") -> dict:
    """One benchmark-4 cell with a ready loss network (single layer, sigmoid as configured).

    Returns ``{"scores": {score column: value}, "details": {...}}``: the test metric under its
    dataset's score name (:data:`SCORE_NAMES`), and the selected probe, the encoder's training
    record (:func:`~lossnet.runs.encoder_cells.encoder_row`, seconds) and the data counts.
    Resumes a half-trained encoder from ``out/cells/<cid>/last.pt``.
    """
    from lossnet.train.procedures import get_procedure

    ds = coords["dataset"]
    c = dataset_cfg(cfg, ds)
    t = _typed(c)
    proc = get_procedure(t.procedure)
    t0 = time.perf_counter()
    data = load_data(c, out)
    cache = _feature_cache(t, out)
    mode = None
    if proc.loss != "ps" and t.fp_max_dim:
        cache = PooledCache(cache, t.fp_max_dim)
    ctx = RunContext(c, out, data, loss_net, loss_net_identity(loss_net), cache, table=None)
    if proc.name == "I-I-PS":
        mode = t.ps_targets
        if mode == "auto":
            gb = len(data.encoder_images) * _feature_numel(loss_net, data.size) * 4 / 1e9
            mode = "cache" if gb <= t.ps_cache_max_gb else "online"
    if mode == "online":
        cell = _train_online(ctx, cid, z=t.z, seed=seed, desc=label or f"{arch}:{layer}")
    else:
        cell = train_and_embed(ctx, cid, procedure=proc.name, z=t.z, variational=False, seed=seed,
                               desc=label or f"{arch}:{layer}")
    grid = run_probes(ctx, cell, t.probe.grid, seed)
    enc = encoder_row(cell)
    enc.pop("history")
    if t.export_encoders and distributed.is_main():
        cell.encoder.export(ctx.cell_dir(cid) / "encoder")
    details = {"dataset": ds, "procedure": proc.name, "z": t.z, "metric": data.metric,
               "higher_is_better": data.higher_is_better, "test_score": grid.test_metric,
               "probe": grid.selected_name, "probe_val_loss": grid.selected.best_val_loss,
               "probe_seconds": grid.train_seconds, "ps_targets": mode, "feature_shape": list(cell.encoder.feat_shape),
               **enc, **data.counts(), "loss_net": ctx.loss_net_id, "history": cell.encoder.result.history,
               "cell_seconds": time.perf_counter() - t0}
    return {"scores": {SCORE_NAMES[ds]: grid.test_metric}, "details": details}


def autoencoding_cell(arch: str, layer: str, dataset: str = "lunarlander", *,
                      out: str | Path = "runs/autoencoding-cell",
                      weights: str | dict | None = "imagenet", scale: str = "quick", seed: int = 0,
                      overrides: dict | None = None) -> dict:
    """Benchmark 4 for one loss network on one dataset, from Python.

    Args:
        arch, layer: architecture and extraction layer (E/S/M/L, a child index or node name).
        dataset: ``lunarlander``, ``svhn`` or ``stl10``.
        out: directory for the LunarLander collection, checkpoints and cached features.
        weights: ``"imagenet"`` (raises :class:`~lossnet.zoo.WeightsUnavailableError` when
            missing), ``None`` (random) or a state dict.
        scale: ``quick`` or ``paper`` (:data:`DEFAULTS`).
        overrides: nested settings on top, e.g. ``{"procedure": "I-F-FP", "encoder": {"epochs": 1}}``.

    Returns ``{"arch", "layer", "dataset", "score", <score name>, "details": {...}, "seconds"}``.
    """
    from lossnet.zoo import LossNetwork

    cfg = load_defaults(scale)
    base = OmegaConf.merge(cfg, {"datasets": [dataset], "seed": seed, "progress": False, "device": None,
                                 "workers": None}, OmegaConf.create(overrides or {}))
    check(base)
    out = Path(out)
    prepare(base, out)
    t0 = time.perf_counter()
    net = LossNetwork(arch, layers=[layer], weights=weights, sigmoid=_sigmoid(base), normalize=_normalize(base))
    from lossnet.runs.cells import cell_id

    cid = cell_id({"benchmark": NAME, "arch": arch, "layer": str(layer), "seed": seed, "weights": net.weights_source,
                   "setting": identity(base, {"dataset": dataset})})
    res = run_cell(base, arch, str(layer), {"dataset": dataset}, loss_net=net, out=out, cid=cid, seed=seed)
    name = SCORE_NAMES[dataset]
    return {"arch": arch, "layer": layer, "dataset": dataset, "score": res["scores"][name], name: res["scores"][name],
            "details": res["details"], "seconds": time.perf_counter() - t0}


def load_defaults(scale: str = "quick") -> DictConfig:
    """:data:`DEFAULTS` with ``scales.<scale>`` merged in (presets removed)."""
    from lossnet.config import scaled_defaults

    return scaled_defaults(DEFAULTS, scale)


def make_loss_network(cfg, arch: str, layer: str, weights, seed: int | None = None):
    """The cell's loss network: ``arch`` at ``layer`` with ``weights`` (``seed``: of random ones),
    sigmoid (:func:`_sigmoid`) and input normalisation (``normalize``) as configured."""
    from lossnet.zoo import LossNetwork

    return LossNetwork(arch, layers=[layer], weights=weights, sigmoid=_sigmoid(cfg), normalize=_normalize(cfg),
                       seed=seed)


def run(req: CellRequest) -> dict:
    """The sweep's cell: the request's loss network (:func:`make_loss_network`) through :func:`run_cell`."""
    c = req.config
    net = make_loss_network(c, req.arch, req.layer, **req.weights_kwargs)
    res = run_cell(c, req.arch, req.layer, req.coords, loss_net=net, out=Path(req.out), cid=req.cid, seed=req.seed,
                   label=req.label)
    res["details"]["weights_source"] = net.weights_source
    return res


BENCHMARK = register_benchmark(Benchmark(
    "autoencoding", "autoencoding with deep perceptual loss, scored by downstream probes", DEFAULTS, scores, run,
    variants=variants, identity=identity, prepare=prepare, check=check), overwrite=True)
