"""p values as lossnet prints them (lossnet.report.formatting.format_p) and in the cross-analysis."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lossnet.report import analysis as an
from lossnet.report.analysis import Score
from lossnet.report.formatting import SMALL_N, format_p


@pytest.mark.parametrize("p, n, text", [
    (0.2, None, "0.2"), (0.042, 50, "0.042"), (0.001, 12, "0.001"), (0.00099, None, "< 1e-3"),
    (3.2e-7, None, "< 1e-6"), (1e-7, None, "< 1e-6"), (0.0, None, "< 1e-16"), (1e-300, 40, "< 1e-16"),
    (0.2, 4, "0.2 (n = 4)"), (2e-9, 9, "< 1e-8 (n = 9)"), (0.5, 10, "0.5"), (float("nan"), 2, "nan"),
    (None, None, "nan"), (1.0 + 1e-12, None, "1"),
])
def test_format_p_known_values(p, n, text):
    assert format_p(p, n) == text


@given(st.floats(min_value=0.0, max_value=1.0), st.one_of(st.none(), st.integers(0, 1000)))
def test_format_p_bounds_tiny_values_and_names_small_n(p, n):
    text = format_p(p, n)
    core, _, tail = text.partition(" (n = ")
    assert (tail == f"{n})") == (n is not None and n < SMALL_N)
    if core.startswith("< 1e-"):
        k = int(core[5:])
        assert p < 1e-3 and p < 10.0 ** -k and 3 <= k <= 16
        assert k == 16 or p >= 10.0 ** -(k + 1)  # the tightest power of ten
    else:
        assert p >= 1e-3 and math.isclose(float(core), p, rel_tol=0.05)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_format_p_rejects_non_probabilities(p):
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        format_p(p)


def test_analysis_prints_tiny_p_as_a_bound_and_small_n(tmp_path, monkeypatch):
    """Two perfectly correlated scores over 12 loss networks (p ~ 0) and 4 (n tiny)."""
    def attrs(arch, layer, input_size=224):
        j = "ESML".index(layer)
        return {"depth": j + 1, "flops": 10.0 ** (j + 1), "params": 5, "top1": 60.0}

    monkeypatch.setattr(an, "attributes", attrs)
    archs = ["alexnet", "vgg16", "resnet18"]
    rows = [{"arch": a, "layer": l, "a": float(i * 4 + j) + 0.1 * j * j, "b": -float(i * 4 + j) ** 3}
            for i, a in enumerate(archs) for j, l in enumerate("ESML")]
    rows += [{"arch": "squeezenet1_1", "layer": l, "c": float(j), "d": float(j) + (j == 2)} for j, l in enumerate("ESML")]
    scores = [Score("a", "x", True), Score("b", "y", True), Score("c", "z", True), Score("d", "w", True)]
    md = an.analysis_markdown(rows, scores, tmp_path / "figures", md_dir=tmp_path)
    pair = next(ln for ln in md.splitlines() if ln.startswith("| a | b | 12 |"))
    assert pair.endswith("| -1 | < 1e-16 |"), pair  # Spearman p of rho = -1 over 12 points
    small = next(ln for ln in md.splitlines() if ln.startswith("| c | d | 4 |"))
    assert "(n = 4)" in small and "e-" not in small.split("|")[5], small
