"""End-to-end runs of the harness (ingestion + scoring processes) on tiny datasets."""
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from autodl import codec, ingestion, layout, run_local_test
from autodl.records import iter_records, write_records

SCRIPTED = os.path.join(os.path.dirname(__file__), "submissions", "scripted")
# Slack allowed past T: scoring polls each second, then gives SIGTERM 2 s before SIGKILL.
OVERRUN_LIMIT_S = 4.0


def _run(tmp_path, dataset, budget, code_dir=SCRIPTED, **kwargs):
    return run_local_test.run(dataset, code_dir, budget, output_dir=tmp_path / "out",
                              score_dir=tmp_path / "scores", progress=False, **kwargs)


def _scripted(monkeypatch, behaviour):
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", behaviour)


@pytest.mark.slow
def test_good_submission_writes_every_output(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "good")
    summary = _run(tmp_path, tiny_dataset(), 60)
    assert summary["ingestion_success"] and summary["num_predictions"] == 3
    assert summary["first_prediction_s"] > 0 and summary["peak_rss_mb"] > 10
    scores = (tmp_path / "scores" / "scores.txt").read_text()
    assert scores.startswith("score: ") and "nauc_scores: [" in scores
    assert "accuracy: [" in scores  # one-hot task
    png = tmp_path / "scores" / "learning-curve-tiny.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "scores" / "detailed_results.html").read_text()
    assert "data:image/png;base64," in html and "refresh" not in html
    out = sorted(os.listdir(tmp_path / "out"))
    assert [f for f in out if ".predict_" in f] == [f"tiny.predict_{k}" for k in range(3)]
    start = (tmp_path / "out" / "start.txt").read_text()
    assert "clock_rule: 2019-05" in start and "\n2: " in start
    assert "ingestion_success: 1" in (tmp_path / "out" / "end.txt").read_text()


@pytest.mark.slow
def test_budget_is_enforced_and_predictions_count(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "never_done")
    summary = _run(tmp_path, tiny_dataset(), 5)
    assert summary["num_predictions"] >= 3
    assert summary["alc"] != 0 or summary["final_nauc"] == 0  # scored, not dropped
    assert 0 <= summary["overrun_s"] < OVERRUN_LIMIT_S
    assert not summary["ingestion_success"]
    assert "time budget" in summary["error"]


@pytest.mark.slow
def test_submission_sleeping_past_the_budget_is_stopped(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "sleep")
    summary = _run(tmp_path, tiny_dataset(), 5)
    assert summary["num_predictions"] == 1
    assert summary["overrun_s"] < OVERRUN_LIMIT_S


@pytest.mark.slow
@pytest.mark.parametrize("behaviour, message, predictions", [
    ("raise_init", "Model(metadata) raised RuntimeError: scripted failure in __init__", 0),
    ("raise_train", "train() call 1 raised ValueError: scripted failure in train", 1),
    ("raise_test", "test() call 1 raised KeyError", 1),
    ("wrong_shape", "test() call 1 returned shape (30, 4), expected (30, 3)", 1),
    ("nan", "test() call 1 returned NaN", 1),
    ("bad_array", "test() call 1 returned something that is not a numeric array "
                  "(Unconvertible: RuntimeError: scripted failure in __array__)", 1),
    ("bad_done", "reading done_training raised RuntimeError: scripted failure in "
                 "done_training", 1),
    ("exit_early", "exited early", 1),
])
def test_faulty_submissions_are_named_and_earlier_predictions_kept(
        tmp_path, tiny_dataset, monkeypatch, behaviour, message, predictions):
    _scripted(monkeypatch, behaviour)
    summary = _run(tmp_path, tiny_dataset(), 60)
    assert not summary["ingestion_success"]
    assert message in summary["error"]
    assert summary["num_predictions"] == predictions
    assert summary["overrun_s"] < 0  # ended on its own, well before T
    if predictions:
        assert (tmp_path / "scores" / "scores.txt").read_text().count(",") == predictions - 1


@pytest.mark.slow
def test_torchvision_after_tensorflow_does_not_crash(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "torch_after_tf")
    summary = _run(tmp_path, tiny_dataset(), 60)
    assert summary["ingestion_success"], summary["error"]


