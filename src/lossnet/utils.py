"""Small helpers every layer shares: the cache root, device choice, progress lines, output-path
checks and atomic writes, and the fault-injection points of the reliability tests.

A leaf module (imports nothing of lossnet but :mod:`lossnet.errors` and :mod:`lossnet.distributed`).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

import torch

from lossnet.errors import UserError

__all__ = ["atomic_write", "best_device", "ensure_writable_dir", "ensure_writable_file", "fault_point", "is_fs_error",
           "log", "lossnet_home", "module_device"]


def lossnet_home() -> Path:
    """Root of lossnet's cache: ``$LOSSNET_HOME``, default ``~/.cache/lossnet``."""
    return Path(os.environ.get("LOSSNET_HOME", Path.home() / ".cache" / "lossnet")).expanduser()


def best_device(preferred: str | torch.device | None = None) -> torch.device:
    """``preferred`` when given (e.g. a ``device:`` setting), else CUDA when present, else CPU.

    Under ``torchrun`` (:mod:`lossnet.distributed`) a CUDA device without an index is this
    process's GPU, ``cuda:LOCAL_RANK``.
    """
    d = torch.device(preferred) if preferred else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.type == "cuda" and d.index is None:
        from lossnet import distributed

        if distributed.is_distributed():
            return torch.device("cuda", distributed.local_rank())
    return d


def module_device(m: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for an empty module)."""
    for t in (*m.parameters(), *m.buffers()):
        return t.device
    return torch.device("cpu")


def log(msg: str) -> None:
    """One progress line on stderr (kept out of stdout, which stays machine-readable); under
    torchrun only rank 0's lines are printed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Output paths: checked before the work, written atomically
# --------------------------------------------------------------------------------------------

_FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
              errno.EEXIST, errno.ENAMETOOLONG}


def is_fs_error(e: BaseException) -> bool:
    """Whether ``e`` is a file-system condition the user fixes (full disk, read-only, permissions,
    a file where a directory should be ...), as opposed to a bug."""
    return isinstance(e, OSError) and getattr(e, "errno", None) in _FS_ERRNOS


def ensure_writable_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """``path`` as an existing, writable directory (created with its parents), checked before
    expensive work starts; else one :class:`~lossnet.errors.UserError` saying what is wrong.

    The check writes and removes a probe file, so read-only mounts and permission problems show
    up here rather than after hours of training.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {p} is a file, not a directory: choose another path or remove the file")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {what} {p}: {e.strerror or e} (check the path and its permissions)") from None
    probe = p / f".lossnet-write-test.{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as e:
        raise UserError(f"{what} {p} is not writable: {e.strerror or e} (choose another directory)") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return p


def ensure_writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` as a file that can be written: its parent directories are created and checked with
    :func:`ensure_writable_dir`; an existing directory at ``path`` is an error."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{what} {p} is a directory: give a file name (e.g. {p / 'embeddings.npy'})")
    ensure_writable_dir(p.parent if str(p.parent) else Path("."), f"directory of the {what}")
    return p


def atomic_write(path: str | os.PathLike, data: str | bytes, *, point: str | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and
    ``os.replace``; on any error (e.g. a full disk) the temporary file is removed and the old
    ``path`` is untouched. ``point`` names a :func:`fault_point` reached before the write."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        if point is not None:
            fault_point(point)
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


# --------------------------------------------------------------------------------------------
# Fault injection (tests)
# --------------------------------------------------------------------------------------------

_FAULT_COUNTS: dict[str, int] = {}


def fault_point(name: str) -> None:
    """A named point where tests inject faults through ``$LOSSNET_FAULT``; a no-op when unset.

    ``LOSSNET_FAULT=POINT:N[:ACTION][,...]``: the N-th time (1-based, per process) this process
    reaches ``POINT`` it performs ``ACTION``: ``kill`` (default; SIGKILL of itself, as a power cut
    or the OOM killer would) or ``enospc`` (raises ``OSError(ENOSPC)``, as a full disk would).
    Points: ``data`` (after the data are generated/loaded), ``epoch`` (after each training epoch,
    before its checkpoint), ``checkpoint`` (before a checkpoint is written), ``row_write`` (before
    a cell's row file is written), ``row_append`` (before a row is appended to the results table),
    ``report`` (before the report is written).
    """
    spec = os.environ.get("LOSSNET_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        parts = item.strip().split(":")
        if parts[0] != name:
            continue
        n = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        action = parts[2] if len(parts) > 2 else "kill"
        count = _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
        if count != n:
            continue
        if action == "kill":
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "enospc":
            raise OSError(errno.ENOSPC, f"No space left on device (injected at {name})")
        else:
            raise ValueError(f"LOSSNET_FAULT action must be kill or enospc, got {action!r}")
