"""How lossnet prints a p value (one rule for every table and message).

* ``p >= 1e-3``: two significant digits (``0.2``, ``0.042``);
* ``p < 1e-3``: an upper bound, the next power of ten above it (``3.2e-7`` -> ``< 1e-6``), since
  the digits of a tiny p mean nothing; below ``1e-16`` (double-precision noise, including an
  underflowed ``0.0``) it reads ``< 1e-16``;
* with ``n`` under :data:`SMALL_N` observations the count is stated beside it (``0.2 (n = 4)``):
  a p value of a correlation over a handful of points is a weak statement;
* ``None`` / NaN (too few points, or a constant side): ``nan``.
"""

from __future__ import annotations

import math

SMALL_N = 10
"""Below this many observations :func:`format_p` states ``n`` beside the value."""

TINY_P = 1e-3
"""Below this, :func:`format_p` prints an upper bound ``< 1e-k`` instead of digits."""

FLOOR_EXP = 16
"""``< 1e-16`` is the smallest bound printed (double precision)."""


def format_p(p: float | None, n: int | None = None) -> str:
    """``p`` (a probability in [0, 1]; NaN or ``None`` when undefined) as text, see the module doc.

    ``n`` is the number of observations behind ``p``; stated when ``n < SMALL_N``.
    """
    if p is None or math.isnan(p):
        return "nan"
    if not 0.0 <= p <= 1.0 + 1e-9:  # scipy may return 1 + rounding
        raise ValueError(f"a p value must be in [0, 1], got {p!r}")
    p = min(p, 1.0)
    if p < TINY_P:
        k = FLOOR_EXP if p < 10.0 ** -FLOOR_EXP else min(FLOOR_EXP, -(math.floor(math.log10(p)) + 1))
        text = f"< 1e-{k}"
    else:
        text = f"{p:.2g}"
    return f"{text} (n = {n})" if n is not None and n < SMALL_N else text