@pytest.mark.slow
def test_missing_model_and_zip_submissions(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "good")
    dataset = tiny_dataset()
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = _run(tmp_path, dataset, 30, code_dir=empty)
    assert "no model.py" in summary["error"] and summary["num_predictions"] == 0
    no_model = tmp_path / "no_model.zip"
    with zipfile.ZipFile(no_model, "w") as z:
        z.writestr("other.py", "x = 1\n")
    summary = _run(tmp_path, dataset, 30, code_dir=no_model)
    assert f"{no_model}: no model.py at the root" in summary["error"]
    archive = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(os.path.join(SCRIPTED, "model.py"), "model.py")
    summary = _run(tmp_path, dataset, 60, code_dir=archive, clock_rule="2019-12")
    assert summary["ingestion_success"] and summary["num_predictions"] == 3
    assert "clock_rule: 2019-12" in (tmp_path / "out" / "start.txt").read_text()


def _corrupt(dataset, name):
    """Ways to break a dataset, each with the message and file the error must name."""
    data = os.path.join(dataset, f"{name}.data")
    train = os.path.join(data, "train")
    record_file = os.path.join(train, f"sample-{name}-train.tfrecord")
    metadata = os.path.join(train, "metadata.textproto")
    test_dir = os.path.join(data, "test")
    test_metadata = os.path.join(test_dir, "metadata.textproto")
    solution = os.path.join(dataset, f"{name}.solution")
    return {
        "missing metadata": (lambda: os.remove(metadata), metadata, "metadata file is missing"),
        "garbled metadata": (lambda: open(metadata, "w").write("sample_count: {{{ nope"),
                             metadata, "garbled metadata"),
        "truncated records": (lambda: _truncate(record_file), record_file, "truncated"),
        "corrupt records": (lambda: _flip_byte(record_file), record_file, "CRC mismatch"),
        "wrong sample_count": (lambda: _replace(metadata, "sample_count: 60", "sample_count: 61"),
                               metadata, "sample_count is 61 but the record files hold 60"),
        "missing solution": (lambda: os.remove(os.path.join(dataset, f"{name}.solution")),
                             f"{name}.solution", "solution file is missing"),
        "solution shape": (lambda: np.savetxt(os.path.join(dataset, f"{name}.solution"),
                                              np.eye(3)[[0, 1]], fmt="%d"),
                           f"{name}.solution", "2 rows, but the test split has 30"),
        "two data folders": (lambda: os.makedirs(os.path.join(dataset, "other.data")),
                             dataset, "2 *.data folders"),
        "no data folder": (lambda: os.rename(data, data + "_gone"), dataset, "no *.data folder"),
        "record without id": (lambda: _edit_record(record_file, _drop_id), record_file,
                              "record 0: record has no id"),
        "label out of range": (lambda: _edit_record(record_file, _label_7), record_file,
                               "label_index 7 outside 0..2"),
        "dense frame size": (lambda: _edit_record(record_file, _short_frame), record_file,
                             "dense frames must hold 6x6x1 = 36 values"),
        "output_dim mismatch": (lambda: _replace(test_metadata, "output_dim: 3",
                                                 "output_dim: 4"),
                                test_metadata, "output_dim is 4 but the train split's is 3"),
        "solution values": (lambda: _replace(solution, "1 0 0", "2 0 0"), solution,
                            "holds 2; labels must be 0 or 1"),
        "empty test split": (lambda: _empty_test(dataset, name), test_dir,
                             "the test split holds no records"),
        "non-UTF-8 file name": (lambda: os.rename(record_file.encode(),
                                                  train.encode() + b"/sample-\xff.tfrecord"),
                                "sample-\\xff.tfrecord", "the name is not valid UTF-8"),
    }


def _edit_record(path, change):
    payloads = list(iter_records(path))
    example = codec.parse_record(payloads[0])
    change(example)
    payloads[0] = example.SerializeToString()
    write_records(path, payloads)


def _drop_id(example):
    del example.context.feature["id"]


def _label_7(example):
    example.context.feature["label_index"].int64_list.value[0] = 7


def _short_frame(example):
    del example.feature_lists.feature_list[codec.DENSE_KEY].feature[0].float_list.value[-1]


def _empty_test(dataset, name):
    test = os.path.join(dataset, f"{name}.data", "test")
    write_records(os.path.join(test, f"sample-{name}-test.tfrecord"), [])
    _replace(os.path.join(test, "metadata.textproto"), "sample_count: 30", "sample_count: 0")
    open(os.path.join(dataset, f"{name}.solution"), "w").close()


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 10)


def _flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))


