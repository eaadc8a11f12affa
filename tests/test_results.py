"""Generated results tables (tools/results.py): every table in README/docs is current, and the
staleness check notices a changed input."""

from __future__ import annotations

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
