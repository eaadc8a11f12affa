"""The benchmark registry: what ``lossnet sweep`` can run.

Each benchmark module (:mod:`~lossnet.benchmarks.similarity`, :mod:`~lossnet.benchmarks.super_resolution`,
:mod:`~lossnet.benchmarks.delineation`, :mod:`~lossnet.benchmarks.autoencoding`) registers one
:class:`Benchmark`: its defaults (``configs/benchmarkN.yaml``), score columns, extra cell
coordinates, what enters a cell's id, a one-off ``prepare`` step, the cell function and an optional
report section. More plug in with :func:`register_benchmark`. Their names: ``similarity``,
``super_resolution``, ``delineation``, ``autoencoding`` (benchmarks 1 to 4; ``benchmark1`` ...
``benchmark4`` are accepted for them by :func:`get_benchmark`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from omegaconf import ListConfig

from lossnet.errors import ConfigError
from lossnet.runs.launch import CellRequest
from lossnet.runs.plugin import Plugin, get, register, registry
from lossnet.schema import benchmark_name
from lossnet.zoo.layers import LAYER_KEYS as LAYERS

__all__ = ["BENCHMARKS", "LAYERS", "Benchmark", "CellRequest", "get_benchmark", "register_benchmark",
           "ARCH_KEYWORDS", "resolve_archs", "resolve_layers", "single_layer_cell"]


def _one_cell(cfg) -> list:
    return [{}]


def _no_identity(cfg, coords) -> dict:
    return {}


def _no_prepare(cfg, out) -> None:
    return None


def _no_check(cfg) -> None:
    return None


@dataclass(frozen=True)
class Benchmark(Plugin):
    """A benchmark the sweep can run: the run loop's plugin of kind ``"benchmark"``
    (:mod:`lossnet.runs.plugin`).

    Attributes:
        name: ``lossnet sweep NAME``.
        description: one line for ``--help``.
        defaults: YAML of its settings, with ``scales: {quick: ..., paper: ...}`` presets.
        scores: ``cfg -> [Score]``, the score columns its rows carry (for the analysis).
        run: ``CellRequest -> {"scores": {column: value}, "details": {...}}``; raise
            :class:`~lossnet.zoo.WeightsUnavailableError` to have the cell recorded as skipped.
        variants: ``cfg -> [coords]``, extra cell coordinates (default ``[{}]``: one cell per
            loss network); they become row columns.
        identity: ``(cfg, coords) -> dict``, the settings that determine a cell's result (they
            enter its id, with the architecture, layer, weights and seed).
        prepare: ``(cfg, out) -> None``, run once in the parent before any cell (data generation,
            checks).
        check: ``cfg -> None``, validate settings (raise ConfigError).
        report: ``(sweep dir, its rows, figures dir, markdown dir) -> markdown``, a section of its
            own appended to the analysis (e.g. reference rows that are not loss networks).
    """

    defaults: str
    scores: Callable[[Any], list]
    run: Callable[[CellRequest], dict]
    variants: Callable[[Any], list] = _one_cell
    identity: Callable[[Any, dict], dict] = _no_identity
    prepare: Callable[[Any, Path], None] = _no_prepare
    check: Callable[[Any], None] = _no_check
    report: Callable[[Path, list, Path, Path], str] | None = None
    kind: ClassVar[str] = "benchmark"


BENCHMARKS: dict[str, Benchmark] = registry(Benchmark.kind)  # type: ignore[assignment]
"""The registered benchmarks (the live ``"benchmark"`` registry of :mod:`lossnet.runs.plugin`)."""


def register_benchmark(b: Benchmark, *, overwrite: bool = False) -> Benchmark:
    """Make ``b`` available to ``lossnet sweep`` (benchmarks 2 and 3 plug in here)."""
    if not isinstance(b, Benchmark):
        raise TypeError(f"register_benchmark takes a Benchmark, got {type(b).__name__}")
    return register(b, overwrite=overwrite)


def single_layer_cell(run_cell: Callable, req: CellRequest) -> dict:
    """A cell of a benchmark whose ``run_cell(cfg, arch, layer, coords, *, loss_net, out, cid, seed,
    label)`` takes the request's single-layer loss network, no sigmoid (benchmarks 2 and 3); bind it
    with ``functools.partial(single_layer_cell, run_cell)`` (picklable)."""
    net = req.loss_network()
    res = run_cell(req.config, req.arch, req.layer, req.coords, loss_net=net, out=Path(req.out), cid=req.cid,
                   seed=req.seed, label=req.label)
    res["details"]["weights_source"] = net.weights_source
    return res
def get_benchmark(name: str) -> Benchmark:
    """The registered :class:`Benchmark` called ``name``, or by its former numbered name
    (``benchmark1`` ... ``benchmark4``, :data:`lossnet.schema.BENCHMARK_ALIASES`); ConfigError listing
    the known ones otherwise."""
    return get(Benchmark.kind, benchmark_name(name))


def _as_list(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (list, tuple, ListConfig)):
        return [str(x).strip() for x in v if str(x).strip()]
    return [s.strip() for s in str(v).split(",") if s.strip()]


ARCH_KEYWORDS = ("all", "available", "registered")
"""Keywords of ``loss_net``: ``all`` = the paper's 14 architectures (:data:`lossnet.zoo.PAPER_ARCHS`),
``available`` = those of the 14 whose ImageNet weights are present on this machine, ``registered``
= every registered architecture (the 14, ``efficientnet_lite0`` and any registered at run time)."""


def resolve_archs(value) -> list[str]:
    """``loss_net`` -> architecture names: a comma list (or list) of :data:`ARCH_KEYWORDS` and
    registered names, expanded in registry order and de-duplicated, e.g. ``all,efficientnet_lite0``
    = the paper's 14 plus EfficientNet-Lite0. Unknown names raise ConfigError listing the known ones."""
    from lossnet import zoo

    names = _as_list(value)
    known = zoo.list_archs()
    bad = [a for a in names if a not in known and a not in ARCH_KEYWORDS]
    if bad or not names:
        raise ConfigError(f"unknown loss network(s) {bad or value!r}; use all (the paper's 14), available (those of "
                          f"the 14 with weights here), registered, or a comma list of {', '.join(known)}")
    out: list[str] = []
    for n in names:
        if n == "all":
            out += zoo.paper_archs()
        elif n == "available":
            out += [a for a in zoo.paper_archs() if zoo.status(a).available]
        elif n == "registered":
            out += known
        else:
            out.append(n)
    return list(dict.fromkeys(out))


def resolve_layers(value) -> list[str]:
    """``E,S,M,L`` (a comma string or a list) -> the extraction-layer keys, validated, duplicates dropped."""
    layers = [x.upper() for x in _as_list(value)]
    bad = [x for x in layers if x not in LAYERS]
    if bad or not layers:
        raise ConfigError(f"layer must be a comma list of E, S, M, L (Table II), got {value!r}")
    return list(dict.fromkeys(layers))
