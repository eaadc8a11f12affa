"""A dataset as the papers' three parts: encoder images, probe images + targets, test images + targets.

:func:`load_data` reads ``lunarlander`` (generated), ``stl10`` or ``svhn`` (official files) by
name, as the experiments' configs describe them (:class:`ExperimentData`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lossnet.errors import ConfigError
from lossnet.schema import build
from lossnet.schema.sections import Data, LunarLander, Svhn

__all__ = ["DATASETS", "LAYOUTS", "ExperimentData", "load_data", "subset"]


DATASETS = ("lunarlander", "stl10", "svhn")
"""Datasets the experiments know (``dataset=``)."""


_TASKS = {
    "lunarlander": ("regression", "position_error", False),
    "stl10": ("classification", "accuracy", True),
    "svhn": ("classification", "accuracy", True),
}


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


def _split_name(data: Data, role: str, default: str) -> str:
    return getattr(data, f"{role}_split") or default


LAYOUTS = ("paper_a", "paper_b")
"""LunarLander layouts (``lunarlander.layout``): ``paper_a`` -- two runs (paper A: 1400 rollouts,
the first 700 unaltered train the autoencoder, the other 700 have off-screen frames removed and
are split 80/20, in frame order as the authors' ``split_data`` does, into probe training and
test); ``paper_b`` -- three runs (thesis Part II: encoder / probe / test runs of 700 rollouts)."""


def _lunarlander(cfg, out: Path) -> tuple[dict, dict]:
    from lossnet.data.lunarlander import DEFAULT_ROLLOUT, generate_collection, load_run

    ll = build(LunarLander, cfg.lunarlander)  # typed; a key left null or absent at the schema's default
    layout = ll.layout
    if layout not in LAYOUTS:
        raise ConfigError(f"lunarlander.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    n_runs = 2 if layout == "paper_a" else 3
    coll = Path(cfg.collection) if cfg.get("collection") else out / "collection"
    rollouts = tuple(ll.rollouts)
    if len(rollouts) != n_runs:
        what = "two ints (runs 1 and 2; run 2 is split into probe and test)" if n_runs == 2 else \
            "three ints (runs 1, 2, 3)"
        raise ConfigError(f"lunarlander.rollouts must be {what} for lunarlander.layout={layout}, "
                          f"got {list(ll.rollouts)}")
    tol, test_fraction, rollout = ll.offscreen_tolerance, ll.test_fraction, ll.rollout
    if layout == "paper_a" and not (0.0 < test_fraction < 1.0):
        raise ConfigError(f"lunarlander.test_fraction must be in (0, 1), got {test_fraction}")
    try:
        generate_collection(coll, n_rollouts=rollouts, seed=ll.seed, steps=ll.steps, size=ll.size,
                            workers=cfg.get("workers") or None, progress=cfg.progress, offscreen_tolerance=tol,
                            rollout=rollout)
    except ValueError as e:  # an existing collection with other settings, bad sizes
        raise ConfigError(str(e)) from None
    runs: dict[str, tuple] = {}
    for r in range(1, n_runs + 1):
        run = load_run(coll, r)
        runs[f"run{r}"] = (run.images, run.positions)
    if layout == "paper_a":
        images, positions = runs["run2"]
        n_test = int(round(len(images) * test_fraction))
        cut = len(images) - n_test
        runs["run2_probe"] = (images[:cut], positions[:cut])
        runs["run2_test"] = (images[cut:], positions[cut:])
        defaults = (("encoder", "run1"), ("probe", "run2_probe"), ("test", "run2_test"))
    else:
        defaults = (("encoder", "run1"), ("probe", "run2"), ("test", "run3"))
    parts, data = {}, build(Data, cfg.data)
    for role, default in defaults:
        name = _split_name(data, role, default)
        if name not in runs:
            raise ConfigError(f"data.{role}_split for lunarlander (layout {layout}) must be one of "
                              f"{', '.join(runs)}, got {name!r}")
        parts[role] = (name, *runs[name])
    ident = {"collection": {"rollouts": list(rollouts), "steps": ll.steps, "seed": ll.seed, "size": ll.size}}
    if tol != 0.0:  # 0: the criterion of collections made before the tolerance (same cell ids)
        ident["collection"]["offscreen_tolerance"] = tol
    if rollout != DEFAULT_ROLLOUT:  # likewise: collections made before the rollout modes
        ident["collection"]["rollout"] = rollout
    if layout == "paper_a":
        ident["collection"].update(layout=layout, test_fraction=test_fraction)
    return parts, ident


def _official(cfg, name: str) -> tuple[dict, dict]:
    from lossnet.data.datasets import load_stl10, load_svhn, split_roles

    if not cfg.get("data_root"):
        where = "the directory containing stl10_binary/" if name == "stl10" else \
            "the directory holding train_32x32.mat, test_32x32.mat, extra_32x32.mat"
        raise ConfigError(f"dataset={name} reads the official files: pass data_root=DIR ({where}); "
                          f"see docs/experiments.md")
    root = Path(cfg.data_root).expanduser()
    roles = split_roles(name)
    data, svhn = build(Data, cfg.data), build(Svhn, cfg.get("svhn") or {})
    parts, loaded = {}, {}
    ident: dict[str, Any] = {}
    if name == "svhn":
        ident["svhn"] = {"size": svhn.size, "mode": svhn.mode}
    for role in ("encoder", "probe", "test"):
        split = _split_name(data, role, roles[role])
        if split not in loaded:
            if name == "stl10":
                if split not in ("unlabeled", "train", "test"):
                    raise ConfigError(f"data.{role}_split for stl10 must be unlabeled, train or test, got {split!r}")
                loaded[split] = load_stl10(root, split, verify=data.verify)
            else:
                if split not in ("train", "test", "extra"):
                    raise ConfigError(f"data.{role}_split for svhn must be train, test or extra, got {split!r}")
                loaded[split] = load_svhn(root, split, size=svhn.size, mode=svhn.mode, verify=data.verify)
        s = loaded[split]
        if role != "encoder" and s.labels is None:
            raise ConfigError(f"data.{role}_split={split!r} of {name} has no labels")
        parts[role] = (split, s.images, s.labels)
    return parts, ident


def load_data(cfg, out: Path) -> ExperimentData:
    """The three parts of ``cfg.dataset`` (module docstring of :class:`ExperimentData`).

    LunarLander: the collection is generated (once; idempotent) into ``cfg.collection`` or
    ``out/collection``; ``lunarlander.layout`` (:data:`LAYOUTS`) ``paper_b``: runs 1/2/3 are
    encoder/probe/test; ``paper_a``: run 1 is the encoder part, run 2 (off-screen frames removed)
    is split in frame order into probe (first 1 - ``lunarlander.test_fraction``) and test parts. STL-10: unlabeled/train/test; SVHN:
    extra/train/test (``lossnet.data.datasets.SPLIT_ROLES``), from ``cfg.data_root``; any role can be
    changed with ``data.<role>_split``. ``data.max_<role>`` keeps a seeded random subset. ``cfg``: a
    resolved, validated run config (a DictConfig); its ``data``, ``lunarlander`` and ``svhn``
    sections are read through their schemas (:mod:`lossnet.schema.sections`).
    """
    name = cfg.dataset
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    parts, ident = _lunarlander(cfg, out) if name == "lunarlander" else _official(cfg, name)
    task, metric, hib = _TASKS[name]
    data = build(Data, cfg.data)
    seed = data.subset_seed
    picked = {}
    for i, role in enumerate(("encoder", "probe", "test")):
        split, images, targets = parts[role]
        limit = getattr(data, f"max_{role}")
        idx = subset(len(images), limit, seed + i)
        picked[role] = (_take(images, idx), None if targets is None else _take(targets, idx))
        ident[f"{role}_split"] = split
        ident[f"max_{role}"] = None if idx is None else limit  # only a binding cap
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
