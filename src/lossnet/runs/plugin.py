"""One plugin type for everything the run loop runs, and one registry.

A :class:`Plugin` has a ``name`` (what the command line takes) and a one-line ``description``;
its class says its ``kind``. Two kinds exist:

* ``"experiment"`` -- :class:`Experiment`: ``lossnet run NAME`` (paper A, paper B; registered by
  :mod:`lossnet.experiments.runner`);
* ``"benchmark"`` -- :class:`lossnet.benchmarks.base.Benchmark`: ``lossnet sweep NAME`` (the four
  benchmarks, registered by their modules).

:func:`register` adds a plugin, :func:`get` finds one (a one-line
:class:`~lossnet.errors.ConfigError` listing the known names otherwise) and :func:`registry` is
the live name -> plugin dict of a kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from lossnet.errors import ConfigError

__all__ = ["Experiment", "Plugin", "get", "register", "registry"]


@dataclass(frozen=True)
class Plugin:
    """Something the run loop runs, registered by ``name`` under its class's ``kind``."""

    name: str
    description: str
    kind: ClassVar[str] = "plugin"


@dataclass(frozen=True)
class Experiment(Plugin):
    """An experiment of ``lossnet run NAME`` (its settings: ``configs/NAME.yaml``).

    Attributes:
        check: ``cfg -> None``, validate the resolved settings (raise ConfigError).
        cells: ``RunContext -> [(coords, spec, cell_id, label)]``, the plan.
        run_cell: ``(RunContext, coords, spec, cell_id, label) -> row``, one cell (the loop appends the row).
        describe: ``row -> str``, its scores for the progress line.
    """

    check: Callable[[Any], None]
    cells: Callable[[Any], list]
    run_cell: Callable[..., dict]
    describe: Callable[[dict], str]
    kind: ClassVar[str] = "experiment"


_REGISTRY: dict[str, dict[str, Plugin]] = {}


def registry(kind: str) -> dict[str, Plugin]:
    """The live ``name -> plugin`` dict of ``kind`` (``"experiment"`` or ``"benchmark"``)."""
    return _REGISTRY.setdefault(kind, {})


def register(plugin: Plugin, *, overwrite: bool = False) -> Plugin:
    """Make ``plugin`` available under its name and kind; a second one of the same name is an
    error unless ``overwrite``."""
    reg = registry(plugin.kind)
    if plugin.name in reg and not overwrite:
        raise ValueError(f"{plugin.kind} {plugin.name!r} is already registered; pass overwrite=True")
    reg[plugin.name] = plugin
    return plugin


def get(kind: str, name: str) -> Plugin:
    """The registered plugin of ``kind`` called ``name``; ConfigError listing the known ones otherwise."""
    reg = registry(kind)
    if name not in reg:
        raise ConfigError(f"unknown {kind} {name!r}; choose one of {', '.join(sorted(reg)) or '(none)'}")
    return reg[name]
