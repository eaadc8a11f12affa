"""Small helpers every layer shares: the cache root, device choice, progress lines, output-path
checks and atomic writes, the generic file readers (JSON, JSON lines, torch, safetensors) that
every format-specific reader builds on, and the fault-injection points of the reliability tests.

A leaf module (imports nothing of lossnet but :mod:`lossnet.errors`, :mod:`lossnet.types` and
:mod:`lossnet.distributed`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from lossnet.errors import UserError
from lossnet.types import PathLike

__all__ = ["CorruptFileError", "DiskFullError", "atomic_write", "batched", "best_device", "ensure_writable_dir",
           "ensure_writable_file", "fault_point", "is_fs_error", "load_safetensors", "load_torch", "log",
           "lossnet_home", "module_device", "read_json", "read_jsonl", "save_torch", "stable_hash", "to_unit",
           "write_failure"]


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


def stable_hash(obj, digits: int = 16, *, compact: bool = True) -> str:
    """The identity of settings: the first ``digits`` hex digits of the sha256 of ``obj``'s canonical
    JSON (sorted keys; values JSON cannot hold as ``str(value)``). ``compact``: no spaces after
    ``,`` and ``:`` (cell ids); ``False``: ``json.dumps``' default separators, with which the
    engine's config identity, the feature-cache keys and benchmark 3's data files were always made
    (kept so that their checkpoints, caches and results tables still resume)."""
    seps = (",", ":") if compact else (", ", ": ")
    text = json.dumps(obj, sort_keys=True, separators=seps, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def module_device(m: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer; a module with none of its own is looked
    through to the frozen network it holds outside its module tree (``_frozen``: losses,
    distances and metrics, :class:`lossnet.losses._common.FrozenNetHolder`), then CPU."""
    while True:
        for t in (*m.parameters(), *m.buffers()):
            return t.device
        held = getattr(m, "_frozen", None)
        if not isinstance(held, torch.nn.Module) or held is m:
            return torch.device("cpu")
        m = held


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


def ensure_writable_dir(path: PathLike, what: str = "output directory") -> Path:
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


