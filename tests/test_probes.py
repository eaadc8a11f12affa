"""Tests for lossnet.eval.probes (fused probe grids) and lossnet.eval.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossnet.eval.metrics import accuracy, position_error
from lossnet.eval.probes import (
    GRIDS,
    FittedProbe,
    GridResult,
    ProbeMLP,
    ProbeSpec,
    fit_probe_grid,
    fit_probe_sequential,
    make_grid,
)

# Fused vs alone: the only differences are float32 summation orders inside the matmuls
# (measured max |diff| ~1e-7 after 20 epochs), so 1e-5 is a comfortable but strict bound.
ATOL = 1e-5
RTOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests are tiny; one intra-op thread keeps them fast and steady even when the CI
    machine's 2 cores are shared (OpenMP barriers stall badly under contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _classification_data(n=600, n_test=300, d=16, k=4, seed=0, spread=4.0, noise=0.5):
    """Gaussian blobs around well separated centres: linearly separable with a margin."""
    g = _gen(seed)
    centres = torch.randn(k, d, generator=g) * spread

    def draw(m):
        y = torch.randint(0, k, (m,), generator=g)
        return centres[y] + noise * torch.randn(m, d, generator=g), y

    x, y = draw(n)
    xt, yt = draw(n_test)
    return x, y, xt, yt


def _regression_data(n=600, n_test=300, d=16, seed=0):
    """Positions in pixels: y = x A + offset, offsets/scales like a 600x400 screen."""
    g = _gen(seed)
    a = torch.randn(d, 2, generator=g) * 20.0
    off = torch.tensor([300.0, 200.0])
    x = torch.randn(n, d, generator=g)
    xt = torch.randn(n_test, d, generator=g)
    return x, x @ a + off, xt, xt @ a + off


MIXED_GRID = [
    ProbeSpec(()),
    ProbeSpec((32,)),
    ProbeSpec((32,), "sigmoid"),
    ProbeSpec((64, 32)),
    ProbeSpec((64, 32), "sigmoid", "softmax"),
    ProbeSpec((32, 32)),
    ProbeSpec((32,), "relu", "softmax"),
    ProbeSpec((32,), "leaky_relu"),
    ProbeSpec((32, 32), "leaky_relu", "softmax"),
]


# ------------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("task,loss", [("classification", "cross_entropy"), ("classification", "mse"),
                                       ("regression", "cross_entropy")])
def test_fused_grid_matches_probes_trained_alone(task, loss):
    # Small noisy data and a high learning rate so that several probes overfit: their best
    # epochs differ, which also exercises per-probe best-epoch restoration inside the grid.
    # Softmax probes are in every grid (for regression too, as in paper A's grid).
    if task == "classification":
        x, y, xt, yt = _classification_data(n=200, noise=4.0)
    else:
        x, y, xt, yt = _regression_data(n=200)
        y = y + 60.0 * torch.randn(y.shape, generator=_gen(5))
    specs = MIXED_GRID
    epochs = 15
    kw = dict(task=task, grid=specs, epochs=epochs, batch_size=32, lr=1e-2, progress=False,
              seed=3, classification_loss=loss)
    fused = fit_probe_grid(x, y, xt, yt, **kw)
    alone = fit_probe_sequential(x, y, xt, yt, **kw)
    best_epochs = {r.best_epoch for r in fused.rows}
    assert len(best_epochs) > 2 and min(best_epochs) < epochs

    assert [r.name for r in fused.rows] == [s.name for s in specs]
    for rf, ra in zip(fused.rows, alone.rows):
        assert rf.name == ra.name
        assert rf.best_epoch == ra.best_epoch
        assert math.isclose(rf.best_val_loss, ra.best_val_loss, rel_tol=1e-5, abs_tol=1e-6)
        sf, sa = fused.states[rf.name], alone.states[ra.name]
        assert sf.keys() == sa.keys()
        for k in sf:
            torch.testing.assert_close(sf[k], sa[k], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(fused.history, alone.history, atol=ATOL, rtol=RTOL)
    assert fused.selected_name == alone.selected_name
    torch.testing.assert_close(fused.test_predictions, alone.test_predictions, atol=1e-3, rtol=1e-4)


def test_probe_inside_grid_matches_same_probe_alone_in_grid_of_one():
    x, y, xt, yt = _classification_data(noise=2.0)
    spec = ProbeSpec((64, 32), "sigmoid")
    kw = dict(task="classification", epochs=5, batch_size=32, progress=False)
    big = fit_probe_grid(x, y, xt, yt, grid=make_grid("paper_a", "classification"), **kw)
    one = fit_probe_grid(x, y, xt, yt, grid=[spec], **kw)
    for k, v in one.states[spec.name].items():
        torch.testing.assert_close(big.states[spec.name][k], v, atol=ATOL, rtol=RTOL)


def test_initialisation_depends_only_on_seed_and_spec():
    spec = ProbeSpec((32,))
    a = spec.build(8, 2, seed=11).state_dict()
    b = spec.build(8, 2, seed=11).state_dict()
    c = spec.build(8, 2, seed=12).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["net.0.weight"], c["net.0.weight"])


# ------------------------------------------------------------------------------- quality


def test_grid_solves_linearly_separable_classification():
    x, y, xt, yt = _classification_data(n=1500, n_test=500, d=16, k=10, seed=1)
    r = fit_probe_grid(x, y, xt, yt, task="classification", epochs=15, progress=False)
    assert isinstance(r, GridResult) and r.metric == "accuracy"
    assert len(r.rows) == 7
    assert r.test_metric > 0.95
    assert r.test_predictions.shape == (500, 10)
    assert math.isclose(accuracy(r.test_predictions, yt), r.test_metric)


def test_grid_regression_beats_predicting_the_mean():
    x, y, xt, yt = _regression_data(n=1500, n_test=500)
    r = fit_probe_grid(x, y, xt, yt, task="regression", epochs=40, progress=False)
    assert r.metric == "position_error"
    baseline = position_error(y.mean(0).expand_as(yt), yt)
    assert r.test_metric < 0.1 * baseline, (r.test_metric, baseline)  # ~6 px vs ~99 px
    assert r.test_predictions.shape == yt.shape
    # predictions are in pixels (original units), not standardised units
    assert math.isclose(position_error(r.test_predictions, yt), r.test_metric, rel_tol=1e-6)
    assert abs(float(r.test_predictions.mean(0)[0]) - 300.0) < 20.0


def test_numpy_inputs_and_1d_regression_targets():
    x, y, xt, yt = _regression_data(n=300, n_test=100)
    r = fit_probe_grid(
        x.numpy(), y[:, 0].numpy(), xt.numpy(), yt[:, 0].numpy(), task="regression",
        grid="linear", epochs=3, progress=False,
    )
    assert r.test_predictions.shape == (100, 1)
    assert np.isfinite(r.test_metric)


# ------------------------------------------------------------------------------- selection


def test_selected_probe_has_lowest_validation_loss():
    x, y, xt, yt = _classification_data(noise=2.0, seed=4)
    r = fit_probe_grid(
        x, y, xt, yt, task="classification", grid=MIXED_GRID, epochs=6, progress=False
    )
    losses = [row.best_val_loss for row in r.rows]
    assert r.selected is r.rows[int(np.argmin(losses))]
    assert r.selected.best_val_loss == min(losses)
    for i, row in enumerate(r.rows):
        assert row.best_val_loss == pytest.approx(float(r.history[i].min()))
        assert row.best_epoch == int(r.history[i].argmin()) + 1
    # the returned predictions / module are the selected probe's
    assert isinstance(r.selected_probe, FittedProbe)
    assert r.selected_probe.spec.name == r.selected_name
    with torch.no_grad():
        torch.testing.assert_close(r.selected_probe(xt), r.test_predictions)
    assert accuracy(r.test_predictions, yt) == pytest.approx(r.test_metric)
    assert r.selected_name in r.table()


def test_best_epoch_parameters_are_restored():
    # Pure-noise targets and a big probe: validation loss bottoms out early, then rises.
    g = _gen(7)
    x = torch.randn(120, 8, generator=g)
    y = torch.randn(120, 2, generator=g) * 50 + 100
    xt, yt = x[:20], y[:20]
    spec = ProbeSpec((128, 128))
    kw = dict(task="regression", grid=[spec, ProbeSpec(())], batch_size=8, lr=3e-3,
              progress=False, seed=1)
    epochs = 25
    r = fit_probe_grid(x, y, xt, yt, epochs=epochs, **kw)
    hist = r.history[0]
    best = r.rows[0].best_epoch
    assert best < epochs and float(hist[-1]) > float(hist[best - 1]) * 1.2  # it really rose

    # kept parameters == parameters after exactly `best` epochs (same seed, same batch order)
    r_short = fit_probe_grid(x, y, xt, yt, epochs=best, **kw)
    for k, v in r.states[spec.name].items():
        torch.testing.assert_close(v, r_short.states[spec.name][k], atol=ATOL, rtol=RTOL)

    # and they reproduce the recorded best validation loss
    fp = FittedProbe(
        ProbeMLP(spec, 8, 2), r.selected_probe.x_mean, r.selected_probe.x_std,
        r.selected_probe.y_mean, r.selected_probe.y_std,
    )
    fp.probe.load_state_dict(r.states[spec.name])
    xv, yv = x[r.val_idx], y[r.val_idx]
    with torch.no_grad():
        z = fp.probe((xv - fp.x_mean) / fp.x_std)
        val = float(((z - (yv - fp.y_mean) / fp.y_std) ** 2).mean())
    assert val == pytest.approx(r.rows[0].best_val_loss, rel=1e-4)


def test_split_is_seeded_80_20():
    x, y, xt, yt = _classification_data(n=500)
    a = fit_probe_grid(x, y, xt, yt, task="classification", grid="linear", epochs=1,
                       progress=False, seed=0)
    b = fit_probe_grid(x, y, xt, yt, task="classification", grid="linear", epochs=1,
                       progress=False, seed=0)
    c = fit_probe_grid(x, y, xt, yt, task="classification", grid="linear", epochs=1,
                       progress=False, seed=1)
    assert len(a.val_idx) == 100 and len(a.train_idx) == 400
    assert set(a.val_idx.tolist()).isdisjoint(a.train_idx.tolist())
    assert torch.equal(a.val_idx, b.val_idx)
    assert not torch.equal(a.val_idx, c.val_idx)


# ------------------------------------------------------------------------------- grids


def test_paper_b_grid():
    specs = make_grid("paper_b")
    assert len(specs) == 7
    assert [s.hidden for s in specs] == [
        (), (32,), (64,), (32, 32), (64, 32), (64, 64), (128, 128)
    ]
    assert all(s.activation == "relu" and s.output == "plain" for s in specs)
    assert specs[0].name == "linear" and specs[4].name == "mlp[64,32]-relu"


def test_paper_b_leaky_grid_is_the_authors_fc_net():
    """guspih/Perceptual-Autoencoders trains the 7 probes as ``fc_net(z, arch + [labels],
    [nn.LeakyReLU] * len(arch) + [None])``: Linear, LeakyReLU(0.01), ..., Linear."""
    specs = make_grid("paper_b_leaky")
    assert [s.hidden for s in specs] == [s.hidden for s in make_grid("paper_b")]
    assert [s.activation for s in specs[1:]] == ["leaky_relu"] * 6
    assert specs[4].name == "mlp[64,32]-leaky_relu"
    x = torch.randn(50, 8, generator=_gen(1)) * 3
    for spec in specs:
        m = spec.build(8, 2, seed=0)
        acts = [mod for mod in m.net if not isinstance(mod, torch.nn.Linear)]
        assert len(acts) == len(spec.hidden)
        assert all(type(a) is torch.nn.LeakyReLU and a.negative_slope == 0.01 for a in acts)
        ref, h = [], x  # the authors' network, layer by layer, with the same weights
        for i, lin in enumerate(m.linears()):
            h = torch.nn.functional.linear(h, lin.weight, lin.bias)
            if i < len(spec.hidden):
                h = torch.where(h > 0, h, 0.01 * h)
        torch.testing.assert_close(m(x), h)
        if spec.hidden:  # ReLU would zero the negative part: the grids differ
            relu = ProbeSpec(spec.hidden).build(8, 2, seed=0)
            relu.load_state_dict(m.state_dict())
            assert not torch.allclose(relu(x), m(x))


def test_paper_a_grid():
    specs = make_grid("paper_a")
    assert len(specs) == 36 and len({s.name for s in specs}) == 36
    for s in specs:
        assert len(s.hidden) in (1, 2)
        assert set(s.hidden) <= {32, 64, 128}
        if len(s.hidden) == 2:
            assert s.hidden[1] <= s.hidden[0]
    assert {s.activation for s in specs} == {"relu", "sigmoid"}
    assert {s.output for s in specs} == {"plain", "softmax"}
    assert len({s.hidden for s in specs}) == 9
    plain = make_grid("paper_a", softmax=False)
    assert len(plain) == 18 and all(s.output == "plain" for s in plain)
    # one grid for every task, as in paper A (LunarLander included)
    assert make_grid("paper_a", task="classification") == specs == make_grid("paper_a", task="regression")


def test_linear_grid_and_copies():
    assert [s.hidden for s in make_grid("linear")] == [()]
    g = make_grid("paper_b")
    g.clear()
    assert len(GRIDS["paper_b"]) == 7


def test_softmax_probe_outputs_probabilities():
    m = ProbeSpec((32,), "sigmoid", "softmax").build(5, 4, seed=0)
    p = m(torch.randn(3, 5))
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    assert ProbeSpec((32,), "sigmoid", "softmax").name == "mlp[32]-sigmoid-softmax"


# ------------------------------------------------------------------------------- validation


def _small():
    return _classification_data(n=50, n_test=20)


def test_rejects_mismatched_lengths():
    x, y, xt, yt = _small()
    with pytest.raises(ValueError, match="rows"):
        fit_probe_grid(x, y[:-1], xt, yt, task="classification", progress=False)
    with pytest.raises(ValueError, match="rows"):
        fit_probe_grid(x, y, xt, yt[:-2], task="classification", progress=False)


def test_rejects_non_finite_embeddings():
    x, y, xt, yt = _small()
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit_probe_grid(bad, y, xt, yt, task="classification", progress=False)
    bad_t = xt.clone()
    bad_t[0, 0] = float("inf")
    with pytest.raises(ValueError, match="test_x contains NaN or Inf"):
        fit_probe_grid(x, y, bad_t, yt, task="classification", progress=False)


def test_rejects_wrong_target_dtype():
    x, y, xt, yt = _small()
    with pytest.raises(ValueError, match="integer class labels"):
        fit_probe_grid(x, y.float(), xt, yt.float(), task="classification", progress=False)
    with pytest.raises(ValueError, match="floating point"):
        fit_probe_grid(x, y, xt, yt, task="regression", progress=False)


def test_rejects_unknown_grid_task_and_bad_specs():
    x, y, xt, yt = _small()
    with pytest.raises(ValueError, match="unknown probe grid"):
        fit_probe_grid(x, y, xt, yt, task="classification", grid="paper_c", progress=False)
    with pytest.raises(ValueError, match="task"):
        fit_probe_grid(x, y, xt, yt, task="detection", progress=False)
    with pytest.raises(ValueError, match="classification_loss"):
        fit_probe_grid(x, y, xt, yt, task="classification", classification_loss="nll", progress=False)
    with pytest.raises(ValueError, match="standardize_targets"):
        fit_probe_grid(x, y.float(), xt, yt.float(), task="regression", standardize_targets="yes",
                       progress=False)
    with pytest.raises(ValueError, match="features"):
        fit_probe_grid(x, y, xt[:, :5], yt, task="classification", progress=False)
    with pytest.raises(ValueError, match="unknown probe grid"):
        make_grid("nope")
    with pytest.raises(ValueError):
        ProbeSpec((32,), activation="tanh")
    with pytest.raises(ValueError):
        ProbeSpec((0,))


def test_metrics_validate_shapes():
    assert position_error(torch.zeros(2, 2), torch.tensor([[3.0, 4.0], [0.0, 0.0]])) == 2.5
    assert accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    assert accuracy(np.array([1, 0, 1]), np.array([1, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shape"):
        position_error(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        position_error(torch.zeros(3, 2, 1), torch.zeros(3, 2, 1))
    with pytest.raises(ValueError, match="predictions"):
        accuracy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        accuracy(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        accuracy(torch.zeros(4, 3), torch.zeros(4))


# ------------------------------------------------------------------------------- paper A fidelity


def _softmax_halves(res):
    plain = {r.name: r for r in res.rows if r.spec.output == "plain"}
    soft = {r.name[: -len("-softmax")]: r for r in res.rows if r.spec.output == "softmax"}
    assert plain.keys() == soft.keys() and len(plain) == 18
    return plain, soft


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_paper_a_softmax_half_differs_from_plain_half_classification(loss, monkeypatch):
    """A softmax probe is trained with the loss on its softmax outputs, not on its logits: given
    the SAME initialisation as its plain twin, its training (validation curve, parameters)
    differs. (Before, softmax probes minimised -log_softmax(logits), i.e. exactly the plain
    loss, so with equal inits the two halves of paper A's grid were identical.)"""
    x, y, xt, yt = _classification_data(n=300, n_test=100, noise=2.0)
    specs = make_grid("paper_a", softmax=False)
    twins = [ProbeSpec(s.hidden, s.activation, "softmax") for s in specs]
    kw = dict(task="classification", epochs=4, batch_size=32, progress=False, classification_loss=loss)
    a = fit_probe_grid(x, y, xt, yt, grid=specs, **kw)
    # same init for the twins: build them with the plain probes' seeds
    import lossnet.eval.probes as pr

    real = pr._probe_seed
    monkeypatch.setattr(pr, "_probe_seed",
                        lambda seed, spec: real(seed, ProbeSpec(spec.hidden, spec.activation, "plain")))
    b = fit_probe_grid(x, y, xt, yt, grid=twins, **kw)
    for s, t in zip(specs, twins):
        assert not torch.allclose(a.history[specs.index(s)], b.history[twins.index(t)], rtol=1e-3, atol=1e-4)
        sa, sb = a.states[s.name], b.states[t.name]
        assert any(not torch.allclose(sa[k], sb[k], atol=1e-4) for k in sa)


def test_softmax_loss_is_on_the_softmax_outputs():
    from lossnet.eval.probe_training import _per_probe_loss

    out = torch.randn(2, 3, 5, generator=_gen(0))  # (P, T, B)
    y = torch.tensor([0, 2, 1, 1, 0])
    soft = torch.tensor([False, True])
    p = torch.softmax(out[1], dim=0)
    onehot = torch.nn.functional.one_hot(y, 3).float().t()
    mse = _per_probe_loss(out, y, "classification", soft, "mse")
    torch.testing.assert_close(mse[0], (out[0] - onehot).square().mean())
    torch.testing.assert_close(mse[1], (p - onehot).square().mean())
    ce = _per_probe_loss(out, y, "classification", soft, "cross_entropy")
    torch.testing.assert_close(ce[0], torch.nn.functional.cross_entropy(out[0].t(), y))
    torch.testing.assert_close(ce[1], torch.nn.functional.cross_entropy(p.t(), y))  # CE on probabilities
    yr = torch.randn(5, 3, generator=_gen(1))
    reg = _per_probe_loss(out, yr, "regression", soft)
    torch.testing.assert_close(reg[1], (p - yr.t()).square().mean())


def test_softmax_half_differs_for_regression_and_predicts_softmax_outputs():
    x, y, xt, yt = _regression_data(n=300, n_test=100)
    res = fit_probe_grid(x, y, xt, yt, task="regression", grid="paper_a", epochs=5, batch_size=32,
                         progress=False)
    plain, soft = _softmax_halves(res)
    assert len(res.rows) == 36
    # softmax outputs sum to 1 in standardised units and cannot fit a linear target: worse
    assert all(soft[k].best_val_loss > plain[k].best_val_loss for k in plain)
    assert res.selected.spec.output == "plain"


def test_standardize_inputs_and_targets_separately():
    x, y, xt, yt = _regression_data(n=200, n_test=50)
    kw = dict(task="regression", grid="linear", epochs=2, batch_size=32, progress=False)
    both = fit_probe_grid(x, y, xt, yt, **kw)
    raw_y = fit_probe_grid(x, y, xt, yt, standardize_targets=False, **kw)
    raw_x = fit_probe_grid(x * 100 + 5, y, xt * 100 + 5, yt, standardize=False, standardize_targets=True, **kw)
    fp = both.selected_probe
    assert fp.x_std.ne(1).all() and fp.y_std.ne(1).all()
    assert torch.equal(raw_y.selected_probe.y_std, torch.ones(2)) and raw_y.selected_probe.x_std.ne(1).all()
    assert torch.equal(raw_x.selected_probe.x_std, torch.ones(16)) and raw_x.selected_probe.y_std.ne(1).all()
    # unstandardised pixel targets (offset 300/200): MSE in pixels^2, so the loss differs in scale
    assert raw_y.selected.best_val_loss > 100 * both.selected.best_val_loss
