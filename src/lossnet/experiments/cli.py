"""Sub-commands for experiments: ``demo``, ``run``, ``report``."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Register the experiment sub-commands on the top-level ``lossnet`` sub-parser."""
