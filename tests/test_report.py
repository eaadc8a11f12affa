"""Report tables and figures from synthetic results rows; the results table itself."""

from __future__ import annotations

import json

import pytest

from lossnet.runs.table import ResultsTable, flatten_row
from lossnet.runs.cells import cell_id
from lossnet.report import write_report
from lossnet.report.figures import scaled_val_curves
from lossnet.report.tables import mean_std, paper_a_markdown, paper_b_markdown, table8

PROCS = ["I-I-PW", "I-I-PS", "F-I-PW", "F-I-PS", "I-F-FP", "F-F-FP"]


def _b_row(proc, z, rep, score, sec, hist=(1.0, 0.5)):
    return {"cell_id": f"{proc}-{z}-{rep}", "setting_id": "s", "experiment": "paper_b", "dataset": "lunarlander",
            "procedure": proc, "model": proc, "z": z, "repeat": rep, "seed": rep, "metric": "position_error",
            "higher_is_better": False, "test_score": score, "probe": "linear", "epoch_seconds": sec,
            "train_seconds": 2 * sec, "time_to_best_seconds": 2 * sec, "device": "cpu",
            "history": [{"epoch": i, "val_loss": v} for i, v in enumerate(hist)]}


def _a_row(model, z, score, lin, rel):
    return {"cell_id": f"{model}-{z}", "setting_id": "a", "experiment": "paper_a", "dataset": "svhn", "model": model,
            "z": z, "repeat": 0, "metric": "accuracy", "higher_is_better": True, "test_score": score,
            "linear_score": lin, "recon_rel_l1": rel, "epoch_seconds": 1.0, "device": "cpu"}


def test_std_is_uncorrected():
    m, s, n = mean_std([1.0, 3.0, None, float("nan")])
    assert (m, s, n) == (2.0, 1.0, 2)  # corrected (ddof=1) would be sqrt(2)
    assert mean_std([5.0])[1] == 0.0


def test_paper_b_tables_mean_std_and_best_z():
    rows = []
    for i, p in enumerate(PROCS):
        for z in (64, 128):
            rows += [_b_row(p, z, 0, 1.0 + i + z / 64, 0.1 * (i + 1)), _b_row(p, z, 1, 3.0 + i + z / 64, 0.3 * (i + 1))]
    md = paper_b_markdown(rows)
    for p in PROCS:
        assert f"| {p} |" in md
    assert "| I-I-PW | 3.00 ± 1.00 | 4.00 ± 1.00 |" in md  # (2, 4) and (3, 5): mean ± uncorrected std
    assert "| I-I-PW | 64 | 3.00 ± 1.00 (n=2) |" in md  # best z for a lower-is-better metric
    assert "n = 2 repeats per cell" in md


def test_table8_relative_performance():
    rows = [_a_row("AE-PW", 32, 0.8, 0.3, 0.20), _a_row("AE-PW", 64, 0.8, 0.3, 0.10),
            _a_row("VAE-PW", 32, 0.8, 0.4, 0.25), _a_row("AE-PS", 32, 0.85, 0.6, 0.20),
            _a_row("VAE-PS", 32, 0.81, 0.6, 0.40)]
    t = {r["model"]: r for r in table8(rows)}
    assert t["AE-PW"]["z"] == 64 and t["AE-PW"]["performance"] == pytest.approx(1.0)
    assert t["VAE-PW"]["scaled"] == pytest.approx(2.5) and t["VAE-PW"]["performance"] == pytest.approx(0.4)
    md = paper_a_markdown(rows)
    assert "Table IV analogue" in md and "Table VII analogue" in md and "Table VIII analogue" in md
    assert "| Any | 80.0% | 80.0% | 85.0% | 81.0% |" in md


def test_convergence_scaling():
    rows = [_b_row("I-F-FP", 64, 0, 1, 1, hist=(2.0, 1.0, 0.5)), _b_row("I-F-FP", 64, 1, 1, 1, hist=(4.0, 4.0))]
    c = scaled_val_curves(rows)["I-F-FP"]
    assert c == pytest.approx([1.0, 0.75, 0.25])


def test_write_report_groups_and_figures(tmp_path):
    table = ResultsTable(tmp_path)
    for p in PROCS:
        for rep in (0, 1):
            table.append(_b_row(p, 64, rep, 2.0 + rep, 0.5))
    table.append(_a_row("AE-PW", 32, 0.5, 0.4, 0.3))
    path = write_report(tmp_path)
    md = path.read_text()
    assert "Paper B" in md and "Paper A" in md
    for name in ("paper_b_lunarlander_score_vs_epoch_time", "paper_b_lunarlander_convergence",
                 "paper_b_lunarlander_score_vs_total_time", "paper_a_svhn_score_vs_z"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in md


def test_results_table_append_csv_and_torn_line(tmp_path):
    t = ResultsTable(tmp_path)
    t.append({"cell_id": "a", "x": 1.0, "bad": float("nan"), "config": {"k": [1, 2]}, "nested": {"y": 2}})
    with open(t.path, "a") as f:
        f.write('{"cell_id": "torn", "x"')  # a crash mid-write
    assert [r["cell_id"] for r in t.rows()] == ["a"]
    t.append({"cell_id": "b", "x": 2.0})
    lines = t.path.read_text().splitlines()
    assert [json.loads(x)["cell_id"] for x in lines] == ["a", "b"]
    assert json.loads(lines[0])["bad"] is None
    csv_text = t.csv_path.read_text()
    assert csv_text.splitlines()[0].split(",")[:4] == ["cell_id", "x", "bad", "config"]
    assert "nested.y" in csv_text
    assert flatten_row({"config": {"a": 1}})["config"] == '{"a": 1}'


def test_cell_id_is_deterministic_and_order_free():
    a = cell_id({"x": 1, "y": [1, 2], "z": {"b": 1, "a": 2}})
    b = cell_id({"z": {"a": 2, "b": 1}, "y": [1, 2], "x": 1})
    assert a == b and len(a) == 16 and a != cell_id({"x": 2})