def _replace(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


@pytest.mark.parametrize("fault", ["missing metadata", "garbled metadata", "truncated records",
                                   "corrupt records", "wrong sample_count", "missing solution",
                                   "solution shape", "two data folders", "no data folder",
                                   "record without id", "label out of range", "dense frame size",
                                   "output_dim mismatch", "solution values", "empty test split",
                                   "non-UTF-8 file name"])
def test_bad_datasets_get_a_clear_error(tmp_path, tiny_dataset, fault, capsys):
    dataset = tiny_dataset()
    breaking, where, message = _corrupt(dataset, "tiny")[fault]
    breaking()
    with pytest.raises(layout.DatasetError) as error:
        run_local_test.check_dataset(dataset)
    assert message in str(error.value) and where in str(error.value)
    code = run_local_test.main(["-dataset_dir", dataset, "-code_dir", SCRIPTED,
                                "-time_budget", "5", "-output_dir", str(tmp_path / "o"),
                                "-score_dir", str(tmp_path / "s"), "-progress", "false"])
    assert code == 2 and message in capsys.readouterr().err
    if fault in ("missing solution", "solution shape", "solution values"):
        return  # ingestion never reads the solution
    # Ingestion on its own (the platform's way) says the same, before any submission code.
    code = ingestion.main(["-dataset_dir", dataset, "-code_dir", SCRIPTED, "-time_budget", "5",
                           "-output_dir", str(tmp_path / "i")])
    assert code == 2 and message in capsys.readouterr().err


def test_undecodable_image_is_a_dataset_error(tmp_path, tiny_dataset, capsys):
    dataset = tiny_dataset(image_format="png")
    path = os.path.join(dataset, "tiny.data", "test", "sample-tiny-test.tfrecord")

    def garbage(example):
        frame = example.feature_lists.feature_list[codec.COMPRESSED_KEY].feature[0]
        frame.bytes_list.value[0] = b"not an image at all"
    _edit_record(path, garbage)
    code = run_local_test.main(["-dataset_dir", dataset, "-code_dir", SCRIPTED,
                                "-time_budget", "5", "-output_dir", str(tmp_path / "o"),
                                "-score_dir", str(tmp_path / "s"), "-progress", "false"])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}: record 0: undecodable image frame" in err


def test_record_files_are_checked_record_by_record(tmp_path, tiny_dataset):
    dataset = tiny_dataset()
    path = os.path.join(dataset, "tiny.data", "test", "sample-tiny-test.tfrecord")
    assert sum(1 for _ in iter_records(path)) == 30


