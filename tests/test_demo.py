"""`lossnet demo` end to end at a tiny scale, and the `lossnet data` wiring."""

from __future__ import annotations

import json

from lossnet import cli


def test_demo_writes_table_results_and_figures(tmp_path, offline_weights, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--out", str(out), "--rollouts", "2", "1", "1", "--epochs", "1", "--probe-epochs", "2",
                   "--no-progress", "--workers", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "I-I-PW" in printed and "I-F-FP" in printed and "test error (px)" in printed
    assert "s left" in printed and printed.count("s elapsed") == 3  # an ETA after each procedure
    res = json.loads((out / "results.json").read_text())
    rows = {r["procedure"]: r for r in res["rows"]}
    assert set(rows) == {"I-I-PW", "I-I-PS", "I-F-FP"}
    for r in rows.values():
        assert {"procedure", "test_error_px", "epoch_seconds"} <= set(r)
        assert 0 < r["test_error_px"] < 64 and r["epoch_seconds"] > 0
    assert (out / "results.md").read_text().startswith("| procedure |")
    for f in ("error_vs_time.png", "reconstructions_I-I-PW.png", "reconstructions_I-I-PS.png"):
        assert (out / f).stat().st_size > 1000
    assert not (out / "reconstructions_I-F-FP.png").exists()  # no image decoder
    assert (out / "encoders" / "I-F-FP" / "encoder.safetensors").exists()
    # rerun: the collection and features are reused, and finished procedures (rows in results.jsonl,
    # the run loop) are not trained again; results.json still lists all three
    assert cli.main(["demo", "--out", str(out), "--rollouts", "2", "1", "1", "--epochs", "1", "--probe-epochs", "2",
                     "--no-progress", "--workers", "1"]) == 0
    assert "[3/4] encoder" not in capsys.readouterr().out
    table = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["procedure"] for r in table) == ["I-F-FP", "I-I-PS", "I-I-PW"]
    again = json.loads((out / "results.json").read_text())["rows"]
    assert [r["test_error_px"] for r in again] == [r["test_error_px"] for r in res["rows"]]


def test_demo_rejects_unknown_procedure(tmp_path, offline_weights, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--procedures", "I-X-PW"]) == 2
    err = capsys.readouterr().err
    assert "unknown procedure 'I-X-PW'" in err and "Traceback" not in err


def test_data_lunarlander_cli(tmp_path, capsys):
    assert cli.main(["data", "lunarlander", "--out", str(tmp_path / "ll"), "--rollouts", "1", "1", "1", "--steps", "10",
                     "--workers", "1", "--no-progress"]) == 0
    assert (tmp_path / "ll" / "run1.npz").exists() and (tmp_path / "ll" / "meta.json").exists()


def test_pretrain_and_embed_a_users_image_folder(tmp_path, offline_weights, capsys):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (80, 72, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    for proc in ("F-F-FP", "I-I-PW"):
        enc = tmp_path / proc
        assert cli.main(["pretrain", "--images", str(folder), "--out", str(enc), "--procedure", proc, "--z", "8",
                         "--epochs", "1", "--batch-size", "8", "--loss-net", "alexnet", "--layer", "E"]) == 0
        assert (enc / "encoder.safetensors").exists()
        out = tmp_path / f"{proc}.npy"
        assert cli.main(["embed", str(enc), "--images", str(folder), "--out", str(out)]) == 0
        emb = np.load(out)
        assert emb.shape == (20, 8) and np.isfinite(emb).all()
    assert cli.main(["pretrain", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2


def test_report_on_a_demo_directory_points_to_its_report(tmp_path, capsys):
    """The demo's results table is not a run's: `lossnet report` says where the demo's report is."""
    import json

    from lossnet.cli import main as cli_main

    (tmp_path / "results.jsonl").write_text(json.dumps({"cell_id": "a", "procedure": "I-I-PW", "test_error_px": 3.0}) + "\n")
    assert cli_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "demo directory" in err and "results.md" in err and len(err.strip().splitlines()) == 1
