"""The training checkpoint ``last.pt`` of :func:`lossnet.train.engine.fit`: its one reader.

Written by the engine through :func:`lossnet.utils.save_torch` (atomic; a full disk is one error
naming the file and leaves no partial file); read here with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

from lossnet.types import PathLike
from ..utils import CorruptFileError, check_mapping, load_torch, log

__all__ = ["CHECKPOINT_KEYS", "identity_changes", "read_checkpoint", "read_resumable"]


def identity_changes(stored: dict | None, current: dict) -> list[str]:
    """Keys whose values differ (all keys for a checkpoint without an identity)."""
    if not isinstance(stored, dict):
        return ["(a checkpoint without an identity)"]
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))


CHECKPOINT_KEYS = ("task", "optimizer", "best_state", "history", "best_epoch", "best_val")
"""The entries of a ``last.pt`` written by :func:`~lossnet.train.engine.fit`."""


def read_checkpoint(path: PathLike, map_location="cpu") -> dict:
    """The state in a ``last.pt`` written by :func:`~lossnet.train.engine.fit`, read with ``weights_only=True``.

    A missing, truncated or garbage file, one holding a tensor or anything but a dict with
    :data:`CHECKPOINT_KEYS`, or one whose ``history`` is not a list, raises one
    :class:`~lossnet.utils.CorruptFileError` naming the file."""
    fix = "delete it to train from scratch"
    state = load_torch(path, fix, map_location=map_location)
    check_mapping(state, path, fix, CHECKPOINT_KEYS, "a lossnet checkpoint (a dict)")
    if not isinstance(state["history"], list) or not all(isinstance(h, dict) for h in state["history"]):
        raise CorruptFileError(f"{path} has a malformed history (not a list of epoch rows): {fix}")
    return state


def read_resumable(ckpt: Path | None, ident: dict, device) -> dict | None:
    """The state to resume from, or None (no checkpoint, unreadable, or written with other
    settings: one line on stderr names the file and says so)."""
    if ckpt is None or not ckpt.exists():
        return None
    try:
        state = read_checkpoint(ckpt, device)
    except CorruptFileError as e:
        log(f"not resuming: {e}; training from scratch (the checkpoint cannot be read)")
        return None
    changed = identity_changes(state.get("identity"), ident)
    if changed:
        log(f"{ckpt}: not resuming, the checkpoint was written with other settings "
            f"(changed: {', '.join(changed)}); training from scratch")
        return None
    return state
