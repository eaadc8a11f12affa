"""Generated results tables (tools/results.py): every table in README/docs is current, and the
staleness check notices a changed input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import results  # noqa: E402

sys.path.pop(0)


def test_every_generated_table_is_current():
    """Fails when a module a docs table depends on changed after the table was generated."""
    assert results.stale() == []


def test_every_registered_table_is_in_its_doc_once():
    for t in results.TABLES:
        text = (REPO / t.doc).read_text(encoding="utf-8")
        assert [n for n, _ in results.blocks(text)].count(t.name) == 1, f"{t.doc} lacks the block of {t.name}"


def test_a_changed_input_makes_the_table_stale_and_a_rerun_current(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n")
    (tmp_path / "model.py").write_text("a = 1\n")
    doc = tmp_path / "docs" / "t.md"
    doc.write_text("before\n<!-- results:toy begin; inputs=0 -->\n<!-- results:toy end -->\nafter\n")
    toy = results.Table("toy", "docs/t.md", ("x.py",), ("model.py",), "seeds 0, 1, 2", 0.1)
    monkeypatch.setattr(results, "TABLES", (toy,))
    assert results.stale(tmp_path) and "stale" in results.stale(tmp_path)[0]  # never generated
    results.write(toy, "log line\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n", tmp_path)
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "| 1 | 2 |" in text
    assert "log line" not in text and "seeds 0, 1, 2" in text and "commit" in text
    assert results.stale(tmp_path) == []
    (tmp_path / "model.py").write_text("a = 2\n")
    (problem,) = results.stale(tmp_path)
    assert "docs/t.md" in problem and "model.py" in problem and "tools/results.py run toy" in problem
    doc.write_text(doc.read_text() + "<!-- results:other begin; inputs=ab -->\n<!-- results:other end -->\n")
    assert any("not registered" in p for p in results.stale(tmp_path))


def test_write_refuses_a_doc_without_its_markers(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "t.md").write_text("no markers\n")
    toy = results.Table("toy", "docs/t.md", ("x.py",), (), "", 0.1)
    with pytest.raises(SystemExit, match="markers of toy once"):
        results.write(toy, "| a |\n", tmp_path)


def test_glob_inputs_cover_every_matching_file_and_an_empty_pattern_is_an_error(tmp_path):
    (tmp_path / "pkg").mkdir()
    for name in ("a.py", "b.py"):
        (tmp_path / "pkg" / name).write_text("x = 1\n")
    t = results.Table("toy", "docs/t.md", ("x.py",), ("pkg/*.py",), "", 0.1)
    assert [f.name for f in results.input_files(t, tmp_path)] == ["a.py", "b.py"]
    before = results.inputs_digest(t, tmp_path)
    (tmp_path / "pkg" / "b.py").write_text("x = 2\n")
    assert results.inputs_digest(t, tmp_path) != before
    with pytest.raises(SystemExit, match="matches no file"):
        results.input_files(results.Table("toy", "docs/t.md", ("x.py",), ("nothing/*.py",), "", 0.1), tmp_path)


def test_make_results_runs_every_table_within_the_budget_and_names_pick_some(monkeypatch):
    """`make results` (no names) runs every registered table, whose measured costs fit the hour;
    names run just those, in the order given."""
    assert sum(t.minutes for t in results.TABLES) <= results.BUDGET_MINUTES
    ran = []

    class Done:
        returncode, stdout = 0, "| a |\n| --- |\n| 1 |\n"

    monkeypatch.setattr(results.subprocess, "run", lambda cmd, **kw: ran.append(cmd[1]) or Done())
    monkeypatch.setattr(results, "write", lambda t, out: REPO / t.doc)
    results.main(["run"])
    assert ran == [t.command[0] for t in results.TABLES]
    ran.clear()
    results.main(["run", "select_label_free", "demo"])
    assert ran == ["studies/select_label_free.py", "tools/tables.py"]
    with pytest.raises(SystemExit, match="unknown table"):
        results.main(["run", "nope"])


def test_every_registered_input_exists():
    for t in results.TABLES:
        assert results.input_files(t), t.name


def test_render_starts_at_the_first_table_and_keeps_the_note_after_it(tmp_path):
    toy = results.Table("toy", "docs/t.md", ("x.py",), (), "seed 0", 0.1)
    block = results.render(toy, "progress | not a table\n\n| a |\n| --- |\n| 1 |\n\nwall time 3 min.\n", tmp_path)
    assert "progress" not in block and "| a |\n| --- |\n| 1 |\n\nwall time 3 min." in block
    with pytest.raises(SystemExit, match="no markdown table"):
        results.render(toy, "just a log\n", tmp_path)


sys.path.insert(0, str(REPO / "tools"))
import tables  # noqa: E402

sys.path.pop(0)


def test_spread_is_mean_uncorrected_std_and_range():
    assert tables.spread([1.0, 2.0, 3.0]) == ("2.00 ± 0.82", "1.00 – 3.00")
    assert tables.spread([5.0]) == ("5.00 ± 0.00", "5.00 – 5.00")


def test_demo_and_paper_b_tables_aggregate_over_seeds(tmp_path):
    rows = [{"procedure": p, "seed": s, "test_error_px": e, "epoch_seconds": 2.0}
            for p, base in (("I-I-PW", 20.0), ("I-I-PS", 4.0)) for s, e in zip((0, 1, 2), (base, base + 1, base + 2))]
    table = tables.demo_table(rows, [0, 1, 2])
    assert "| I-I-PW | 21.00 ± 0.82 | 20.00 – 22.00 | 2.0 |" in table
    with pytest.raises(SystemExit, match="lack"):
        tables.demo_table(rows[:-1], [0, 1, 2])  # a seed missing for one procedure
    b = [{"procedure": "I-F-FP", "test_score": v, "metric": "position_error", "status": "ok"} for v in (6.0, 8.0)]
    b.append({"procedure": "F-F-FP", "status": "skipped"})
    out = tables.paper_b_table(b)
    assert "position error (px), mean ± std over 2 repeats" in out and "| I-F-FP | 7.00 ± 1.00 | 6.00 – 8.00 |" in out
    assert "F-F-FP" not in out
    (tmp_path / "r.jsonl").write_text(json.dumps(b[0]) + "\n" + '{"torn')
    assert tables.read_rows(tmp_path / "r.jsonl") == [b[0]]


def test_autoencoding_sweep_table_spreads_each_layer_over_seeds():
    sys.path.insert(0, str(REPO / "tools"))
    import sweep_tables

    sys.path.pop(0)
    rows = [{"arch": "alexnet", "layer": layer, "seed": s, "status": "ok", "lunarlander_error_px": 4.0 + s,
             "seconds": 30.0} for layer in "ESML" for s in (0, 1, 2)]
    rows.append({"arch": "vgg16", "layer": "E", "seed": 0, "status": "skipped"})
    table = sweep_tables.autoencoding_table(rows, [0, 1, 2])
    assert "| alexnet | 5.00 ± 0.82 | 5.00 ± 0.82 | 5.00 ± 0.82 | 5.00 ± 0.82 | 30 / 30 / 30 / 30 |" in table
    assert "vgg16" not in table
    with pytest.raises(SystemExit, match="lack"):
        sweep_tables.autoencoding_table(rows[1:], [0, 1, 2])


def test_delineation_table_puts_bce_first_then_best_quality_in_percent():
    sys.path.insert(0, str(REPO / "tools"))
    import sweep_tables

    sys.path.pop(0)

    def row(q, s, **kw):
        its = [{"quality": q - 0.2}, {"quality": q - 0.1}, {"quality": q}]
        return {"seed": s, "completeness": 0.8, "correctness": 0.9, "quality": q, "seconds": 50.0,
                "details": {"mu": 0.01, "per_iteration": its,
                            "loss_terms": {"init": {"ratio_mu_top_to_bce": 0.2 + s / 10}}}, **kw}

    refs = [row(0.60 + s / 100, s, reference="bce") for s in (0, 1)]
    rows = [row(q + s / 100, s, arch="alexnet", layer=layer, status="ok") for layer, q in (("E", 0.5), ("L", 0.7))
            for s in (0, 1)]
    lines = sweep_tables.delineation_table(rows, refs, [0, 1]).splitlines()
    assert lines[0].startswith("| loss | completeness | correctness | quality | quality after iteration 1 / 2 / 3 |")
    assert lines[2] == "| BCE only (no topology loss) | 80.0 ± 0.0 | 90.0 ± 0.0 | 60.5 ± 0.5 | 40.5 / 50.5 / 60.5 | - | 50 |"
    assert lines[3].startswith("| BCE + 0.01 L_top, alexnet:L | ") and lines[3].endswith("| 0.25 ± 0.05 | 50 |")
    assert lines[4].startswith("| BCE + 0.01 L_top, alexnet:E | 80.0 ± 0.0 | 90.0 ± 0.0 | 50.5 ± 0.5 |")
    with pytest.raises(SystemExit, match="lack"):
        sweep_tables.delineation_table(rows[1:], refs, [0, 1])


def test_super_resolution_table_orders_models_and_spreads_over_seeds():
    sys.path.insert(0, str(REPO / "tools"))
    import sr_tables

    sys.path.pop(0)

    def scores(psnr: float) -> dict:
        return {f"{k}_{m}_x4": psnr if m == "psnr" else psnr / 50 for k in ("set5", "set14", "cbsd68")
                for m in ("psnr", "ssim")}

    refs = [{"reference": name, "seed": s, **scores(v)} for name, v in (("bicubic", 28.0), ("pixel", 29.0))
            for s in (0, 1)]
    rows = [{"arch": "alexnet", "layer": "E", "seed": s, "status": "ok", "seconds": 30.0, **scores(27.0 + s)}
            for s in (0, 1)]
    table = sr_tables.sr_table(rows, refs, [0, 1])
    lines = table.splitlines()
    assert lines[2].startswith("| pixel (MSE) | 29.00 ± 0.00 / 0.580 ± 0.000") and lines[3].startswith("| bicubic")
    assert lines[4] == ("| alexnet:E | 27.50 ± 0.50 / 0.550 ± 0.010 | 27.50 ± 0.50 / 0.550 ± 0.010 | "
                        "27.50 ± 0.50 / 0.550 ± 0.010 | 30 |")
    with pytest.raises(SystemExit, match="lack"):
        sr_tables.sr_table(rows[:1], refs, [0, 1])


def test_srvae_table_puts_bicubic_first_and_spreads_the_gain_over_seeds():
    sys.path.insert(0, str(REPO / "tools"))
    import srvae_tables

    sys.path.pop(0)

    def row(run, seed, psnr, preset="tuned"):
        w = None if run == "bicubic" else {"reconstruction": 1.0, "kl": 1e-6, "perceptual": 0.0}
        return {"run": run, "preset": None if run == "bicubic" else preset, "model_kind": "residual", "factor": 2,
                "weights": w, "best_epoch": 3, "seconds": 60.0, "config": {"seed": seed, "kl_reduction": "mean"},
                **{f"{k}_{m}_x2": psnr if m == "psnr" else psnr / 40 for k in ("set5", "set14") for m in ("psnr", "ssim")}}

    rows = [row("bicubic", s, 30.0) for s in (0, 1)] + [row("no_perceptual", s, 33.0 + s) for s in (0, 1)]
    lines = srvae_tables.srvae_table(rows, [0, 1]).splitlines()
    assert lines[2].startswith("| x2 | bicubic | 30.00 ± 0.00 | 0.7500 ± 0.0000 |  |")
    assert lines[3] == ("| x2 | SR-VAE residual no perceptual (tuned: rec 1, KL 1e-06 (mean), perc 0) | 33.50 ± 0.50 | "
                        "0.8375 ± 0.0125 | 3.50 ± 0.50 | 33.50 ± 0.50 | 0.8375 ± 0.0125 | 3.50 ± 0.50 | 4, 4 | 60 |")
    with pytest.raises(SystemExit, match="lack"):
        srvae_tables.srvae_table(rows[:-1], [0, 1])
