"""Benchmark 1 (systematic analysis, Sec. IV-A): perceptual similarity with uniform weights.

A cell scores one loss network (architecture x E/S/M/L layer) with the uniform-weights distance of
Eq. 1 on BAPPS 2AFC/JND (``data=bapps``) or on the offline distortion proxy (``data=proxy``,
:func:`lossnet.eval.similarity.distortion_proxy`; NOT BAPPS). Defaults: ``configs/similarity.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from lossnet.types import PathLike
from lossnet.benchmarks.base import Benchmark, CellRequest, register_benchmark
from lossnet.config import read_text, typed
from lossnet.errors import ConfigError
from lossnet.eval.similarity import FeatureDistance, distortion_proxy, evaluate_bapps

__all__ = ["BENCHMARK", "DEFAULTS", "similarity_cell", "check", "identity", "prepare", "run", "scores"]


def similarity_cell(arch: str, layer: Union[str, int], data: str = "proxy", root: Optional[PathLike] = None, *,
                    weights: Union[str, dict, None] = "imagenet", normalize: Optional[str] = "imagenet",
                    tasks: Sequence[str] = ("2afc", "jnd"), split: str = "val", n_patches: int = 64,
                    seed: int = 0, batch_size: int = 64, device=None, init_seed: Optional[int] = None) -> dict:
    """Benchmark 1 for one loss network (``arch`` truncated at ``layer``, e.g. "E"/"S"/"M"/"L").

    Distance: Eq. 1 with uniform weights (unit-normalised channels, squared difference summed
    over channels, spatial mean) on the single extraction layer. ``data="bapps"`` evaluates the
    BAPPS folders at ``root`` (:func:`evaluate_bapps`); ``data="proxy"`` the distortion proxy on
    the images under ``root`` (e.g. ``shared/data/sr``). ``normalize`` is the input
    normalisation of :class:`lossnet.zoo.LossNetwork` ("imagenet": what the weights expect);
    ``init_seed``: the seed of ``weights="random"`` (``seed`` is the proxy's).

    Returns ``{"arch", "layer", "data", "2afc": mean 2AFC score, "jnd": mean JND mAP (each None
    if not run), "rows": [...], "seconds", "weights"}``. Raises
    :class:`lossnet.zoo.WeightsUnavailableError` before any work if ImageNet weights are missing
    (a sweep runner records the cell as skipped), FileNotFoundError if the data is missing.
    """
    from lossnet.zoo import LossNetwork, WeightsUnavailableError, status

    if data not in ("proxy", "bapps"):
        raise ValueError(f"data must be 'proxy' or 'bapps', got {data!r}")
    if root is None:
        raise ValueError("give root: the BAPPS `dataset` folder, or an image folder (e.g. shared/data/sr) for the proxy")
    if weights == "imagenet":
        st = status(arch)
        if not st.available:
            raise WeightsUnavailableError(f"{arch}: no ImageNet weights on this machine; {st.reason}")
    t0 = time.perf_counter()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    fn = FeatureDistance(LossNetwork(arch, layers=[layer], weights=weights, normalize=normalize,
                                     seed=init_seed)).to(dev)
    if data == "bapps":
        rows = evaluate_bapps(fn, root, tasks=tasks, split=split, batch_size=batch_size, device=dev)
    else:
        rows = distortion_proxy(fn, root, n_patches=n_patches, seed=seed, batch_size=batch_size, device=dev)
        rows = [r for r in rows if r["task"] in tasks]

    def mean_of(task):
        return next((r["score"] for r in rows if r["task"] == task and r["category"] == "mean"), None)

    return {"arch": arch, "layer": layer, "data": data, "2afc": mean_of("2afc"), "jnd": mean_of("jnd"),
            "rows": rows, "seconds": time.perf_counter() - t0,
            "weights": fn.net.weights_source}
DEFAULTS = read_text("similarity")
"""The defaults: ``configs/similarity.yaml``."""


def _typed(cfg):
    """The sweep config as :class:`lossnet.schema.files.Benchmark1` (values typed)."""
    return typed("similarity", cfg)


def scores(cfg) -> list:
    """The score columns of a benchmark-1 sweep (the proxy adds its discriminative rows)."""
    from lossnet.report.analysis import Score

    cfg = _typed(cfg)
    s = [Score(t, "similarity", True) for t in cfg.tasks]
    if cfg.data == "proxy":  # the proxy's discriminative rows (means saturate; docs/similarity.md)
        extra = (("2afc_cross", "2afc"), ("jnd_pooled", "jnd"))
        s += [Score(n, "similarity", True) for n, t in extra if t in cfg.tasks]
    return s


def check(cfg) -> None:
    """Validate the benchmark-1 settings (``data``, ``tasks``)."""
    cfg = _typed(cfg)
    if cfg.data not in ("proxy", "bapps"):
        raise ConfigError(f"data must be proxy or bapps, got {cfg.data!r}")
    bad = [t for t in cfg.tasks if t not in ("2afc", "jnd")]
    if bad or not cfg.tasks:
        raise ConfigError(f"tasks must be a subset of [2afc, jnd], got {list(cfg.tasks)}")


def identity(cfg, coords) -> dict:
    """The settings that determine a benchmark-1 cell's result (they enter its id)."""
    cfg = _typed(cfg)
    d = {"data": cfg.data, "root": cfg.root, "normalize": cfg.normalize, "tasks": cfg.tasks}
    d.update({"n_patches": cfg.n_patches} if cfg.data == "proxy" else {"split": cfg.split})
    return d


def prepare(cfg, out) -> None:
    """Before any cell: ``root`` must be an existing folder."""
    cfg = _typed(cfg)
    if not cfg.root:
        what = "an image folder such as shared/data/sr" if cfg.data == "proxy" else "the BAPPS dataset folder"
        raise ConfigError(f"similarity needs root=DIR ({what}); see docs/similarity.md")
    if not Path(cfg.root).expanduser().is_dir():
        raise ConfigError(f"root={cfg.root} is not a directory")


def run(req: CellRequest) -> dict:
    """The sweep's cell: :func:`similarity_cell` for the request's loss network and layer."""
    c, w = _typed(req.config), req.weights_kwargs
    res = similarity_cell(req.arch, req.layer, data=c.data, root=Path(c.root).expanduser(), weights=w["weights"],
                          init_seed=w["seed"], normalize=c.normalize, tasks=tuple(c.tasks), split=c.split,
                          n_patches=c.n_patches, seed=req.seed, batch_size=c.batch_size, device=c.device)
    scores = {t: res[t] for t in c.tasks}
    if c.data == "proxy":
        pick = {("2afc", "cross"): "2afc_cross", ("jnd", "pooled"): "jnd_pooled"}
        for r in res["rows"]:
            if (r["task"], r["category"]) in pick:
                scores[pick[(r["task"], r["category"])]] = r["score"]
    return {"scores": scores, "details": {"data": res["data"], "rows": res["rows"], "weights_source": res["weights"]}}


BENCHMARK = register_benchmark(Benchmark(
    "similarity", "perceptual similarity (BAPPS 2AFC/JND, or the offline proxy)", DEFAULTS, scores, run,
    identity=identity, prepare=prepare, check=check), overwrite=True)
