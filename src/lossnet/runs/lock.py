"""One writer per run directory: an OS lock on ``<dir>/.lock`` held for the whole command.

``lossnet run``, ``lossnet sweep``, ``lossnet pretrain``, ``lossnet srvae`` and ``lossnet demo``
hold :func:`run_lock` on their output directory. A second command on the same directory exits at
once with one line naming the holder (pid, host, start time, command) and what to do, instead of
computing every cell twice, mixing checkpoints or crashing half-way.

The lock is ``fcntl.flock`` (POSIX; the kernel releases it when the holder dies, even on
SIGKILL). While held, ``.lock`` contains the holder's metadata as JSON; a clean exit empties it.
Metadata left behind therefore means the previous holder died: the next command takes the lock
over and says so in a warning. Worker processes (``jobs=N``) inherit the lock and die with their
parent (:mod:`lossnet.runs.launch`), so a killed command never leaves a directory locked.

Locks are re-entrant within one process (a demo that runs an experiment in its own directory).
On a network file system without ``flock`` support (some NFS setups) the lock degrades to the
metadata check only.

Under ``torchrun`` only rank 0 takes the lock (the other ranks train the same cells and write
nothing); if another command holds it, rank 0 exits with the usual error and torchrun stops the rest.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lossnet import distributed
from lossnet.errors import UserError
from lossnet.utils import ensure_writable_dir, log

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_NAME", "RunLockedError", "holder", "run_lock"]

LOCK_NAME = ".lock"

_HELD: dict[str, list] = {}  # resolved directory -> [fd, depth]


class RunLockedError(UserError):
    """Another live process holds the run directory's lock."""


def _describe(meta: dict) -> str:
    return (f"pid {meta.get('pid', '?')} on {meta.get('host', '?')} since {meta.get('started', '?')} "
            f"(command: {meta.get('command', '?')})")


def _read_meta(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"command": "(unreadable lock metadata)"}
    return meta if isinstance(meta, dict) else {"command": "(unreadable lock metadata)"}


def holder(directory: str | os.PathLike) -> dict | None:
    """The metadata in ``<directory>/.lock`` (the holder, or a dead holder's leftovers), or None."""
    p = Path(directory) / LOCK_NAME
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_meta(fd)
    finally:
        os.close(fd)


@contextmanager
def run_lock(directory: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of run directory ``directory`` (created if needed) for the ``with`` block.

    Raises :class:`RunLockedError` (one line: the holder and what to do) when another process holds
    it; warns and takes over when the metadata is that of a holder that died.
    """
    d = ensure_writable_dir(directory, "run directory")
    if not distributed.is_main():  # torchrun: rank 0 holds it for the job
        yield d
        return
    key = str(d.resolve())
    if key in _HELD:  # re-entrant within this process
        _HELD[key][1] += 1
        try:
            yield d
        finally:
            _HELD[key][1] -= 1
        return
    path = d / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                meta = _read_meta(fd) or {}
                raise RunLockedError(
                    f"{d} is in use by another lossnet command: {_describe(meta)}; wait for it to finish (or stop "
                    f"it), or choose another output directory") from None
            except OSError:  # file system without flock: metadata check only
                pass
        stale = _read_meta(fd)
        if stale is not None:
            log(f"lossnet: warning: taking over the lock of {d}: its holder {_describe(stale)} is gone (it died "
                f"without releasing it; its metadata was stale); finished work is kept and the rest resumes")
        meta = {"pid": os.getpid(), "host": platform.node(),
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(meta).encode(), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]
    try:
        yield d
    finally:
        del _HELD[key]
        try:
            os.ftruncate(fd, 0)  # a clean exit: no stale metadata
        except OSError:
            pass
        os.close(fd)  # releases the flock
