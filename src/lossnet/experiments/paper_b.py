"""Paper B (thesis Part II): six encoder-pretraining procedures compared by probe performance and
training time.

Sweep: ``repeats`` x ``z`` x ``procedures`` (I-I-PW, I-I-PS, F-I-PW, F-I-PS, I-F-FP, F-F-FP), each
cell an autoencoder trained with the AlexNet loss network (2nd ReLU + sigmoid), its embeddings
judged by the paper-B probe grid (7 MLPs, 500 epochs, best validation epoch; the probe with the
lowest validation loss is tested). Each row records the test score, the selected probe, the
encoder's per-epoch history (for the convergence figure, Fig. 9), epoch and total training time
(Figs. 6-8, Table 2). Table 1 (SVHN, z = 500, probes trained on ``extra``) is the ``svhn_z500``
variant of ``configs/paper_b.yaml``.
"""

from __future__ import annotations

from typing import Any

from lossnet.errors import ConfigError
from lossnet.runs.cells import cell_id
from lossnet.runs.encoder_cells import (
    RunContext,
    encoder_row,
    encoder_settings,
    finish_cell,
    probe_settings,
    run_probes,
    train_and_embed,
)
from lossnet.train.procedures import PROCEDURES, get_procedure

NAME = "paper_b"


def check(cfg) -> None:
    """Validate paper-B settings (procedures, z)."""
    bad = [p for p in cfg.procedures if str(p).upper() not in PROCEDURES]
    if bad:
        raise ConfigError(f"unknown procedure(s) {bad}; choose from {', '.join(PROCEDURES)}")
    if not cfg.z or any(int(z) < 1 for z in cfg.z):
        raise ConfigError(f"z must be a non-empty list of positive ints, got {list(cfg.z) if cfg.z else cfg.z}")
    if int(cfg.repeats) < 1:
        raise ConfigError(f"repeats must be >= 1, got {cfg.repeats}")


def plan(cfg) -> list[dict]:
    """Cell coordinates in run order: repeat-major, so every repeat completes all procedures."""
    return [{"procedure": get_procedure(str(p)).name, "z": int(z), "repeat": r, "seed": int(cfg.seed) + r}
            for r in range(int(cfg.repeats)) for z in cfg.z for p in cfg.procedures]


def setting(ctx: RunContext) -> dict:
    """What all cells of this sweep share (enters every cell id)."""
    return {"experiment": NAME, "data": ctx.data.identity, "loss_net": ctx.loss_net_id,
            "encoder": encoder_settings(ctx.cfg, with_gamma=False), "probe": probe_settings(ctx.cfg)}


def spec(ctx: RunContext, coords: dict, shared: dict | None = None) -> dict:
    return {"setting": shared or setting(ctx), "cell": {**coords, "variational": False}}


def run_cell(ctx: RunContext, coords: dict, sp: dict[str, Any], cid: str, label: str) -> dict:
    """Train, embed, probe; append and return the row."""
    import time

    t0 = time.perf_counter()
    cell = train_and_embed(ctx, cid, procedure=coords["procedure"], z=coords["z"], variational=False,
                           seed=coords["seed"], desc=label)
    grid = run_probes(ctx, cell, str(ctx.cfg.probe.grid), coords["seed"])
    proc = get_procedure(coords["procedure"])
    row = {"experiment": NAME, "dataset": ctx.data.name, "procedure": proc.name, "model": proc.name,
           "loss": proc.loss, "variational": False, "z": coords["z"], "repeat": coords["repeat"],
           "seed": coords["seed"], "metric": ctx.data.metric, "higher_is_better": ctx.data.higher_is_better,
           "test_score": grid.test_metric, "probe": grid.selected_name, "probe_val_loss": grid.selected.best_val_loss,
           "probe_seconds": grid.train_seconds, **encoder_row(cell)}
    row["cell_seconds"] = time.perf_counter() - t0
    return finish_cell(ctx, cid, sp, row, cell)


def cells(ctx: RunContext) -> list[tuple[dict, dict, str, str]]:
    """(coords, spec, id, label) of every cell of the sweep."""
    shared = setting(ctx)
    out = []
    for c in plan(ctx.cfg):
        sp = spec(ctx, c, shared)
        out.append((c, sp, cell_id(sp), f"{c['procedure']} z={c['z']} r{c['repeat']}"))
    return out


def describe_row(row: dict) -> str:
    from lossnet.runs.encoder_cells import fmt_score

    return (f"{row['metric']} {fmt_score(row['metric'], row['test_score'])} ({row['probe']}), "
            f"{row['epoch_seconds']:.1f} s/epoch, best epoch {row['best_epoch'] + 1}/{row['epochs_run']}")

