"""Cell identity and bookkeeping shared by every experiment and sweep.

* :func:`cell_id` -- deterministic id of a cell (hash of its canonical JSON spec); a cell whose id
  has a row in the results table is never recomputed (that is how every run resumes).
* :func:`environment` / :func:`utc_now` -- what every row records about where and when it ran.
* :func:`remove_checkpoints` -- tidy a finished cell's engine checkpoints.
* reference rows (:func:`ensure_reference`) -- baselines of a sweep that are not loss networks
  (bicubic, pixel loss, BCE only), computed once into ``<out>/reference/results.jsonl``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from lossnet.runs.table import ResultsTable
from lossnet.utils import log, stable_hash

__all__ = ["cell_id", "ensure_reference", "environment", "reference_rows", "reference_table", "remove_checkpoints",
           "utc_now"]


def cell_id(spec: dict) -> str:
    """Deterministic id of a cell: :func:`~lossnet.utils.stable_hash` of its spec (16 hex digits)."""
    return stable_hash(spec)


def environment() -> dict:
    """Versions and host recorded with every row."""
    from lossnet import __version__

    return {"lossnet_version": __version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "host": platform.node(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds (the rows' ``timestamp``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


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
    from lossnet import distributed

    rid = cell_id(spec)
    found = distributed.broadcast_object(next((r for r in reference_rows(out) if r["ref_id"] == rid), None))
    if found is not None:  # under torchrun rank 0's answer: every rank computes, or none
        return found
    log(f"  reference {label} ...")
    t0 = time.perf_counter()
    row = {"ref_id": rid, **compute(rid)}
    row["seconds"] = time.perf_counter() - t0
    row.update({"spec": spec, **environment(), "timestamp": utc_now()})
    reference_table(out).append(row)
    return row