def ensure_writable_file(path: PathLike, what: str = "output file") -> Path:
    """``path`` as a file that can be written: its parent directories are created and checked with
    :func:`ensure_writable_dir`; an existing directory at ``path`` is an error."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{what} {p} is a directory: give a file name (e.g. {p / 'embeddings.npy'})")
    ensure_writable_dir(p.parent if str(p.parent) else Path("."), f"directory of the {what}")
    return p


class DiskFullError(UserError, OSError):
    """A write failed for lack of space (``ENOSPC``, ``EDQUOT``, ``EFBIG`` from ``ulimit -f``, or
    torch's ``[enforce fail at inline_container.cc] ... file write failed``); names the path."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_failure(e: BaseException, path: PathLike) -> DiskFullError | None:
    """``e`` as one clear :class:`DiskFullError` naming ``path`` when it reports a full disk or
    file-size limit however it was raised (an ``OSError`` errno, or torch's serializer's
    ``RuntimeError``, which carries no errno); ``None`` for any other error."""
    if isinstance(e, DiskFullError):
        return e
    full = isinstance(e, OSError) and getattr(e, "errno", None) in _FULL_ERRNOS
    msg = str(e)
    if isinstance(e, RuntimeError) and "inline_container" in msg and ("write" in msg or "unexpected pos" in msg):
        full = True  # torch.save to a path ("file write failed") or to a file object ("unexpected pos")
    if any(s in msg for s in ("No space left on device", "(os error 28)", "(os error 27)", "File too large")):
        full = True  # e.g. safetensors' SafetensorError "I/O error: No space left on device (os error 28)"
    if not full:
        return None
    err = DiskFullError(f"cannot write {path}: No space left on the device (or over the file-size limit, ulimit -f); "
                        "free space or choose another output location, then rerun")
    err.errno, err.filename = errno.ENOSPC, str(path)
    return err


def _atomic(path: PathLike, write, point: str | None = None) -> Path:
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        if point is not None:
            fault_point(point)
        write(tmp)
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # a full disk leaves no partial file
        full = write_failure(e, p)
        if full is not None and full is not e:
            raise full from None
        raise
    return p


def atomic_write(path: PathLike, data: str | bytes | Callable[[Path], object], *,
                 point: str | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and
    ``os.replace``; on any error (e.g. a full disk) the temporary file is removed and the old
    ``path`` is untouched (a full disk is one :class:`DiskFullError` naming ``path``).

    ``data`` is text (written as UTF-8), bytes, or a writer callback ``write(tmp: Path)`` that
    writes the whole file to ``tmp`` (e.g. ``lambda t: image.save(t, format="PNG")``).
    ``point`` names a :func:`fault_point` reached before the write. Returns ``Path(path)``."""
    if isinstance(data, str):
        return _atomic(path, lambda t: t.write_text(data, encoding="utf-8"), point)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _atomic(path, lambda t: t.write_bytes(data), point)
    if callable(data):
        return _atomic(path, data, point)
    raise TypeError(f"atomic_write writes str, bytes or a writer callback, got {type(data).__name__}")


def save_torch(obj, path: PathLike, *, point: str | None = None) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, like :func:`atomic_write`: a full disk, however
    torch reports it, is one :class:`DiskFullError` naming ``path`` and leaves no partial file
    (the temporary file is written through a file object closed on error, so no descriptor of
    it outlives the failure)."""
    def write(t: Path) -> None:
        with open(t, "wb") as f:
            torch.save(obj, f)

    return _atomic(path, write, point)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; any other dtype -> float32, values unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def batched(fn: Callable, inputs: torch.Tensor, batch_size: int, device: str | torch.device | None = None, *,
            dtype: torch.dtype | None = None, progress: str | None = None, out_device: str | torch.device = "cpu"):
    """``fn`` applied to ``inputs`` (N, ...) in batches of ``batch_size`` under ``torch.no_grad``:
    each batch is moved to ``device`` (default: where it is) and made float by :func:`to_unit`
    (uint8 -> [0, 1]); the outputs, a tensor (B, ...) or a list/tuple of them, are moved to
    ``out_device`` (the CPU unless told; cast to ``dtype`` when given) and concatenated along dim 0:
    (N, ...) or a list of those. ``progress``: a progress-bar title (none when ``None``). Empty
    ``inputs`` run ``fn`` once on the empty batch."""
    from tqdm.auto import tqdm

    starts = range(0, len(inputs), batch_size) if len(inputs) else [0]
    outs = []
    for i in tqdm(starts, desc=progress, disable=progress is None, leave=False):
        x = inputs[i:i + batch_size]
        out = fn(to_unit(x.to(device) if device is not None else x))
        many = isinstance(out, (list, tuple))
        outs.append([o.to(out_device, dtype) for o in (out if many else [out])])
    cat = [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]
    return cat if many else cat[0]


# --------------------------------------------------------------------------------------------
# File readers: every file lossnet reads goes through one of these (or a reader built on them)
# --------------------------------------------------------------------------------------------


class CorruptFileError(UserError, ValueError):
    """A file lossnet reads is missing, unreadable, or not what it should hold; the one-line
    message names the file, what is wrong and how to fix it."""


def _bad(path, problem: str, fix: str) -> CorruptFileError:
    return CorruptFileError(f"{path} {problem}: {fix}")


def _read_bytes(path: Path, fix: str) -> bytes:
    if not path.exists():
        raise _bad(path, "is missing", fix)
    if not path.is_file():
        raise _bad(path, "is not a regular file", fix)
    try:
        return path.read_bytes()
    except OSError as e:
        raise _bad(path, f"cannot be read ({e.strerror or e})", fix) from None


def _type_name(x) -> str:
    return {dict: "a JSON object", list: "a list", str: "a string", type(None): "null"}.get(type(x), type(x).__name__)


def check_mapping(obj, path, fix: str, required=(), what: str = "a JSON object") -> dict:
    """``obj`` when it is a dict holding every key of ``required``; else a :class:`CorruptFileError`."""
    if not isinstance(obj, dict):
        raise _bad(path, f"holds {_type_name(obj)}, not {what}", fix)
    missing = [k for k in required if k not in obj]
    if missing:
        raise _bad(path, f"lacks {', '.join(map(str, missing))}", fix)
    return obj


def read_json(path: PathLike, fix: str, *, required=(), expect: type | None = dict):
    """The JSON value of ``path`` (an object holding ``required`` keys when ``expect`` is dict).

    Missing, empty, non-UTF-8, invalid or wrongly typed files raise one :class:`CorruptFileError`
    naming the file, the problem (with line and column for bad JSON) and ``fix``."""
    p = Path(path)
    raw = _read_bytes(p, fix)
    if not raw.strip():
        raise _bad(p, "is empty", fix)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(p, f"is not UTF-8 text (byte {e.start})", fix) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(p, f"is not valid JSON (line {e.lineno} column {e.colno}: {e.msg})", fix) from None
    if expect is dict:
        return check_mapping(obj, p, fix, required)
    if expect is not None and not isinstance(obj, expect):
        raise _bad(p, f"holds {_type_name(obj)}, not {_type_name(expect())}", fix)
    return obj


def read_jsonl(path: PathLike, fix: str = "fix or delete that line", *, required=()) -> list[dict]:
    """The JSON objects of a JSON-lines file, one per non-blank line, in file order.

    Only a torn last line -- the last line, when it does not parse (a crash mid-append) -- is
    skipped; a complete valid last row without its final newline is a row. Any other bad line
    (invalid JSON, not UTF-8, not an object, lacking a ``required`` key) raises one
    :class:`CorruptFileError` naming the file, the line number and ``fix``."""
    p = Path(path)
    lines = _read_bytes(p, "check the path").split(b"\n")
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    rows = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            if i == last:
                continue
            raise _bad(p, f"line {i + 1} is not UTF-8 text (byte {e.start})", fix) from None
        except json.JSONDecodeError as e:
            if i == last:
                continue  # torn by a crash mid-write
            raise _bad(p, f"line {i + 1} is not valid JSON ({e.msg})", fix) from None
        if not isinstance(row, dict):
            raise _bad(p, f"line {i + 1} is not a row (a JSON object), got {type(row).__name__}", fix)
        missing = [k for k in required if k not in row]
        if missing:
            raise _bad(p, f"line {i + 1} lacks {', '.join(missing)}: not a row of this table", fix)
        rows.append(row)
    return rows


def load_torch(path: PathLike, fix: str, *, map_location="cpu", required=(), mmap: bool = False) -> dict:
    """A dict saved by ``torch.save`` at ``path``, read with ``weights_only=True`` (no code runs).

    Missing, truncated, garbage, pickle payloads, and files holding anything but a dict with the
    ``required`` keys raise one :class:`CorruptFileError` naming the file and ``fix``."""
    p = Path(path)
    if not p.is_file():
        raise _bad(p, "is missing" if not p.exists() else "is not a regular file", fix)
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True, mmap=mmap or None)
    except Exception as e:  # noqa: BLE001 - truncated, garbage, a refused pickle: all "cannot be read"
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise _bad(p, f"cannot be read as a torch file ({type(e).__name__}: {first})", fix) from None
    return check_mapping(obj, p, fix, required, "a dict")


def load_safetensors(path: PathLike, fix: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing, empty, truncated or garbage file raises one
    :class:`CorruptFileError` naming the file and ``fix``."""
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise _bad(p, "is missing" if not p.exists() else "is not a regular file", fix)
    try:
        return load_file(str(p))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: all "cannot be read"
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise _bad(p, f"cannot be read as safetensors ({type(e).__name__}: {first})", fix) from None


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
