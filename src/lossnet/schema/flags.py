"""Command-line flags generated from a schema, and the argument handling every command shares.

:func:`add_flags` writes one ``--flag`` per field of a command's schema (type, default and help
from the field, each written once); the values are range-checked by
:func:`lossnet.schema.check_args` after parsing, before any data are read or generated.
:class:`OneLineParser` reports argparse's own errors (unknown flag, ``--z abc``) as one line, exit 2.
:func:`normalize_out` lets every command that writes an output folder take ``--out DIR`` and
``out=DIR`` alike. Standard library only (``lossnet --help`` stays fast).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Iterable, List, Sequence, get_args, get_origin

from lossnet.schema.fields import _hints, _unwrap

__all__ = ["DefaultsFormatter", "OneLineParser", "add_flags", "normalize_out"]

KEY_VALUE_COMMANDS = ("run", "sweep", "srvae", "demo")
"""Commands that take ``key=value`` settings (``--out DIR`` becomes ``out=DIR`` there)."""
FLAG_OUT_COMMANDS = ("pretrain", "embed", "select", "report", "data")
"""Commands whose output folder/file is the ``--out`` flag (``out=DIR`` becomes ``--out DIR`` there)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``lossnet pretrain: error: ...; see --help``), exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where there is a default to show (not None, False or SUPPRESS)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "%(default)" in (action.help or "") or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _shown(v) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(map(str, v))
    return str(v).lower() if isinstance(v, bool) else str(v)


def add_flags(parser: argparse.ArgumentParser, schema: type, *, required: Iterable[str] = (),
              positional: Iterable[str] = (), skip: Iterable[str] = (), metavars: dict | None = None) -> None:
    """One flag per top-level field of ``schema`` (``batch_size`` -> ``--batch-size``): ``bool`` fields
    are switches, lists take several values, choices are listed in the help; ``positional`` fields
    become positional arguments. No ``choices=`` or range is given to argparse: the schema checks
    them (:func:`lossnet.schema.check_args`) so every bad value is the same one-line error."""
    hints, metavars = _hints(schema), metavars or {}
    required, positional, skip = set(required), set(positional), set(skip)
    for f in fields(schema):
        if f.name in skip:
            continue
        tp, _ = _unwrap(hints[f.name])
        m = f.metadata
        default = f.default_factory() if f.default_factory is not MISSING else (
            None if f.default is MISSING else f.default)
        doc = m.get("doc") or f.name.replace("_", " ")
        if m.get("choices"):
            doc += f"; one of {', '.join(m['choices'])}"
        elif m.get("shown") and m["shown"] not in doc:
            doc += f"; {m['shown']}"
        kw: dict = {"help": doc}
        if tp is bool:
            kw["action"] = "store_true"
        else:
            if get_origin(tp) in (list, List):
                kw["nargs"] = "+"
                (tp,) = get_args(tp) or (str,)
            if tp in (int, float):
                kw["type"] = tp
            if default is not None and f.name not in required:
                kw["help"] = f"{doc} (default: {_shown(default)})"
            kw["default"] = default
            if f.name in metavars:
                kw["metavar"] = metavars[f.name]
        if f.name in positional:
            kw.pop("default", None)
            parser.add_argument(f.name, **kw)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), required=f.name in required, **kw)


def normalize_out(argv: Sequence[str]) -> List[str]:
    """``argv`` with the output folder spelt the way its command parses it: ``out=DIR`` ->
    ``--out DIR`` for the flag commands (pretrain, embed, select, report, data), ``--out DIR`` /
    ``--out=DIR`` -> ``out=DIR`` (appended to the settings) for run, sweep and srvae."""
    argv = list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in FLAG_OUT_COMMANDS:
        return [x for a in argv for x in (["--out", a[4:]] if a.startswith("out=") else [a])]
    if command in KEY_VALUE_COMMANDS and command != "demo":
        out, rest, i = [], [], 0
        while i < len(argv):
            a = argv[i]
            if a == "--out" and i + 1 < len(argv):
                out.append(f"out={argv[i + 1]}")
                i += 2
                continue
            if a.startswith("--out="):
                out.append(f"out={a[6:]}")
            else:
                rest.append(a)
            i += 1
        return rest + out
    return argv

