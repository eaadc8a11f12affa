"""Paper B (thesis Part II): six encoder-pretraining procedures compared by probe performance and
training time.

Sweep: ``repeats`` x ``z`` x ``procedures`` (I-I-PW, I-I-PS, F-I-PW, F-I-PS, I-F-FP, F-F-FP), each
cell an autoencoder trained with the AlexNet loss network (2nd ReLU + sigmoid), its embeddings
judged by the paper-B probe grid (7 MLPs, 500 epochs, best validation epoch; the probe with the
lowest validation loss is tested). Each row records the test score, the selected probe, the
encoder's per-epoch history (for the convergence figure, Fig. 9), epoch and total training time
(Figs. 6-8, Table 2). Table 1 (SVHN, z = 500, probes trained on ``extra``) is the ``svhn_z500``
variant of ``configs/paper_b.yaml``.

Baseline (``baseline.simple_cnn``): per repeat one cell trains Table 2's "Simple CNN" -- the image
encoder of Fig. 3 followed by an MLP with one hidden layer of 256 units
(:class:`lossnet.models.simple_cnn.SimpleCNN`) -- end to end on the probe part's labels and tests
it on the test part. Its rows have ``procedure = "SimpleCNN"`` and ``baseline = "simple_cnn"``;
the report shows them as their own row of the Table 2 analogue.
"""

from __future__ import annotations

from typing import Any

from lossnet.config import typed
from lossnet.errors import ConfigError
from lossnet.runs.cells import cell_id
from lossnet.runs.encoder_cells import (
    RunContext,
    encoder_row,
    finish_cell,
    run_probes,
    train_and_embed,
)
from lossnet.schema import identity as identity_of
from lossnet.schema.sections import Encoder, Probe
from lossnet.train.procedures import get_procedure

NAME = "paper_b"
BASELINE = "SimpleCNN"
"""``procedure`` of the Simple-CNN baseline rows."""


def check(cfg) -> None:
    """What the schema (procedures, repeats) cannot say: z resolved to a non-empty list."""
    cfg = typed(NAME, cfg)
    if not cfg.z:
        raise ConfigError(f"z must be a non-empty list of positive ints, got {cfg.z}")


def baseline_z(cfg) -> int:
    """z (encoder output width) of the Simple-CNN baseline: ``baseline.z``, else the smallest z."""
    cfg = typed(NAME, cfg)
    return cfg.baseline.z or min(cfg.z)


def plan(cfg) -> list[dict]:
    """Cell coordinates in run order: repeat-major, so every repeat completes all procedures (and
    then its Simple-CNN baseline cell when ``baseline.simple_cnn``)."""
    cfg, out = typed(NAME, cfg), []
    for r in range(cfg.repeats):
        out += [{"procedure": get_procedure(p).name, "z": z, "repeat": r, "seed": cfg.seed + r}
                for z in cfg.z for p in cfg.procedures]
        if cfg.baseline.simple_cnn:
            out.append({"procedure": BASELINE, "z": baseline_z(cfg), "repeat": r, "seed": cfg.seed + r})
    return out


def baseline_settings(cfg) -> dict:
    """Training settings of the Simple-CNN baseline (``baseline.*``, falling back to ``encoder.*``)."""
    cfg = typed(NAME, cfg)
    b, e = cfg.baseline, cfg.encoder
    pick = {k: getattr(b, k) if getattr(b, k) is not None else getattr(e, k)
            for k in ("epochs", "batch_size", "lr", "val_fraction")}
    return {**pick, "hidden": b.hidden, "patience": b.patience}


def setting(ctx: RunContext) -> dict:
    """What all cells of this sweep share (enters every cell id)."""
    return {"experiment": NAME, "data": ctx.data.identity, "loss_net": ctx.loss_net_id,
            "encoder": identity_of(ctx.cfg.encoder, Encoder, drop=("gamma",)), "probe": identity_of(ctx.cfg.probe, Probe)}


def spec(ctx: RunContext, coords: dict, shared: dict | None = None) -> dict:
    cell = {**coords, "variational": False}
    if coords["procedure"] == BASELINE:
        cell["baseline"] = baseline_settings(ctx.cfg)
    return {"setting": shared or setting(ctx), "cell": cell}