@pytest.mark.slow
def test_command_line_runner_with_single_and_double_dashes(tmp_path, tiny_dataset):
    dataset = tiny_dataset()
    env = dict(os.environ, SCRIPTED_BEHAVIOUR="good")
    script = os.path.join(os.path.dirname(run_local_test.__file__), "run_local_test.py")
    result = subprocess.run(
        [sys.executable, script, f"-dataset_dir={dataset}", f"--code_dir={SCRIPTED}",
         "-time_budget", "60", f"-output_dir={tmp_path / 'o'}", f"-score_dir={tmp_path / 's'}",
         "--progress=false"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[tiny] ALC " in result.stdout and "3 predictions" in result.stdout
    assert (tmp_path / "o" / "ingestion.log").exists()


# -- hostile submissions: nothing they write or start steers or outlives the harness ----------
# The whole run (runner, ingestion, scoring, the submission's children) ends this long after
# the budget at most, whatever the submission does.
RUN_END_LIMIT_S = 10.0


def _run_cli(tmp_path, dataset, budget, behaviour, *flags, env=None, timeout=120):
    """The runner as a separate program, so that a harness that never ends fails the test."""
    script = os.path.join(os.path.dirname(run_local_test.__file__), "run_local_test.py")
    env = dict(os.environ, SCRIPTED_BEHAVIOUR=behaviour,
               SCRIPTED_PROBE=str(tmp_path / "probe.txt"), **(env or {}))
    result = subprocess.run(
        [sys.executable, script, "-dataset_dir", dataset, "-code_dir", SCRIPTED,
         "-time_budget", str(budget), "-output_dir", str(tmp_path / "out"),
         "-score_dir", str(tmp_path / "scores"), "-progress", "false", *flags],
        capture_output=True, text=True, env=env, timeout=timeout)
    run_json = tmp_path / "scores" / "run.json"
    summary = json.loads(run_json.read_text()) if run_json.exists() else None
    return result, summary


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_forged_pid_in_start_txt_kills_nothing(tmp_path, tiny_dataset, monkeypatch):
    victim = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        _scripted(monkeypatch, "forge_pid")
        monkeypatch.setenv("SCRIPTED_VICTIM", str(victim.pid))
        summary = _run(tmp_path, tiny_dataset(), 5)
        assert victim.poll() is None, "the harness signalled a process named in start.txt"
        assert "time budget" in summary["error"]
        assert summary["run_overrun_s"] < RUN_END_LIMIT_S
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.slow
def test_a_forged_clock_and_forged_predictions_are_ignored(tmp_path, tiny_dataset):
    result, summary = _run_cli(tmp_path, tiny_dataset(), 5, "forge_clock")
    assert result.returncode == 1, result.stderr
    assert summary["run_overrun_s"] < RUN_END_LIMIT_S
    # Only what ingestion handed over counts, at the times the runner saw it arrive.
    assert 1 <= summary["num_predictions"] == len(summary["timestamps"])
    assert max(summary["timestamps"]) <= 5
    assert all(n != 0 for n in summary["nauc_scores"])  # no all-ones forgery among them


@pytest.mark.slow
def test_the_solution_is_out_of_the_submissions_reach(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "peek_solution")
    monkeypatch.setenv("SCRIPTED_PROBE", str(tmp_path / "probe.txt"))
    summary = _run(tmp_path, tiny_dataset(), 60)
    assert summary["ingestion_success"], summary["error"]
    assert set((tmp_path / "probe.txt").read_text().split("\n")) == {"solution not found", ""}
    assert summary["final_nauc"] < 0.9


# Under 2019-05 the clock starts before the import, so the budget must stop the hang; the cap
# there is wide, since it also covers the harness's own start-up (over 5 s on a busy CI machine).
@pytest.mark.slow
@pytest.mark.parametrize("behaviour, rule, cap, message", [
    ("hang_import", "2019-05", "40", "time budget reached"),
    ("hang_import", "2019-08", "5", "clock did not start within 5 s"),
    ("hang_init", "2019-12", "5", "clock did not start within 5 s"),
])
def test_setup_that_never_returns_is_stopped(tmp_path, tiny_dataset, behaviour, rule, cap,
                                             message):
    started = time.time()
    result, summary = _run_cli(tmp_path, tiny_dataset(), 5, behaviour, "-clock_rule", rule,
                               "-setup_cap", cap)
    assert result.returncode == 1, result.stderr
    assert message in summary["error"]
    assert summary["num_predictions"] == 0
    # Harness start-up (TensorFlow) + the cap or the budget + the clean-up.
    assert time.time() - started < 60


@pytest.mark.slow
def test_nothing_the_submission_started_outlives_the_run(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "orphans")
    probe = tmp_path / "probe.txt"
    monkeypatch.setenv("SCRIPTED_PROBE", str(probe))
    summary = _run(tmp_path, tiny_dataset(), 60)
    assert summary["ingestion_success"], summary["error"]
    pids = [int(line.split()[1]) for line in probe.read_text().splitlines()]
    assert len(pids) == 3
    assert [pid for pid in pids if _alive(pid)] == []
    out = tmp_path / "out"
    before = sorted(os.listdir(out))
    time.sleep(1.0)
    assert sorted(os.listdir(out)) == before  # nobody writes there any more


def test_zip_submissions_are_unpacked_within_limits(tmp_path):
    from autodl import ingestion
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(5):
            z.writestr(f"f{i}.txt", "x")
    with pytest.raises(ingestion.SubmissionError, match="5 entries, over the limit of 3"):
        ingestion.extract_zip(str(many), str(tmp_path / "a"), max_entries=3)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.py", b"\0" * 2_000_000)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ingestion.SubmissionError, match="unpacks to more than"):
        ingestion.extract_zip(str(bomb), str(tmp_path / "b"), max_bytes=1_000_000)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escaped.py", "x")
        z.writestr("model.py", "x")
    ingestion.extract_zip(str(evil), str(tmp_path / "c" / "d"))
    assert not (tmp_path / "escaped.py").exists()
    assert (tmp_path / "c" / "d" / "escaped.py").exists()


@pytest.mark.parametrize("where", ["dataset", "dataset parent", "inside dataset",
                                   "submission"])
def test_output_folders_never_hold_the_inputs(tmp_path, tiny_dataset, capsys, where):
    dataset = tiny_dataset()
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.py").write_text(open(os.path.join(SCRIPTED, "model.py")).read())
    target = {"dataset": dataset, "dataset parent": os.path.dirname(dataset),
              "inside dataset": os.path.join(dataset, "out"), "submission": str(code)}[where]
    for flag in ("-output_dir", "-score_dir"):
        other = "-score_dir" if flag == "-output_dir" else "-output_dir"
        code_ = run_local_test.main(["-dataset_dir", dataset, "-code_dir", str(code),
                                     "-time_budget", "5", flag, target,
                                     other, str(tmp_path / "elsewhere"), "-progress", "false"])
        assert code_ == 2
        assert "refusing to overwrite or delete it" in capsys.readouterr().err
        assert os.path.exists(os.path.join(dataset, "tiny.solution"))
        assert (code / "model.py").exists()


@pytest.mark.slow
def test_a_submission_ignoring_sigterm_and_its_child_end_with_the_run(tmp_path, tiny_dataset):
    result, summary = _run_cli(tmp_path, tiny_dataset(), 5, "stubborn")
    assert result.returncode == 1 and "time budget reached" in summary["error"]
    assert summary["num_predictions"] >= 1
    assert summary["run_overrun_s"] < RUN_END_LIMIT_S
    pids = [int(line.split()[1]) for line in (tmp_path / "probe.txt").read_text().splitlines()]
    assert pids and [pid for pid in pids if _alive(pid)] == []


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


@pytest.mark.slow
def test_a_killed_scorer_and_a_forged_scores_json_fake_no_score(tmp_path, tiny_dataset):
    result, summary = _run_cli(tmp_path, tiny_dataset(), 60, "fake_score")
    assert result.returncode == 0, result.stderr
    assert summary["num_predictions"] == 3 and summary["final_nauc"] < 0.9
    assert "ALC 0.9990" not in result.stdout
    on_disk = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert on_disk["alc"] == summary["alc"] and on_disk["nauc_scores"] == summary["nauc_scores"]
    assert f"score: {summary['alc']:.6f}" in (tmp_path / "scores" / "scores.txt").read_text()


@pytest.mark.slow
def test_a_stopped_scorer_cannot_hang_the_runner(tmp_path, tiny_dataset):
    staging = tmp_path / "tmp"
    staging.mkdir()
    result, summary = _run_cli(tmp_path, tiny_dataset(), 5, "stop_scorer",
                               env={"TMPDIR": str(staging)}, timeout=90)
    assert result.returncode == 1, result.stderr
    assert "time budget reached" in summary["error"]
    assert summary["num_predictions"] >= 1
    assert summary["run_overrun_s"] < RUN_END_LIMIT_S
    assert os.listdir(staging) == []  # the staging folder went with the run


@pytest.mark.slow
def test_a_pid_hopping_daemon_does_not_outlive_the_run(tmp_path, tiny_dataset):
    result, summary = _run_cli(tmp_path, tiny_dataset(), 60, "daemon")
    assert result.returncode == 0, result.stderr
    probe = tmp_path / "probe.txt"
    pids = [int(line) for line in probe.read_text().split()]
    assert len(pids) > 3  # it did hop
    size = probe.stat().st_size
    time.sleep(1.5)
    assert probe.stat().st_size == size, "a process of the submission still writes"
    assert not _alive(int(probe.read_text().split()[-1]))


@pytest.mark.slow
def test_a_prediction_flood_ends_within_the_bound(tmp_path, tiny_dataset):
    result, summary = _run_cli(tmp_path, tiny_dataset(), 5, "flood")
    assert result.returncode == 1 and "time budget reached" in summary["error"]
    assert summary["run_overrun_s"] < RUN_END_LIMIT_S
    assert summary["superseded_predictions"] > 0  # more arrived than the runner takes
    files = [f for f in os.listdir(tmp_path / "out") if ".predict_" in f]
    assert len(files) == summary["num_predictions"] >= 1
    # Bounded by the runner's tick, not by how fast test() returns.
    assert _dir_size(tmp_path / "scores") < 2_000_000


@pytest.mark.slow
def test_a_link_at_start_txt_is_not_written_through(tmp_path, tiny_dataset, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    _scripted(monkeypatch, "link_start")
    monkeypatch.setenv("SCRIPTED_VICTIM", str(victim))
    summary = _run(tmp_path, tiny_dataset(), 60)
    assert summary["ingestion_success"] and summary["num_predictions"] == 3
    assert victim.read_text() == "precious\n"


@pytest.mark.slow
def test_a_deleted_output_folder_ends_the_run_with_one_line(tmp_path, tiny_dataset):
    result, summary = _run_cli(tmp_path, tiny_dataset(), 30, "delete_out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert summary is not None, "no run.json in the score folder"
    assert "the output folder was deleted or replaced during the run" in summary["error"]
    assert summary["num_predictions"] >= 1


@pytest.mark.slow
def test_a_degenerate_test_set_is_named(tmp_path, tiny_dataset, monkeypatch):
    _scripted(monkeypatch, "good")
    summary = _run(tmp_path, tiny_dataset(n_test=1), 60)
    assert summary["ingestion_success"]
    assert any("the test set holds 1 example" in w for w in summary["warnings"])
