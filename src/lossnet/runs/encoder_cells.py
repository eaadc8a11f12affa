"""Shared machinery of the paper A / paper B sweeps.

* :func:`load_data` -- a dataset by name (``lunarlander``, ``stl10``, ``svhn``) as the three parts
  the papers use: encoder images, probe images + targets, test images + targets
  (:class:`ExperimentData`).
* :func:`build_loss_net` / :func:`loss_net_identity` -- the loss network of a config and what
  identifies it in a cell id.
* :func:`cell_id` -- deterministic id of a cell (hash of its canonical JSON spec).
* :class:`ResultsTable` -- the tidy results table: ``results.jsonl`` (one JSON object per finished
  cell, appended atomically) and its ``results.csv`` export.
* :class:`RunContext` -- what a cell needs at run time (config, data, loss network, cache, paths).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from lossnet.cli import UserError

__all__ = [
    "DATASETS",
    "ConfigError",
    "ExperimentData",
    "RunContext",
    "ResultsTable",
    "TrainedCell",
    "build_loss_net",
    "cell_id",
    "encoder_row",
    "environment",
    "finish_cell",
    "flatten_row",
    "load_data",
    "loss_net_identity",
    "log",
    "remove_checkpoints",
    "run_probes",
    "subset",
    "train_and_embed",
]

DATASETS = ("lunarlander", "stl10", "svhn")
"""Datasets the experiments know (``dataset=``)."""

_TASKS = {
    "lunarlander": ("regression", "position_error", False),
    "stl10": ("classification", "accuracy", True),
    "svhn": ("classification", "accuracy", True),
}


class ConfigError(UserError, ValueError):
    """A bad experiment setting (unknown key, dataset, procedure ...); printed as one line."""


def log(msg: str) -> None:
    """One progress line on stderr (kept out of stdout, which stays machine-readable)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class ExperimentData:
    """One dataset split into the papers' three parts.

    Attributes:
        name: ``"lunarlander"``, ``"stl10"`` or ``"svhn"``.
        task: ``"regression"`` (lander position) or ``"classification"``.
        metric: ``"position_error"`` (mean Euclidean distance, pixels; lower is better) or
            ``"accuracy"`` (fraction in [0, 1]; higher is better).
        higher_is_better: direction of ``metric``.
        size: image side S (64 for LunarLander/SVHN, 96 for STL-10).
        encoder_images: uint8 (N_e, 3, S, S), trains the autoencoder (80/20 train/val inside).
        probe_images, probe_targets: uint8 (N_p, 3, S, S) and float32 (N_p, 2) pixels or int64
            (N_p,) labels; trains the probes (80/20 train/val inside).
        test_images, test_targets: the test part, same layout.
        identity: what identifies this data in a cell id (dataset settings, splits, counts).
    """

    name: str
    task: str
    metric: str
    higher_is_better: bool
    size: int
    encoder_images: torch.Tensor
    probe_images: torch.Tensor
    probe_targets: torch.Tensor
    test_images: torch.Tensor
    test_targets: torch.Tensor
    identity: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"n_encoder": len(self.encoder_images), "n_probe": len(self.probe_images),
                "n_test": len(self.test_images)}


