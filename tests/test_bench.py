"""The benchmark on the tiny suite: tables, curves and JSON; locally and on a local Ray."""
import json
import os
import shutil
import subprocess

import pytest

from autodl import bench, layout, provenance, reader
from autodl.datasets import BUILD_INFO_FILE, ZOO_VERSION

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
        assert run["builder_version"] == ZOO_VERSION and len(run["dataset_fingerprint"]) == 64
        assert "code_commit" in run
    machine = results["machine"]
    assert machine["cpus"] == os.cpu_count() and machine["calibration_steps_per_s"] > 0
    assert results["command"].startswith("python -m autodl.bench --suite tiny")
    return report, results


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_crashes_are_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", "raise_init")
    code = bench.main(["--suite", "tiny", "--code_dir", SCRIPTED, "--out", str(tmp_path / "o"),
                       "--data", str(tmp_path / "zoo")])
    assert code == 1
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| 1 | 1 |" in report and "crash: scripted: Model(metadata) raised" in report


@pytest.mark.slow
def test_ray_local_cluster_runs_the_same_jobs(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", "good")
    code = bench.main(["--suite", "tiny", "--code_dir", SCRIPTED, "--label", "on-ray",
                       "--repeat", "2", "--ray", "local", "--cpus_per_run", "1",
                       "--out", str(tmp_path / "out"), "--data", str(tmp_path / "zoo")])
    assert code == 0
    _, results = _check_outputs(tmp_path / "out", ["on-ray"], 2)
    assert all(r["ingestion_success"] for r in results["runs"])


def test_switches_down_on_a_scripted_curve():
    run = {"time_budget": 100.0, "timestamps": [5, 10, 20, 30, 50, 60, 150],
           "nauc_scores": [0.4, 0.5, 0.45, 0.45, 0.6, 0.3, 0.1]}
    # 0.5 -> 0.45 and 0.6 -> 0.3 lowered it; 0.45 -> 0.45 did not; 150 s is past the budget.
    assert bench.switches(run) == (5, 2)
    assert bench.switches({"time_budget": 10, "timestamps": [1], "nauc_scores": [0.2]}) == (0, 0)
    assert bench.switches({"time_budget": 10, "timestamps": [], "nauc_scores": []}) == (0, 0)
    other = {"time_budget": 100.0, "timestamps": [1, 2, 3], "nauc_scores": [0.1, 0.2, 0.3]}
    assert bench.switches_cell([run]) == "2/5 = 0.40"
    assert bench.switches_cell([run, other]) == "2/7 = 0.29 (2/5, 0/2)"
    assert bench.switches_cell([{"time_budget": 1, "timestamps": [], "nauc_scores": []}]) \
        == "0/0"


def test_after_last_change_is_the_share_of_the_budget_that_bought_nothing():
    run = {"time_budget": 100.0, "timestamps": [5, 10, 20, 30, 150],
           "nauc_scores": [0.4, 0.5, 0.5, 0.5, 0.9], "overrun_s": 1.0}
    # Last change at 10 s (0.4 -> 0.5); 20 and 30 s repeat it; 150 s is past the budget.
    assert bench.after_last_change(run) == pytest.approx(0.90)
    early = dict(run, overrun_s=-40.0)  # it said it was done at 60 s: 50 s after the change
    assert bench.after_last_change(early) == pytest.approx(0.50)
    assert bench.after_last_change({"time_budget": 10, "timestamps": []}) is None
    row = dict(run, label="a", alc=0.5, final_nauc=0.5, ingestion_success=True)
    assert "| after last change |" in bench.table([row], ["a"])
    assert "| 90% |" in bench.table([row], ["a"])


@pytest.mark.slow
def test_bench_subsample_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", "good")
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    code = bench.main(["--suite", "tiny", "--code_dir", SCRIPTED, "--subsample", "20", "full",
                       "--out", str(out), "--data", str(zoo)])
    assert code == 0
    assert reader.check_splits(layout.find_data_dir(zoo / "digits-n20"))["train"] == 20
    assert reader.check_splits(layout.find_data_dir(zoo / "digits"))["train"] == 40  # intact
    report = (out / "report.md").read_text()
    assert "## digits-n20 (T = 15 s)" in report and "## digits (T = 15 s)" in report
    assert "| switches down |" in report and "- scripted: " in report
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["dataset"] for r in runs] == ["digits-n20", "digits"]
    for run in runs:
        assert run["ingestion_success"]
        assert (run["switches"], run["switches_down"]) == bench.switches(run)
        assert run["switches"] == run["num_predictions"] - 1 == 2
    capsys.readouterr()
    # More records than the tiny set holds: one line naming the flag and the dataset.
    assert bench.main(["--suite", "tiny", "--code_dir", SCRIPTED, "--subsample", "1000",
                       "--out", str(out), "--data", str(zoo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --subsample 1000: digits: ")
    with pytest.raises(SystemExit, match="--subsample ten"):
        bench.main(["--suite", "tiny", "--subsample", "ten", "--data", str(zoo)])


def test_plan_records_each_runs_data_and_code(tmp_path):
    jobs = bench.plan(bench.SUITES["tiny"], [SCRIPTED], ["s"], str(tmp_path / "out"),
                      str(tmp_path / "zoo"), 15.0, 2, "2019-05")
    path = jobs[0]["dataset_path"]
    assert [j["dataset_fingerprint"] for j in jobs] == [provenance.dataset_fingerprint(path)] * 2
    assert [j["builder_version"] for j in jobs] == [ZOO_VERSION] * 2
    assert all(j["code_commit"] == provenance.code_commit(SCRIPTED) for j in jobs)


def test_the_fingerprint_follows_the_files_but_not_the_build_record(tmp_path, tiny_dataset):
    first = tiny_dataset("a")
    copy = shutil.copytree(first, tmp_path / "copy")
    assert provenance.dataset_fingerprint(first) == provenance.dataset_fingerprint(copy)
    (copy / BUILD_INFO_FILE).write_text('{"zoo_version": 7}')
    assert provenance.dataset_fingerprint(first) == provenance.dataset_fingerprint(copy)
    assert provenance.dataset_provenance(copy)["builder_version"] == 7
    assert provenance.dataset_provenance(first)["builder_version"] is None
    solution = next(copy.glob("*.solution"))
    solution.write_bytes(solution.read_bytes().replace(b"1", b"0", 1))
    assert provenance.dataset_fingerprint(first) != provenance.dataset_fingerprint(copy)
    renamed = shutil.copytree(first, tmp_path / "renamed")
    next(renamed.glob("*.solution")).rename(renamed / "other.solution")
    assert provenance.dataset_fingerprint(first) != provenance.dataset_fingerprint(renamed)


def test_the_commit_of_a_checkout_and_none_outside_one(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo, code = tmp_path / "repo", tmp_path / "repo" / "sub"
    code.mkdir(parents=True)
    (code / "model.py").write_text("x = 1\n")

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                               "user.email=t@example.org", *args], check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    assert provenance.code_commit(str(code)) == {"commit": git("rev-parse", "HEAD"),
                                                 "dirty": False}
    (code / "model.py").write_text("x = 2\n")
    assert provenance.code_commit(str(code))["dirty"] is True
    plain = tmp_path / "plain"
    plain.mkdir()
    assert provenance.code_commit(str(plain)) is None


def test_the_machine_is_named_and_calibrated():
    machine = provenance.machine(calibration_s=0.05)
    assert machine["cpus"] == os.cpu_count() and machine["cpu_model"]
    assert machine["calibration_steps_per_s"] > 0


def _fake_run(dataset, label, alc, **extra):
    return {"dataset": dataset, "label": label, "alc": alc, "final_nauc": 0.6,
            "first_prediction_s": 1.25, "peak_rss_mb": 300.0, "time_budget": 15.0,
            "timestamps": [1.25], "nauc_scores": [0.6], "ingestion_success": True,
            "dataset_fingerprint": "f" * 64, "builder_version": ZOO_VERSION,
            "code_commit": {"commit": "abcdef1234" + "0" * 30, "dirty": True}, **extra}


def test_report_turns_bench_outputs_into_a_results_file(tmp_path, capsys):
    context = bench.run_context(["--suite", "tiny"], calibration_s=0.05)
    bench.write_outputs(tmp_path / "one", "tiny", [_fake_run("digits", "a", 0.5)], ["a"],
                        context)
    bench.write_outputs(tmp_path / "two", "tiny", [_fake_run("digits", "b", 0.25),
                                                   _fake_run("moving", "b", 0.125)], ["b"],
                        dict(context, command="python -m autodl.bench --suite cpu"))
    capsys.readouterr()
    assert bench.main(["report", str(tmp_path / "one"), str(tmp_path / "two" / "results.json")
                       ]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Results") and text.count(bench.RESULTS_HEADER) == 2
    digits = text[text.index("## digits (T = 15 s)"):text.index("## moving")]
    machine = context["machine"]
    where = (f"{machine['cpu_model']}, {machine['cpus']} cores, "
             f"{machine['calibration_steps_per_s']:g} steps/s")
    assert (f"| a | 0.5000 | 0.6000 | 1.2 | 300 | abcdef1234+dirty | {context['date']} | "
            f"v{ZOO_VERSION}, `ffffffffffff` | {where} | "
            "`python -m autodl.bench --suite tiny` |") in digits
    assert "| b | 0.2500 |" in digits and "--suite cpu` |" in digits
    assert "| b | 0.1250 |" in text[text.index("## moving"):]
    assert bench.main(["report", str(tmp_path / "two"), "--label", "a"]) == 0
    assert "| b |" not in capsys.readouterr().out  # only the labels asked for
    assert bench.main(["report", str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err
