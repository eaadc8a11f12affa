"""lossnet.utils.batched: the one "uint8 images -> float [0, 1], in batches, under no_grad, concatenated" loop."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lossnet.utils import batched, to_unit


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 13), batch_size=st.integers(1, 7), uint8=st.booleans(), many=st.booleans())
def test_batched_equals_one_whole_call(n, batch_size, uint8, many):
    """generated: any N, batch size, input dtype, tensor or list output -> the same as fn on all of it"""
    g = torch.Generator().manual_seed(n * 31 + batch_size)
    x = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    if not uint8:
        x = x.float() / 255
    w = torch.randn(3, requires_grad=True, generator=g)
    calls = []

    def fn(b):
        calls.append((b.dtype, len(b), b.requires_grad, torch.is_grad_enabled()))
        y = (b * w.view(1, 3, 1, 1)).sum((2, 3))
        return [y, y.sum(1)] if many else y

    out = batched(fn, x, batch_size, dtype=torch.float64)
    whole = (to_unit(x) * w.view(1, 3, 1, 1)).sum((2, 3)).detach().double()
    expect = [whole, whole.sum(1)] if many else whole
    for o, e in zip(out if many else [out], expect if many else [expect]):
        assert o.dtype == torch.float64 and o.device.type == "cpu" and not o.requires_grad
        torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-6)  # float32 sums in another order, then float64
    assert all(d == torch.float32 and not grad and not enabled for d, _, grad, enabled in calls)
    assert [c[1] for c in calls] == ([min(batch_size, n - i) for i in range(0, n, batch_size)] or [0])


def test_to_unit_scales_only_uint8():
    assert to_unit(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [0.0, 1.0]
    assert to_unit(torch.tensor([0.5, 2.0], dtype=torch.float64)).dtype == torch.float32
    assert to_unit(torch.tensor([0.5, 2.0])).tolist() == [0.5, 2.0]


def test_batched_moves_the_outputs_to_out_device():
    """Outputs go to the CPU unless ``out_device`` names another device (meta here: no GPU needed);
    every output of a list goes there, cast to ``dtype``."""
    x = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    assert batched(lambda b: b.sum((2, 3)), x, 2).device.type == "cpu"
    out = batched(lambda b: [b.sum((2, 3)), b.sum((1, 2, 3))], x, 2, dtype=torch.float16, out_device="meta")
    assert [(o.device.type, o.dtype, tuple(o.shape)) for o in out] == [("meta", torch.float16, (5, 3)),
                                                                     ("meta", torch.float16, (5,))]