def subset(n: int, limit: int | None, seed: int) -> torch.Tensor | None:
    """Sorted seeded random indices of ``limit`` out of ``n`` items, or None to keep all."""
    if limit is None or limit >= n:
        return None
    if limit < 2:
        raise ConfigError(f"data limits must be >= 2 (got {limit})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:limit].sort().values


def _take(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return x if idx is None else x[idx].contiguous()


def _split_name(cfg, role: str, default: str) -> str:
    val = cfg.data.get(f"{role}_split")
    return str(val) if val is not None else default


def _lunarlander(cfg, out: Path) -> tuple[dict, dict]:
    from lossnet.data.lunarlander import generate_collection, load_run

    ll = cfg.lunarlander
    coll = Path(cfg.collection) if cfg.get("collection") else out / "collection"
    rollouts = tuple(int(r) for r in ll.rollouts)
    if len(rollouts) != 3:
        raise ConfigError(f"lunarlander.rollouts must be three ints (runs 1, 2, 3), got {list(ll.rollouts)}")
    workers = cfg.get("workers")
    try:
        generate_collection(coll, n_rollouts=rollouts, seed=int(ll.seed), steps=int(ll.steps), size=int(ll.size),
                            workers=int(workers) if workers else None, progress=bool(cfg.progress))
    except ValueError as e:  # an existing collection with other settings, bad sizes
        raise ConfigError(str(e)) from None
    parts = {}
    for role, default in (("encoder", "run1"), ("probe", "run2"), ("test", "run3")):
        name = _split_name(cfg, role, default)
        if name not in ("run1", "run2", "run3"):
            raise ConfigError(f"data.{role}_split for lunarlander must be run1, run2 or run3, got {name!r}")
        run = load_run(coll, int(name[-1]))
        parts[role] = (name, run.images, run.positions)
    ident = {"collection": {"rollouts": list(rollouts), "steps": int(ll.steps), "seed": int(ll.seed),
                            "size": int(ll.size)}}
    return parts, ident


def _official(cfg, name: str) -> tuple[dict, dict]:
    from lossnet.data.datasets import load_stl10, load_svhn, split_roles

    if not cfg.get("data_root"):
        where = "the directory containing stl10_binary/" if name == "stl10" else \
            "the directory holding train_32x32.mat, test_32x32.mat, extra_32x32.mat"
        raise ConfigError(f"dataset={name} reads the official files: pass data_root=DIR ({where}); "
                          f"see docs/experiments.md")
    root = Path(str(cfg.data_root)).expanduser()
    roles = split_roles(name)
    verify = bool(cfg.data.verify)
    parts, loaded = {}, {}
    ident: dict[str, Any] = {}
    if name == "svhn":
        ident["svhn"] = {"size": int(cfg.svhn.size), "mode": str(cfg.svhn.mode)}
    for role in ("encoder", "probe", "test"):
        split = _split_name(cfg, role, roles[role])
        if split not in loaded:
            if name == "stl10":
                if split not in ("unlabeled", "train", "test"):
                    raise ConfigError(f"data.{role}_split for stl10 must be unlabeled, train or test, got {split!r}")
                loaded[split] = load_stl10(root, split, verify=verify)
            else:
                if split not in ("train", "test", "extra"):
                    raise ConfigError(f"data.{role}_split for svhn must be train, test or extra, got {split!r}")
                loaded[split] = load_svhn(root, split, size=int(cfg.svhn.size), mode=str(cfg.svhn.mode),
                                          verify=verify)
        s = loaded[split]
        if role != "encoder" and s.labels is None:
            raise ConfigError(f"data.{role}_split={split!r} of {name} has no labels")
        parts[role] = (split, s.images, s.labels)
    return parts, ident


def load_data(cfg, out: Path) -> ExperimentData:
    """The three parts of ``cfg.dataset`` (module docstring of :class:`ExperimentData`).

    LunarLander: the collection is generated (once; idempotent) into ``cfg.collection`` or
    ``out/collection``; runs 1/2/3 are encoder/probe/test. STL-10: unlabeled/train/test; SVHN:
    extra/train/test (``lossnet.data.datasets.SPLIT_ROLES``), from ``cfg.data_root``; any role can be
    changed with ``data.<role>_split``. ``data.max_<role>`` keeps a seeded random subset.
    """
    name = str(cfg.dataset)
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    parts, ident = _lunarlander(cfg, out) if name == "lunarlander" else _official(cfg, name)
    task, metric, hib = _TASKS[name]
    seed = int(cfg.data.subset_seed)
    picked = {}
    for i, role in enumerate(("encoder", "probe", "test")):
        split, images, targets = parts[role]
        idx = subset(len(images), cfg.data.get(f"max_{role}"), seed + i)
        picked[role] = (_take(images, idx), None if targets is None else _take(targets, idx))
        ident[f"{role}_split"] = split
        ident[f"max_{role}"] = None if idx is None else int(cfg.data.get(f"max_{role}"))  # only a binding cap
        ident[f"n_{role}"] = len(picked[role][0])
    ident["subset_seed"] = seed
    if task == "regression":
        picked = {k: (v[0], None if v[1] is None else v[1].float()) for k, v in picked.items()}
    size = int(picked["encoder"][0].shape[-1])
    for role, (imgs, _) in picked.items():
        if len(imgs) < 5:
            raise ConfigError(f"{name}: the {role} part has only {len(imgs)} images; need at least 5")
    return ExperimentData(name, task, metric, hib, size, picked["encoder"][0], picked["probe"][0], picked["probe"][1],
                          picked["test"][0], picked["test"][1], {"dataset": name, **ident})


# --------------------------------------------------------------------------------------------
# Loss network
# --------------------------------------------------------------------------------------------


def with_target_features(data: dict[str, torch.Tensor], key: str, loss_net, cfg) -> dict[str, torch.Tensor]:
    """``data`` plus ``feat``: ``loss_net``'s features of the fixed targets ``data[key]`` (uint8,
    1 or 3 channels), computed once when they fit in ``cfg.feature_cache_gb``; ``data`` unchanged
    without a loss network or when they do not fit (then they are computed on every batch)."""
    from lossnet.data.cache import target_features

    if loss_net is None or not float(cfg.get("feature_cache_gb") or 0):
        return data
    targets = data[key].expand(-1, 3, -1, -1) if data[key].shape[1] == 1 else data[key]
    feat = target_features(targets, loss_net.requires_grad_(False).eval(), max_gb=float(cfg.feature_cache_gb),
                           device=cfg.get("device") or None)
    return data if feat is None else {**data, "feat": feat}


def scaled_defaults(defaults_yaml: str, scale: str = "quick"):
    """A benchmark's defaults (YAML text with ``scales: {quick: ..., paper: ...}``) with the
    ``scale`` preset merged in and the presets removed."""
    from omegaconf import OmegaConf

    base = OmegaConf.create(defaults_yaml)
    scales = base.pop("scales")
    if scale not in scales:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(scales)}")
    return OmegaConf.merge(base, scales[scale])


def require_dir(value, what: str, doc: str) -> Path:
    """``value`` as an existing directory, else one :class:`ConfigError` naming the setting."""
    if not value:
        raise ConfigError(f"set {what}=DIR (see {doc})")
    p = Path(str(value)).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{what}={value} is not a directory (see {doc})")
    return p


def build_loss_net(ln_cfg):
    """The loss network of ``cfg.loss_net``: ``name`` a preset (``paper``: AlexNet 2nd ReLU +
    sigmoid) or an architecture with ``layers``/``sigmoid``; ``weights`` ``imagenet`` or ``random``
    (seeded with ``init_seed``; for tests and smoke runs)."""
    from lossnet.zoo import PRESETS, LossNetwork

    name = str(ln_cfg.name)
    weights = str(ln_cfg.weights)
    if weights not in ("imagenet", "random"):
        raise ConfigError(f"loss_net.weights must be imagenet or random, got {weights!r}")
    kwargs: dict[str, Any] = {}
    if name not in PRESETS:
        kwargs["layers"] = list(ln_cfg.layers) if ln_cfg.get("layers") is not None else ["S"]
        kwargs["sigmoid"] = bool(ln_cfg.sigmoid) if ln_cfg.get("sigmoid") is not None else True
    try:
        if weights == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(ln_cfg.init_seed))
                return LossNetwork(name, weights=None, **kwargs)
        return LossNetwork(name, **kwargs)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"loss_net: {e}") from None


