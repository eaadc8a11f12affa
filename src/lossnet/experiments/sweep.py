"""Sweeps over loss networks (placeholder until the sweep lands)."""


def add_cli(sub) -> None:
    """Register `lossnet sweep` and `lossnet select`."""
