"""The extraction-layer keys (imports nothing, so torch-free callers such as reports can use them)."""

LAYER_KEYS = ("E", "S", "M", "L")
"""The four extraction layers of the systematic-analysis paper (Table II): early, semi-early, mid and
late. The one definition; everything that lists the layers imports it."""

__all__ = ["LAYER_KEYS"]
