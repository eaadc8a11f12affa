"""The shared steps of an encoder cell (paper A, paper B, benchmark 4): train the cell's encoder
(resuming from its checkpoint), embed the probe and test parts, fit the probe grid, complete the
row (the run loop, :mod:`lossnet.runs.loop`, appends it).

* :class:`RunContext` -- what a cell runs with (config, run directory, data, loss network, cache,
  results table).
* :func:`train_and_embed`, :func:`run_probes`, :func:`encoder_row`, :func:`finish_cell`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lossnet.data.parts import ExperimentData
from lossnet.runs.cells import cell_id, environment, utc_now
from lossnet.runs.table import ResultsTable

__all__ = ["RunContext", "TrainedCell", "encoder_row", "finish_cell", "fmt_score", "run_probes", "train_and_embed"]


# --------------------------------------------------------------------------------------------
# Run context
# --------------------------------------------------------------------------------------------


@dataclass
class RunContext:
    """What a cell runs with: the resolved config (``DictConfig``), the run directory, the data,
    the loss network and its identity, the teacher-feature cache and the results table."""

    cfg: Any
    out: Path
    data: ExperimentData
    loss_net: Any
    loss_net_id: dict
    cache: Any
    table: ResultsTable | None = None

    @property
    def device(self) -> str:
        from lossnet.utils import best_device

        return str(best_device(self.cfg.get("device")))

    def cell_dir(self, cid: str) -> Path:
        return self.out / "cells" / cid

    def feats(self, images: torch.Tensor) -> torch.Tensor:
        """Cached loss-network features (N, C, H, W) of uint8 images."""
        return self.cache.get(images, self.loss_net)


# --------------------------------------------------------------------------------------------
# Shared steps of a cell: encoder training, embeddings, probes, the row
# --------------------------------------------------------------------------------------------


@dataclass
class TrainedCell:
    """An encoder trained for one cell, with the embeddings of the probe and test parts."""

    encoder: Any  # lossnet.train.procedures.TrainedEncoder
    probe_x: torch.Tensor  # (N_p, z) float32
    test_x: torch.Tensor  # (N_t, z) float32
    embed_seconds: float


def train_and_embed(ctx: RunContext, cid: str, *, procedure: str, z: int, variational: bool, seed: int,
                    desc: str) -> TrainedCell:
    """Train the cell's encoder (resuming from ``cells/<id>/last.pt``) and embed probe/test images."""
    import time

    from lossnet.train.engine import FitConfig
    from lossnet.train.procedures import EncoderConfig, train_encoder

    e = ctx.cfg.encoder
    enc_cfg = EncoderConfig.from_section(e, procedure=procedure, z=z, variational=variational)
    fit_cfg = FitConfig.from_section(e, seed=seed, device=ctx.cfg.get("device"), progress=ctx.cfg.progress, desc=desc)
    te = train_encoder(ctx.data.encoder_images, enc_cfg, fit_cfg, loss_net=ctx.loss_net, cache=ctx.cache,
                       ckpt_dir=ctx.cell_dir(cid), identity={"cell": cid})
    t0 = time.perf_counter()
    d = ctx.data
    probe_x = te.embed(d.probe_images, ctx.feats(d.probe_images) if te.uses_features else None)
    test_x = te.embed(d.test_images, ctx.feats(d.test_images) if te.uses_features else None)
    return TrainedCell(te, probe_x.float(), test_x.float(), time.perf_counter() - t0)


def run_probes(ctx: RunContext, cell: TrainedCell, grid: str, seed: int):
    """Fit probe grid ``grid`` on the cell's embeddings with the settings of ``cfg.probe`` that
    enter the cell's id (those left null keep ``fit_probe_grid``'s defaults); returns a ``GridResult``."""
    from lossnet.eval.probes import fit_probe_grid
    from lossnet.schema import identity
    from lossnet.schema.sections import Probe

    p = ctx.cfg.probe
    d = ctx.data
    threads = torch.get_num_threads()
    if p.get("threads"):  # tiny matmuls: extra threads gain nothing and stall on a busy CPU
        torch.set_num_threads(p.threads)  # a validated int
    try:
        return fit_probe_grid(cell.probe_x, d.probe_targets, cell.test_x, d.test_targets, task=d.task, grid=grid,
                              seed=seed, device=ctx.device, progress=ctx.cfg.progress,
                              num_classes=10 if d.task == "classification" else None,
                              **identity(p, Probe, drop=("grid", "linear_grid")))
    finally:
        torch.set_num_threads(threads)


def encoder_row(cell: TrainedCell) -> dict:
    """Row fields describing the encoder's training (times in seconds)."""
    r = cell.encoder.result
    hist = r.history
    upto = hist[: r.best_epoch + 1] if r.best_epoch >= 0 else hist
    return {
        "val_loss": r.best_val, "best_epoch": r.best_epoch, "epochs_run": len(hist),
        "epoch_seconds": r.epoch_seconds, "precision": cell.encoder.fit.precision,
        "train_seconds": sum(h["train_seconds"] for h in hist),
        "total_seconds": r.total_seconds,
        "time_to_best_seconds": sum(h["train_seconds"] for h in upto),
        "feature_seconds": cell.encoder.feature_seconds, "embed_seconds": cell.embed_seconds,
        "resumed_epochs": r.resumed_from, "stopped_early": r.stopped_early,
        "history": [dict(h) for h in hist],
    }


def finish_cell(ctx: RunContext, cid: str, spec: dict, row: dict, cell: TrainedCell | None = None) -> dict:
    """Complete ``row`` (ids, environment, config, timestamp) and export the encoder if asked (rank 0
    under torchrun); every rank returns the row, which the run loop (:mod:`lossnet.runs.loop`) appends."""
    from omegaconf import OmegaConf

    from lossnet import distributed

    run_cfg = OmegaConf.to_container(ctx.cfg, resolve=True)
    full = {"cell_id": cid, "setting_id": cell_id(spec["setting"]), **row, **ctx.data.counts(),
            "device": ctx.device, "config": {"spec": spec, "run": run_cfg}, **environment(),
            "timestamp": utc_now()}
    main = distributed.is_main()
    if main and cell is not None and ctx.cfg.get("export_encoders"):
        cell.encoder.export(ctx.cell_dir(cid) / "encoder")
    return full


def fmt_score(metric: str, value: float) -> str:
    """A score for progress lines: pixels for position errors, percent for accuracies."""
    return f"{value:.2f} px" if metric == "position_error" else f"{100 * value:.1f} %"
