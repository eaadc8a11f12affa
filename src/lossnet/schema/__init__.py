"""Typed schemas of every setting: one dataclass per config file and per command, from shared sections.

Sections (:mod:`~lossnet.schema.sections`: fit, encoder, probe, loss network, data, LunarLander
...) make up the config files' schemas (:mod:`~lossnet.schema.files`) and the commands' flags
(:mod:`~lossnet.schema.commands`). Every numeric field declares its range and every choice its
allowed values once (:mod:`~lossnet.schema.fields`); :func:`check` raises one
:class:`~lossnet.errors.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

from typing import Dict

from lossnet.schema.commands import Embed, LunarLanderData, Pretrain, Report, Select
from lossnet.schema.fields import build, check, check_precision, check_value, field_of, identity, leaves
from lossnet.schema.files import (Autoencoding, Delineation, Demo, PaperA, PaperB, Similarity, SrVae,
                                  SuperResolution, Sweep)

__all__ = ["BENCHMARK_ALIASES", "COMMANDS", "SCHEMAS", "benchmark_name", "build", "check", "check_args", "check_precision", "check_value", "field_of", "identity",
           "is_benchmark", "leaves", "schema_for"]

SCHEMAS: Dict[str, type] = {"paper_a": PaperA, "paper_b": PaperB, "demo": Demo, "srvae": SrVae, "sweep": Sweep,
                            "similarity": Similarity, "super_resolution": SuperResolution, "delineation": Delineation,
                            "autoencoding": Autoencoding}
"""Config file name -> its schema (a benchmark's schema includes the sweep settings)."""

BENCHMARK_ALIASES: Dict[str, str] = {"benchmark1": "similarity", "benchmark2": "super_resolution",
                                     "benchmark3": "delineation", "benchmark4": "autoencoding"}
"""The benchmarks' numbered names (``lossnet sweep benchmark1``, the rows and sweep.json of lossnet
0.1.0) -> their names."""


def benchmark_name(name: str) -> str:
    """A benchmark's name: a numbered alias (:data:`BENCHMARK_ALIASES`) resolved, any other as it is."""
    return BENCHMARK_ALIASES.get(name, name)


def is_benchmark(name: str) -> bool:
    """Whether config ``name`` is a benchmark's (its schema extends the sweep settings)."""
    s = SCHEMAS.get(name)
    return s is not None and s is not Sweep and issubclass(s, Sweep)

COMMANDS: Dict[str, type] = {"pretrain": Pretrain, "select": Select, "embed": Embed,
                             "data lunarlander": LunarLanderData, "report": Report}
"""Commands without a config file -> the schema of their flags (field name = the flag's dest)."""


def schema_for(what: str) -> type | None:
    """The schema of a config name, a command, or a label such as ``"sweep autoencoding"``."""
    name = what.split()[-1] if what.startswith("sweep ") else what
    return SCHEMAS.get(name) or COMMANDS.get(what)


def check_args(command: str, args: dict) -> None:
    """Check parsed flags (``vars(args)``) of ``command`` (a name in :data:`COMMANDS`, or ``demo``
    whose flags are shorthands for its settings) against its schema: one :class:`ConfigError`
    naming the flag (``--batch-size``), the value and what is allowed."""
    schema = schema_for(command)
    for key, tp, f in leaves(schema):
        if args.get(key) is not None:  # None: the flag was not given
            try:
                check_value(key, args[key], tp, f)
            except Exception as e:
                flag = "--" + key.replace("_", "-")
                raise type(e)(str(e).replace(f"{key}=", f"{flag} ", 1).replace(f": {key} must", f": {flag} must", 1)) \
                    from None
    if "precision" in args:
        check_precision(args["precision"], args.get("device"), "--precision")
