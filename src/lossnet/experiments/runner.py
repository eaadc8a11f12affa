"""``lossnet run EXPERIMENT [key=value ...]`` and ``lossnet report DIR``.

A run loads ``configs/EXPERIMENT.yaml`` with OmegaConf and merges, in this order, the base config,
``scales.<scale>`` (``quick`` | ``paper``), ``variants.<variant>`` and the command-line
``key=value`` overrides (``OmegaConf.from_dotlist``; nested keys with dots, lists as ``[a,b]``).
A key that is not in the base config is an error that lists the valid keys.

The sweep's cells (e.g. procedure x z x repeat) each get a deterministic id, the hash of everything
that determines their result (data, loss network, training and probe settings, coordinates,
seed). A cell whose id is already in ``<out>/results.jsonl`` is skipped, so an interrupted sweep
resumes where it stopped; a half-trained cell resumes from its engine checkpoint
``<out>/cells/<id>/last.pt``. Each finished cell appends one row; the report
(``report.md`` + figures) is written at the end.

Under ``torchrun --nproc-per-node N`` every rank runs the same cells (each cell's training data
parallel, :func:`lossnet.train.engine.fit`); rank 0 alone holds the lock and writes the config,
the rows and the report (docs/scaling.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from lossnet import config
from lossnet.data.parts import DATASETS, load_data
from lossnet.errors import ConfigError
from lossnet.experiments import paper_a, paper_b
from lossnet.runs.cells import remove_checkpoints
from lossnet.runs.encoder_cells import RunContext
from lossnet.runs.loop import Cell, LoopResult, final_report, run_cells, run_directory
from lossnet.runs.plugin import Experiment, get, register, registry
from lossnet.runs.loss_nets import build_loss_net, loss_net_identity
from lossnet.runs.table import ResultsTable
from lossnet.utils import fault_point, log

for _mod, _what in ((paper_a, "paper A: autoencoders and VAEs with pixel-wise or perceptual loss, probed"),
                   (paper_b, "paper B: six encoder-pretraining procedures compared by probes and training time")):
    register(Experiment(_mod.__name__.rsplit(".", 1)[-1], _what, check=_mod.check, cells=_mod.cells,
                        run_cell=_mod.run_cell, describe=_mod.describe_row), overwrite=True)
EXPERIMENTS: dict[str, Experiment] = registry(Experiment.kind)  # type: ignore[assignment]
"""The registered experiments (:class:`~lossnet.runs.plugin.Experiment`, the ``"experiment"`` registry)."""

_LIST_KEYS = ("z", "procedures", "models")


def config_path(experiment: str) -> Path:
    """``configs/EXPERIMENT.yaml`` of a known experiment."""
    get(Experiment.kind, experiment)  # ConfigError listing the known ones
    return config.config_path(experiment)


def load_config(experiment: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved config of ``experiment``: base < scales[scale] < variants[variant] < overrides.

    Raises :class:`~lossnet.errors.ConfigError` (one line) for unknown experiments, keys,
    scales, variants, datasets or sweep values.
    """
    config_path(experiment)  # a ConfigError listing the known experiments
    cfg = config.resolve(experiment, overrides)  # the one loader: presets, overrides, whole-config validation
    return _finalise(cfg, experiment)


def _finalise(cfg: DictConfig, experiment: str) -> DictConfig:
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    if "z" in cfg and cfg.z is None and "z_by_dataset" in cfg:
        cfg.z = cfg.z_by_dataset[cfg.dataset]
    for k in _LIST_KEYS:
        if k in cfg and cfg[k] is not None and not isinstance(cfg[k], ListConfig):
            cfg[k] = [cfg[k]]
    if cfg.get("feature_cache") not in ("memory", "run", "home"):
        raise ConfigError(f"feature_cache must be memory, run or home, got {cfg.get('feature_cache')!r}")
    if not cfg.get("out"):
        cfg.out = f"runs/{experiment}-{cfg.dataset}" + (f"-{cfg.variant}" if cfg.variant else "")
    EXPERIMENTS[experiment].check(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _feature_cache(settings, out: Path):
    """The teacher-feature cache of the typed run settings (``feature_cache``, ``progress``)."""
    from lossnet.train.cache import FeatureCache

    where = {"memory": None, "run": out / "features", "home": "default"}[settings.feature_cache]
    return FeatureCache(directory=where, progress=settings.progress)


def run_experiment(experiment: str, overrides: Sequence[str] = (), *, loss_net=None,
                   on_row: Callable[[dict], None] | None = None) -> Path:
    """Run (or resume) a configured sweep; returns the run directory.

    Args:
        experiment: ``"paper_a"`` or ``"paper_b"``.
        overrides: ``key=value`` strings (see :func:`load_config`).
        loss_net: a :class:`~lossnet.zoo.LossNetwork` to use instead of ``cfg.loss_net`` (its identity
            still enters the cell ids).
        on_row: called with every newly appended row.
    """
    cfg = load_config(experiment, overrides)
    settings = config.typed(experiment, cfg)  # the same settings, every value of its declared type
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        with run_directory(Path(settings.out), files={"config.yaml": OmegaConf.to_yaml(cfg)}) as out:
            return _run_locked(experiment, cfg, settings, loss_net, on_row, out)
    finally:
        torch.set_num_threads(threads)


def _run_locked(experiment: str, cfg: DictConfig, settings, loss_net, on_row, out: Path) -> Path:
    mod = EXPERIMENTS[experiment]
    t0 = time.perf_counter()
    data = load_data(cfg, out)
    fault_point("data")
    net = loss_net if loss_net is not None else build_loss_net(settings.loss_net)
    table = ResultsTable(out)
    ctx = RunContext(cfg, out, data, net, loss_net_identity(net), _feature_cache(settings, out), table)
    cells = [Cell(cid, label, (coords, sp)) for coords, sp, cid, label in mod.cells(ctx)]

    def header(res: LoopResult, n_todo: int) -> str:
        return (f"{experiment} on {data.name} ({cfg.scale} scale): {res.planned} cells, {res.done_before} already in "
                f"{table.path}; encoder/probe/test images {len(data.encoder_images)}/{len(data.probe_images)}/"
                f"{len(data.test_images)}")

    def tidy(cid: str) -> None:
        if not cfg.keep_checkpoints:
            remove_checkpoints(ctx.cell_dir(cid))

    run_cells(table, cells, lambda c: mod.run_cell(ctx, c.item[0], c.item[1], c.cid, c.label), tidy=tidy,
              describe=mod.describe, on_row=on_row, header=header)
    log(f"sweep finished in {time.perf_counter() - t0:.0f} s; results in {table.path} and {table.csv_path}")
    if cfg.report:
        from lossnet.report import write_report

        final_report(lambda: write_report(out))
    return out