def run_baseline_cell(ctx: RunContext, coords: dict, sp: dict[str, Any], cid: str, label: str) -> dict:
    """Train the Simple CNN end to end on the probe part, test it; append and return the row."""
    import time

    import torch

    from lossnet.eval.metrics import accuracy, position_error
    from lossnet.models.simple_cnn import SimpleCNN, SimpleCNNTask
    from lossnet.train.engine import FitConfig, fit, split_indices

    t0 = time.perf_counter()
    d, bs = ctx.data, baseline_settings(ctx.cfg)
    seed = int(coords["seed"])
    regression = d.task == "regression"
    targets = d.probe_targets
    y_mean = y_std = None
    if regression:
        tr, _ = split_indices(len(targets), bs["val_fraction"], seed)  # the split fit() uses
        y_mean, y_std = targets[tr].mean(0), targets[tr].std(0, unbiased=False).clamp_min(1e-8)
        targets = (targets - y_mean) / y_std
        loss = "regression"
    else:
        loss = typed(NAME, ctx.cfg).probe.classification_loss or "cross_entropy"
    out_dim = targets.shape[1] if regression else 10
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SimpleCNN(out_dim, z=int(coords["z"]), size=d.size, hidden=bs["hidden"])
    task = SimpleCNNTask(model, loss, y_mean, y_std)
    fit_cfg = FitConfig.from_section(bs, options=ctx.cfg.encoder, seed=seed, device=ctx.cfg.get("device"),
                                     progress=ctx.cfg.progress, desc=label)
    res = fit(task, {"image": d.probe_images, "target": targets}, fit_cfg, ckpt_dir=ctx.cell_dir(cid))
    pred = task.predict(d.test_images)
    score = position_error(pred, d.test_targets) if regression else accuracy(pred, d.test_targets)
    hist = res.history
    upto = hist[: res.best_epoch + 1] if res.best_epoch >= 0 else hist
    row = {"experiment": NAME, "dataset": d.name, "procedure": BASELINE, "model": BASELINE, "baseline": "simple_cnn",
           "loss": "labels", "variational": False, "z": coords["z"], "repeat": coords["repeat"], "seed": seed,
           "metric": d.metric, "higher_is_better": d.higher_is_better, "test_score": float(score),
           "probe": f"end to end (hidden {bs['hidden']})", "probe_val_loss": res.best_val, "probe_seconds": 0.0,
           "val_loss": res.best_val, "best_epoch": res.best_epoch, "epochs_run": len(hist),
           "epoch_seconds": res.epoch_seconds, "precision": fit_cfg.precision, "train_seconds": sum(h["train_seconds"] for h in hist),
           "total_seconds": res.total_seconds, "time_to_best_seconds": sum(h["train_seconds"] for h in upto),
           "feature_seconds": 0.0, "embed_seconds": 0.0, "resumed_epochs": res.resumed_from,
           "stopped_early": res.stopped_early, "history": [dict(h) for h in hist]}
    row["cell_seconds"] = time.perf_counter() - t0
    return finish_cell(ctx, cid, sp, row)


def run_cell(ctx: RunContext, coords: dict, sp: dict[str, Any], cid: str, label: str) -> dict:
    """Train, embed, probe; append and return the row (the baseline: :func:`run_baseline_cell`)."""
    import time

    if coords["procedure"] == BASELINE:
        return run_baseline_cell(ctx, coords, sp, cid, label)
    t0 = time.perf_counter()
    cell = train_and_embed(ctx, cid, procedure=coords["procedure"], z=coords["z"], variational=False,
                           seed=coords["seed"], desc=label)
    grid = run_probes(ctx, cell, typed(NAME, ctx.cfg).probe.grid, coords["seed"])
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

    if row.get("baseline"):
        return (f"{row['metric']} {fmt_score(row['metric'], row['test_score'])} (Simple CNN), "
                f"{row['epoch_seconds']:.1f} s/epoch")
    return (f"{row['metric']} {fmt_score(row['metric'], row['test_score'])} ({row['probe']}), "
            f"{row['epoch_seconds']:.1f} s/epoch, best epoch {row['best_epoch'] + 1}/{row['epochs_run']}")

