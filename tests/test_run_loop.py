"""The one run loop (lossnet.runs.loop): skip done cells, append rows, lock held, report once, resume."""

import os

import pytest
from hypothesis import given, settings, strategies as st

from lossnet.runs.cells import cell_id
from lossnet.runs.lock import holder
from lossnet.runs.loop import Cell, final_report, run_cells, run_directory
from lossnet.runs.table import ResultsTable


def _cells(n: int) -> list[Cell]:
    return [Cell(cell_id({"i": i}), f"cell {i}", i) for i in range(n)]


class Stop(Exception):
    pass


def _run(out, cells, *, fail_at=None, calls=None, reports=None):
    calls = [] if calls is None else calls
    reports = [] if reports is None else reports

    def run_one(cell):
        meta = holder(out)  # the lock is held while cells run, by this process
        assert meta is not None and meta["pid"] == os.getpid()
        if cell.item == fail_at:
            raise Stop(cell.label)
        calls.append(cell.item)
        return {"cell_id": cell.cid, "i": cell.item, "seconds": 0.0}

    with run_directory(out, files={"config.yaml": "a: 1\n"}) as d:
        table = ResultsTable(d)
        res = run_cells(table, cells, run_one, describe=lambda r: f"i={r['i']}")
        final_report(lambda: reports.append(1) or d / "report.md")
    return res


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 6), data=st.data())
def test_interrupted_run_resumes_without_recomputing(tmp_path_factory, n, data):
    out = tmp_path_factory.mktemp("run")
    cells = _cells(n)
    stop = data.draw(st.integers(0, n - 1))
    calls, reports = [], []
    with pytest.raises(Stop):
        _run(out, cells, fail_at=stop, calls=calls, reports=reports)
    assert calls == list(range(stop)) and reports == []  # the rows before the failure are kept, no report
    assert [r["i"] for r in ResultsTable(out).rows()] == list(range(stop))
    assert holder(out) is None  # released on the way out
    calls2, reports2 = [], []
    res = _run(out, cells + cells[::-1], calls=calls2, reports=reports2)  # a cell planned twice runs once
    assert calls2 == list(range(stop, n))  # finished cells are not recomputed
    assert res.done_before == stop and res.planned == n and len(res.rows) == n - stop
    assert [r["i"] for r in ResultsTable(out).rows()] == list(range(n))  # one row per cell, in order
    assert reports2 == [1]  # the report is written once
    assert (out / "config.yaml").read_text() == "a: 1\n"
    calls3 = []
    assert _run(out, cells + cells, calls=calls3).done_before == n and calls3 == []  # a repeated cell counts once


def test_screen_keep_tidy_and_launcher_failures(tmp_path):
    cells = _cells(4)
    table = ResultsTable(tmp_path)
    tidied, seen = [], []

    def launch(todo, record, fail):
        for c in todo:
            if c.item == 2:
                fail(c, ValueError("boom"), "traceback in x")
            else:
                record({"cell_id": c.cid, "i": c.item, "status": "ok"})

    res = run_cells(table, cells, done={cells[0].cid}, launch=launch,
                    screen=lambda c: {"cell_id": c.cid, "i": c.item, "status": "skipped"} if c.item == 3 else None,
                    keep=lambda r: r["i"] != 1, tidy=tidied.append, on_row=seen.append)
    assert res.done_before == 1 and res.screened == 1
    assert res.failures == [("cell 2", "ValueError: boom; traceback in x")]
    assert [r["i"] for r in table.rows()] == [3]  # keep() dropped row 1; cell 2 failed
    assert [r["i"] for r in seen] == [3]  # the screened row is recorded first; row 1 is dropped
    assert tidied == [cells[0].cid, cells[3].cid]  # done cells and every appended row


def test_a_second_command_on_the_same_directory_is_refused(tmp_path):
    from lossnet.runs.lock import RunLockedError

    with run_directory(tmp_path):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_try_lock, args=(str(tmp_path), q))
        p.start()
        p.join(60)
        assert q.get(timeout=5) == RunLockedError.__name__


def _try_lock(path, q):  # pragma: no cover - runs in a child process
    try:
        with run_directory(path):
            q.put("acquired")
    except Exception as e:  # noqa: BLE001
        q.put(type(e).__name__)


def test_experiments_and_benchmarks_are_one_plugin_type_in_one_registry():
    import lossnet.benchmarks  # noqa: F401 (registers the four benchmarks)
    from lossnet.benchmarks.base import BENCHMARKS, Benchmark, get_benchmark, register_benchmark
    from lossnet.errors import ConfigError
    from lossnet.experiments.runner import EXPERIMENTS
    from lossnet.runs.plugin import Experiment, Plugin, get, registry

    assert set(EXPERIMENTS) == {"paper_a", "paper_b"} and EXPERIMENTS is registry("experiment")
    assert BENCHMARKS is registry("benchmark") and len(BENCHMARKS) == 4
    for kind, names in (("experiment", EXPERIMENTS), ("benchmark", BENCHMARKS)):
        for name in names:
            p = get(kind, name)
            assert isinstance(p, Plugin) and p.kind == kind and p.name == name and p.description
    assert isinstance(get("experiment", "paper_b"), Experiment) and isinstance(get_benchmark("autoencoding"), Benchmark)
    with pytest.raises(ConfigError, match="unknown benchmark 'nope'; choose one of autoencoding"):
        get_benchmark("nope")
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; choose one of paper_a, paper_b"):
        get("experiment", "nope")
    toy = Benchmark("toy_bench", "a toy", "scales: {quick: {}}", lambda cfg: [], lambda req: {})
    try:
        assert register_benchmark(toy) is toy and get("benchmark", "toy_bench") is toy
        with pytest.raises(ValueError, match="already registered"):
            register_benchmark(toy)
    finally:
        BENCHMARKS.pop("toy_bench", None)
