"""Nothing finished is lost or silently redone (issue 22 item 1): regression tests asserting that
the rows of a results table and a finished export survive byte for byte."""

from __future__ import annotations

import json

import pytest

from lossnet.runs.table import ResultsTable


def _row(cid: str) -> bytes:
    return json.dumps({"cell_id": cid, "experiment": "x", "score": 1.5}).encode()


def test_hostile_last_row_without_newline_is_kept(tmp_path):
    """results.jsonl whose complete last row lacks its final newline, then an append -> the row kept byte for byte, newline added"""
    t = ResultsTable(tmp_path)
    before = _row("a") + b"\n" + _row("b")  # a valid row, no final newline (an editor, a copy, `head -c`)
    t.path.write_bytes(before)
    t.append({"cell_id": "c", "experiment": "x", "score": 2.0})
    data = t.path.read_bytes()
    assert data.startswith(before + b"\n")
    assert [r["cell_id"] for r in t.rows()] == ["a", "b", "c"]
    assert not t.path.with_name("results.jsonl.torn").exists()


def test_hostile_torn_last_line_is_set_aside_not_deleted(tmp_path):
    """results.jsonl with a torn last line (a crash mid-append), then an append -> complete rows kept byte for byte, the torn bytes kept in results.jsonl.torn"""
    t = ResultsTable(tmp_path)
    good = _row("a") + b"\n" + _row("b") + b"\n"
    t.path.write_bytes(good + b'{"cell_id": "c", "sco')
    assert [r["cell_id"] for r in t.rows()] == ["a", "b"]
    t.append({"cell_id": "d", "experiment": "x"})
    assert t.path.read_bytes().startswith(good)
    assert [r["cell_id"] for r in t.rows()] == ["a", "b", "d"]
    assert t.path.with_name("results.jsonl.torn").read_bytes() == b'{"cell_id": "c", "sco\n'


@pytest.mark.parametrize("tail", [b"[1, 2]", b'"just a string"'])
def test_hostile_non_row_last_line_is_not_a_row(tmp_path, tail):
    """a last line that parses but is no object -> set aside like a torn line, complete rows kept"""
    t = ResultsTable(tmp_path)
    good = _row("a") + b"\n"
    t.path.write_bytes(good + tail)
    t.append({"cell_id": "b"})
    assert t.path.read_bytes().startswith(good)
    assert [r["cell_id"] for r in t.rows()] == ["a", "b"]
