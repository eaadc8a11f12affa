"""Property tests (hypothesis, few examples each so they run in seconds): losses are non-negative,
zero for identical inputs and symmetric where they should be; PSNR/SSIM stay in their ranges;
``ResultsTable`` round-trips arbitrary JSON-able rows."""

from __future__ import annotations

import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lossnet.losses import feature_prediction_loss, kl_divergence, perceptual_distance, pixel_loss  # noqa: E402

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _images(seed: int, n: int, size: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@FAST
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 3), size=st.integers(4, 12),
       kind=st.sampled_from(["mse", "l1"]))
def test_pixel_loss_properties(seed, n, size, kind):
    a, b = _images(seed, n, size), _images(seed + 1, n, size)
    d = pixel_loss(a, b, kind)
    assert d >= 0 and pixel_loss(a, a, kind) == 0
    assert torch.allclose(d, pixel_loss(b, a, kind))


@FAST
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 3), c=st.integers(1, 8), hw=st.integers(1, 5))
def test_feature_losses_properties(seed, n, c, hw):
    g = torch.Generator().manual_seed(seed)
    f0, f1 = torch.randn(n, c, hw, hw, generator=g), torch.randn(n, c, hw, hw, generator=g)
    p0, p1 = f0.flatten(1), f1.flatten(1)
    fp = feature_prediction_loss(p0, f1)
    assert fp >= 0 and feature_prediction_loss(p0, f0) == 0
    assert torch.allclose(fp, feature_prediction_loss(p1, f0))
    d = perceptual_distance([f0], [f1])
    assert (d >= 0).all() and torch.allclose(d, perceptual_distance([f1], [f0]))
    assert torch.allclose(perceptual_distance([f0], [f0]), torch.zeros(n), atol=1e-6)


@FAST
@given(seed=st.integers(0, 2**31 - 1), z=st.integers(1, 16))
def test_kl_divergence_is_non_negative_and_zero_at_the_prior(seed, z):
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(2, z, generator=g), torch.randn(2, z, generator=g)
    assert kl_divergence(mu, logvar) >= 0
    assert kl_divergence(torch.zeros(2, z), torch.zeros(2, z)) == 0


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), noise=st.floats(0.0, 0.5))
def test_psnr_ssim_ranges(seed, noise):
    from lossnet.eval.sr import psnr_ssim

    hr = _images(seed, 1, 24)
    sr = (hr + noise * (_images(seed + 7, 1, 24) - 0.5)).clamp(0, 1)
    (s,) = psnr_ssim(sr, hr)
    assert -1 <= s["ssim"] <= 1 + 1e-9
    assert s["psnr"] >= 0 or math.isinf(s["psnr"])
    (same,) = psnr_ssim(hr, hr)
    assert same["ssim"] == pytest.approx(1.0, abs=1e-4) and (math.isinf(same["psnr"]) or same["psnr"] > 60)


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8)
                     | st.floats(allow_nan=False, allow_infinity=False),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
                     max_leaves=10)


@FAST
@given(rows=st.lists(st.dictionaries(st.text(max_size=6), _json, max_size=4), min_size=1, max_size=4))
def test_results_table_round_trips_json_rows(rows, tmp_path_factory):
    from lossnet.runs.table import ResultsTable

    table = ResultsTable(tmp_path_factory.mktemp("t"))
    for r in rows:
        table.append(r)
    assert table.rows() == rows
    assert table.csv_path.exists()