def loss_net_identity(net) -> dict:
    """What identifies a loss network in a cell id: architecture, graph nodes, sigmoid,
    normalisation, weight source (plus a hash of the parameters for random/state-dict weights)."""
    ident = {"arch": net.arch, "nodes": list(net.nodes), "layers": [str(x) for x in net.layer_refs],
             "sigmoid": bool(net.sigmoid), "normalize": net.normalize, "weights": net.weights_source}
    if net.weights_source in (None, "state_dict"):
        h = hashlib.sha256()
        for k, p in sorted(net.state_dict().items()):
            h.update(k.encode())
            h.update(p.detach().cpu().numpy().tobytes())
        ident["params_sha256"] = h.hexdigest()[:16]
    return ident


# --------------------------------------------------------------------------------------------
# Cell ids and the results table
# --------------------------------------------------------------------------------------------


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cell_id(spec: dict) -> str:
    """Deterministic id of a cell: sha256 of the canonical JSON of its spec (16 hex digits)."""
    return hashlib.sha256(_canonical(spec).encode()).hexdigest()[:16]


def environment() -> dict:
    """Versions and host recorded with every row."""
    from lossnet import __version__

    return {"lossnet_version": __version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "host": platform.node(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats -> None, tuples -> lists, tensors/numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):
        return _clean(obj.item())
    return str(obj)


class ResultsTable:
    """The tidy results table of a run directory.

    ``results.jsonl``: one JSON object per finished cell (see docs/experiments.md for the columns),
    appended as one full line followed by flush + fsync, so a killed sweep leaves complete rows
    only (a torn last line, possible only on a crash mid-write, is ignored and repaired on the next
    append). ``results.csv``: the same rows flattened (nested dicts as dotted columns, lists and
    the full config as JSON strings), rewritten atomically after every append.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "results.jsonl"
        self.csv_path = self.directory / "results.csv"

    def rows(self) -> list[dict]:
        """All complete rows in file order."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a crash mid-write
        return out

    def ids(self) -> set[str]:
        return {r.get("cell_id") for r in self.rows()}

    def _repair_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            keep = f.read().rfind(b"\n") + 1
            f.truncate(keep)

    def append(self, row: dict) -> None:
        """Append one row durably (single write of a full line, flush, fsync) and refresh the CSV."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        line = json.dumps(_clean(row), allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.export_csv()

    def export_csv(self, rows: Iterable[dict] | None = None) -> Path:
        """Write ``results.csv`` (atomically) from the JSON-lines rows."""
        rows = list(rows) if rows is not None else self.rows()
        flat = [flatten_row(r) for r in rows]
        cols: list[str] = []
        for r in flat:
            cols.extend(k for k in r if k not in cols)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in flat:
            w.writerow(r)
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.{os.getpid()}.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.csv_path)
        return self.csv_path


_JSON_COLUMNS = ("config", "history")


def flatten_row(row: dict, prefix: str = "") -> dict:
    """One CSV record: nested dicts become ``a.b`` columns; lists, ``config`` and ``history``
    become JSON strings."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if k in _JSON_COLUMNS and not prefix:
            out[key] = json.dumps(v, sort_keys=True)
        elif isinstance(v, dict):
            out.update(flatten_row(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


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
    table: ResultsTable
    on_row: Callable[[dict], None] | None = None

    @property
    def device(self) -> str:
        from lossnet.data.cache import best_device

        return str(best_device(self.cfg.get("device")))

    def cell_dir(self, cid: str) -> Path:
        return self.out / "cells" / cid

    def feats(self, images: torch.Tensor) -> torch.Tensor:
        """Cached loss-network features (N, C, H, W) of uint8 images."""
        return self.cache.get(images, self.loss_net)


# --------------------------------------------------------------------------------------------
# Shared steps of a cell: encoder training, embeddings, probes, the row
# --------------------------------------------------------------------------------------------


def encoder_settings(cfg, *, with_gamma: bool) -> dict:
    """The encoder-training settings of a config that enter cell ids."""
    e = cfg.encoder
    d = {"epochs": int(e.epochs), "batch_size": int(e.batch_size), "lr": float(e.lr),
         "weight_decay": float(e.weight_decay), "val_fraction": float(e.val_fraction),
         "patience": None if e.patience is None else int(e.patience), "hidden": int(e.hidden),
         "pixel_loss": str(e.pixel_loss)}
    if with_gamma:
        d["gamma"] = float(e.gamma)
    return d


def probe_settings(cfg) -> dict:
    """The probe settings of a config that enter cell ids."""
    p = cfg.probe
    d = {"grid": str(p.grid), "epochs": int(p.epochs), "batch_size": int(p.batch_size), "lr": float(p.lr),
         "val_fraction": float(p.val_fraction)}
    if p.get("linear_grid") is not None:
        d["linear_grid"] = str(p.linear_grid)
    return d


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
    enc_cfg = EncoderConfig(procedure=procedure, z=int(z), variational=bool(variational), gamma=float(e.gamma),
                            hidden=int(e.hidden), pixel_loss=str(e.pixel_loss))
    fit_cfg = FitConfig(epochs=int(e.epochs), batch_size=int(e.batch_size), lr=float(e.lr),
                        weight_decay=float(e.weight_decay), seed=int(seed), val_fraction=float(e.val_fraction),
                        patience=None if e.patience is None else int(e.patience),
                        device=ctx.cfg.get("device") or None, progress=bool(ctx.cfg.progress), desc=desc)
    te = train_encoder(ctx.data.encoder_images, enc_cfg, fit_cfg, loss_net=ctx.loss_net, cache=ctx.cache,
                       ckpt_dir=ctx.cell_dir(cid))
    t0 = time.perf_counter()
    d = ctx.data
    probe_x = te.embed(d.probe_images, ctx.feats(d.probe_images) if te.uses_features else None)
    test_x = te.embed(d.test_images, ctx.feats(d.test_images) if te.uses_features else None)
    return TrainedCell(te, probe_x.float(), test_x.float(), time.perf_counter() - t0)


def run_probes(ctx: RunContext, cell: TrainedCell, grid: str, seed: int):
    """Fit probe grid ``grid`` on the cell's embeddings; returns a ``GridResult``."""
    from lossnet.eval.probes import fit_probe_grid

    p = ctx.cfg.probe
    d = ctx.data
    threads = torch.get_num_threads()
    if p.get("threads"):  # tiny matmuls: extra threads gain nothing and stall on a busy CPU
        torch.set_num_threads(int(p.threads))
    try:
        return fit_probe_grid(cell.probe_x, d.probe_targets, cell.test_x, d.test_targets, task=d.task, grid=grid,
                              epochs=int(p.epochs), batch_size=int(p.batch_size), lr=float(p.lr),
                              val_fraction=float(p.val_fraction), seed=int(seed), device=ctx.device,
                              progress=bool(ctx.cfg.progress),
                              num_classes=10 if d.task == "classification" else None)
    finally:
        torch.set_num_threads(threads)


def encoder_row(cell: TrainedCell) -> dict:
    """Row fields describing the encoder's training (times in seconds)."""
    r = cell.encoder.result
    hist = r.history
    upto = hist[: r.best_epoch + 1] if r.best_epoch >= 0 else hist
    return {
        "val_loss": r.best_val, "best_epoch": r.best_epoch, "epochs_run": len(hist),
        "epoch_seconds": r.epoch_seconds,
        "train_seconds": sum(h["train_seconds"] for h in hist),
        "total_seconds": r.total_seconds,
        "time_to_best_seconds": sum(h["train_seconds"] for h in upto),
        "feature_seconds": cell.encoder.feature_seconds, "embed_seconds": cell.embed_seconds,
        "resumed_epochs": r.resumed_from, "stopped_early": r.stopped_early,
        "history": [dict(h) for h in hist],
    }


def finish_cell(ctx: RunContext, cid: str, spec: dict, row: dict, cell: TrainedCell | None = None) -> dict:
    """Complete ``row`` (ids, environment, config, timestamp), append it, tidy the cell directory."""
    from omegaconf import OmegaConf

    run_cfg = OmegaConf.to_container(ctx.cfg, resolve=True)
    full = {"cell_id": cid, "setting_id": cell_id(spec["setting"]), **row, **ctx.data.counts(),
            "device": ctx.device, "config": {"spec": spec, "run": run_cfg}, **environment(),
            "timestamp": utc_now()}
    if cell is not None and ctx.cfg.get("export_encoders"):
        cell.encoder.export(ctx.cell_dir(cid) / "encoder")
    ctx.table.append(full)
    if not ctx.cfg.get("keep_checkpoints"):
        remove_checkpoints(ctx.cell_dir(cid))
    if ctx.on_row is not None:
        ctx.on_row(full)
    return full


def remove_checkpoints(cell_dir: Path) -> None:
    """Delete the engine checkpoints (``last.pt``) under a finished cell's directory."""
    if not cell_dir.exists():
        return
    for p in cell_dir.rglob("last.pt"):
        p.unlink(missing_ok=True)
    for p in sorted(cell_dir.rglob("*"), reverse=True):
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    if cell_dir.is_dir() and not any(cell_dir.iterdir()):
        cell_dir.rmdir()


def fmt_score(metric: str, value: float) -> str:
    return f"{value:.2f} px" if metric == "position_error" else f"{100 * value:.1f} %"


# --------------------------------------------------------------------------------------------
# Reference rows of a sweep (baselines that are not loss networks: bicubic, pixel loss, BCE only)
# --------------------------------------------------------------------------------------------


def reference_table(out: str | os.PathLike) -> ResultsTable:
    """The reference rows of a sweep directory: ``<out>/reference/results.jsonl`` (+ ``.csv``)."""
    return ResultsTable(Path(out) / "reference")


def reference_rows(out: str | os.PathLike) -> list[dict]:
    """The reference rows of ``out`` (the last row per ``ref_id``, in first-seen order)."""
    rows: dict[str, dict] = {}
    for r in reference_table(out).rows():
        rows[r["ref_id"]] = r
    return list(rows.values())


def ensure_reference(out: str | os.PathLike, spec: dict, compute: Callable[[str], dict], label: str) -> dict:
    """The reference row identified by ``spec`` (its ``ref_id`` is :func:`cell_id` of it): read
    from ``out`` when present, else ``compute(ref_id) -> row fields`` is run, timed, appended
    durably and returned."""
    rid = cell_id(spec)
    for r in reference_rows(out):
        if r["ref_id"] == rid:
            return r
    log(f"  reference {label} ...")
    t0 = time.perf_counter()
    row = {"ref_id": rid, **compute(rid)}
    row["seconds"] = time.perf_counter() - t0
    row.update({"spec": spec, **environment(), "timestamp": utc_now()})
    reference_table(out).append(row)
    return row
