"""The benchmark on the tiny suite: tables, curves and JSON; locally and on a local Ray."""
import json
import os

import pytest

from autodl import bench

SCRIPTED = os.path.join(os.path.dirname(__file__), "submissions", "scripted")
REFERENCE = bench.REFERENCE


def _check_outputs(out, labels, repeats):
    report = (out / "report.md").read_text()
    assert "## digits (T = 15 s)" in report
    for label in labels:
        assert f"| {label} | " in report
    assert (out / "curves-digits.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == labels and len(results["runs"]) == len(labels) * repeats
    for run in results["runs"]:
        assert len(run["timestamps"]) == len(run["nauc_scores"]) == run["num_predictions"]
    return report, results


def test_local_suite_side_by_side_with_repeats(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", "good")
    code = bench.main(["--suite", "tiny", "--code_dir", REFERENCE, "--code_dir", SCRIPTED,
                       "--repeat", "2", "--out", str(tmp_path / "out"),
                       "--data", str(tmp_path / "zoo")])
    assert code == 0
    report, results = _check_outputs(tmp_path / "out", ["reference_submission", "scripted"], 2)
    reference = [r for r in results["runs"] if r["label"] == "reference_submission"]
    assert all(r["ingestion_success"] and r["final_nauc"] > 0.5 for r in reference)
    row = next(line for line in report.splitlines() if line.startswith("| reference"))
    assert "| 1.000 |" in row and "[" in row  # its own ratio, and a spread over 2 repeats


def test_env_per_code_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", "good")
    code = bench.main(["--suite", "tiny", "--code_dir", SCRIPTED, "--label", "good",
                       "--code_dir", SCRIPTED, "--label", "broken",
                       "--env", "broken:SCRIPTED_BEHAVIOUR=raise_init",
                       "--out", str(tmp_path / "o"), "--data", str(tmp_path / "zoo")])
    assert code == 1  # the broken variant crashed, the good one did not
    runs = json.loads((tmp_path / "o" / "results.json").read_text())["runs"]
    assert [r["ingestion_success"] for r in runs] == [True, False]
    assert os.environ["SCRIPTED_BEHAVIOUR"] == "good"  # restored after the run
    with pytest.raises(SystemExit):
        bench.parse_env(["nolabel:X=1"], ["good"])


def test_crashes_are_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", "raise_init")
    code = bench.main(["--suite", "tiny", "--code_dir", SCRIPTED, "--out", str(tmp_path / "o"),
                       "--data", str(tmp_path / "zoo")])
    assert code == 1
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| 1 | 1 |" in report and "crash: scripted: Model(metadata) raised" in report


def test_ray_local_cluster_runs_the_same_jobs(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", "good")
    code = bench.main(["--suite", "tiny", "--code_dir", SCRIPTED, "--label", "on-ray",
                       "--repeat", "2", "--ray", "local", "--cpus_per_run", "1",
                       "--out", str(tmp_path / "out"), "--data", str(tmp_path / "zoo")])
    assert code == 0
    _, results = _check_outputs(tmp_path / "out", ["on-ray"], 2)
    assert all(r["ingestion_success"] for r in results["runs"])
