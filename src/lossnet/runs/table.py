"""The tidy results table of a run directory: ``results.jsonl`` (one JSON object per finished cell,
appended durably) and its ``results.csv`` export. Nothing finished is ever dropped: only a last
line that does not parse is torn (and is kept aside in ``results.jsonl.torn``)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from lossnet.schema import benchmark_name

__all__ = ["ResultsTable", "clean", "flatten_row", "read_sweep_manifest"]


def read_sweep_manifest(directory: str | os.PathLike) -> dict:
    """The validated ``sweep.json`` of a sweep directory: ``benchmark`` (str), ``scores`` (a list
    of objects with ``name``, ``benchmark``, ``higher_is_better``) and ``config`` (an object); a
    benchmark's former numbered name (``benchmark1`` ..., lossnet 0.1.0) is read as its name.
    Anything else (missing, empty, not JSON, ``{}``, wrong types) is one
    :class:`~lossnet.utils.CorruptFileError` naming the file and the fix."""
    from lossnet.utils import CorruptFileError, read_json

    path = Path(directory) / "sweep.json"
    fix = "rerun the sweep into this directory to rewrite it (finished cells are kept), or restore the file"
    man = read_json(path, fix, required=("benchmark", "scores", "config"))
    scores = man["scores"]
    ok = isinstance(man["benchmark"], str) and isinstance(man["config"], dict) and isinstance(scores, list) and all(
        isinstance(x, dict) and isinstance(x.get("name"), str) and isinstance(x.get("benchmark"), str)
        and isinstance(x.get("higher_is_better"), bool) for x in scores)
    if not ok:
        raise CorruptFileError(f"{path} is malformed (benchmark must be a string, config an object, scores a list of "
                               f"objects with name, benchmark, higher_is_better): {fix}")
    man["benchmark"] = benchmark_name(man["benchmark"])
    for x in scores:
        x["benchmark"] = benchmark_name(x["benchmark"])
    return man


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
    only. A torn last line (one that does not parse; possible only on a crash mid-write) is ignored
    and, on the next append, moved to ``results.jsonl.torn``; a valid last row that lacks only its
    final newline is kept and the newline added. ``results.csv``: the same rows flattened (nested dicts as dotted columns, lists and
    the full config as JSON strings), rewritten atomically after every append.

    Under ``torchrun`` only rank 0 writes (:meth:`append` and :meth:`export_csv` do nothing on the
    other ranks), so a cell trained by N processes has one row.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "results.jsonl"
        self.csv_path = self.directory / "results.csv"

    def rows(self) -> list[dict]:
        """All complete rows in file order (:func:`lossnet.utils.read_jsonl`: only a last line
        that does not parse is skipped as torn; any other bad line is one error naming the line).
        A ``benchmark`` column with a former numbered name (``benchmark1`` ..., lossnet 0.1.0) is
        read as the benchmark's name (:func:`lossnet.schema.benchmark_name`)."""
        from lossnet.utils import read_jsonl

        if not self.path.exists():
            return []
        rows = read_jsonl(self.path)
        for r in rows:
            if isinstance(r, dict) and isinstance(r.get("benchmark"), str):
                r["benchmark"] = benchmark_name(r["benchmark"])
        return rows

    def ids(self) -> set[str]:
        """The distinct cell ids of the rows."""
        return {r.get("cell_id") for r in self.rows() if isinstance(r, dict)}

    def _repair_tail(self) -> None:
        """Make the file end in a newline before an append. A last line that parses is a complete
        row missing only its newline: the newline is added, the row kept. A last line that does not
        parse is torn (a crash mid-write): it is moved to ``results.jsonl.torn`` (never deleted)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            keep = data.rfind(b"\n") + 1
            tail = data[keep:]
            try:
                complete = isinstance(json.loads(tail.decode("utf-8")), dict)
            except (UnicodeDecodeError, json.JSONDecodeError):
                complete = False
            if complete or not tail.strip():
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                with open(self.path.with_name(self.path.name + ".torn"), "ab") as t:
                    t.write(tail + b"\n")
                    t.flush()
                    os.fsync(t.fileno())
                f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())

    def append(self, row: dict) -> None:
        """Append one row durably (single write of a full line, flush, fsync) and refresh the CSV."""
        from lossnet import distributed
        from lossnet.utils import fault_point

        if not distributed.is_main():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fault_point("row_append")
        self._repair_tail()
        line = (json.dumps(_clean(row), allow_nan=False) + "\n").encode("utf-8")
        with open(self.path, "ab") as f:
            size = f.tell()
            try:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:  # a full disk: no partial row left, one error naming the file
                from lossnet.utils import write_failure

                f.truncate(size)
                full = write_failure(e, self.path)
                if full is not None:
                    raise full from None
                raise
        self.export_csv()

    def export_csv(self, rows: Iterable[dict] | None = None) -> Path:
        """Write ``results.csv`` (atomically) from the JSON-lines rows (rank 0 only under torchrun)."""
        from lossnet import distributed

        if not distributed.is_main():
            return self.csv_path
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
        from lossnet.utils import atomic_write

        return atomic_write(self.csv_path, buf.getvalue())


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
clean = _clean  # public name
