"""The command lines: the harness free of our model, help texts, --config/--verbose, one
name per idea, and one-line errors (exit 2) for bad input in every command."""
import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from autoclint import __main__ as tool
from autoclint import app
from autodl import run_local_test

from conftest import REPO


def _python(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _harness_modules():
    for folder, dirs, files in os.walk(os.path.join(REPO, "autodl")):
        dirs[:] = [d for d in dirs if d not in ("reference_submission", "__pycache__")]
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(folder, f)


@pytest.mark.slow
def test_the_harness_never_imports_our_model():
    ours = {"skeleton", "autoclint", "model"}
    for path in _harness_modules():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level \
                else []
            assert not {n.split(".")[0] for n in names} & ours, (path, names)
    # And at run time: every harness module imported, none of ours comes along.
    modules = sorted(os.path.relpath(p, REPO)[:-3].replace(os.sep, ".")
                     .replace(".__init__", "").replace(".__main__", "")
                     for p in _harness_modules())
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('skeleton', 'autoclint', 'model')))")
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_python_m_autodl_points_fit_predict_zip_to_the_tool():
    for command in ("fit", "predict", "zip"):
        result = _python("-m", "autodl", command, "--data", "x")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert f"python -m autoclint {command}" in result.stderr
    result = _python("-m", "autodl", "nonsense")
    assert result.returncode == 2 and "unknown command" in result.stderr


def _actions(parser):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield action


@pytest.mark.slow
def test_every_flag_has_a_help_text_and_its_default_shows():
    for action in _actions(tool.parser()):
        assert action.help, action.option_strings or action.dest
    for command in (["fit"], ["predict"], ["zip"], ["convert", "folder"]):
        result = _python("-m", "autoclint", *command, "--help")
        assert result.returncode == 0, result.stderr
        if command == ["fit"]:
            assert "seconds (default: 60" in result.stdout
            assert "(default: 0.2)" in result.stdout and "--config FILE_OR_JSON" in result.stdout
    result = _python("autodl/run_local_test.py", "--help")
    assert result.returncode == 0 and "(default: 1200.0)" in result.stdout
    assert "-quiet" in result.stdout and "-config" in result.stdout


def test_runner_defaults_to_our_model_and_quiet_hides_the_bar(monkeypatch, tmp_path):
    seen = {}

    def fake_run(dataset_dir, code_dir, time_budget, output_dir, score_dir, clock_rule,
                 progress, setup_cap):
        seen.update(code_dir=code_dir, progress=progress)
        return {"task_name": "t", "alc": 0.0, "final_nauc": 0.0, "final_accuracy": None,
                "first_prediction_s": None, "num_predictions": 0, "peak_rss_mb": None,
                "ingestion_success": True, "error": None}
    monkeypatch.setattr(run_local_test, "run", fake_run)
    assert run_local_test.main(["-dataset_dir", str(tmp_path), "-quiet"]) == 0
    assert seen == {"code_dir": REPO, "progress": False}
    assert os.path.isfile(os.path.join(seen["code_dir"], "model.py"))
    assert run_local_test.main(["-dataset_dir", str(tmp_path), "-progress=false"]) == 0
    assert seen["progress"] is False
    assert run_local_test.main(["-dataset_dir", str(tmp_path)]) == 0
    assert seen["progress"] is True


def test_runner_refuses_a_missing_code_dir_in_one_line(tmp_path, capsys, tiny_dataset):
    missing = tmp_path / "nowhere"
    assert run_local_test.main(["-dataset_dir", tiny_dataset(), "-code_dir", str(missing),
                                "-quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: -code_dir {missing}: no such folder or zip file"]


@pytest.mark.parametrize("value, expected", [
    ("{missing}", "no such file"), ('{{"train": ', "not valid JSON"),
    ("{listfile}", "must hold a mapping"), ("{badyaml}", "neither JSON nor YAML")])
def test_bad_config_is_one_line_everywhere(tmp_path, capsys, monkeypatch, value, expected):
    monkeypatch.setenv("AUTOCLINT_CONFIG", "{}")  # restored after the test
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    value = value.format(missing=tmp_path / "nope.yaml", listfile=tmp_path / "list.yaml",
                         badyaml=tmp_path / "bad.yaml")
    data = tmp_path / "data"
    data.mkdir()
    for argv in (["fit", "--data", str(data), "--out", str(tmp_path / "out"), "--config",
                  value],
                 ["predict", "--model", str(tmp_path / "m.pt"), "--data", str(data), "--out",
                  str(tmp_path / "p.csv"), "--config", value]):
        assert tool.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert run_local_test.main(["-dataset_dir", str(data), f"-config={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "out").exists()


ECHO_SUBMISSION = '''
import json, os
import numpy as np
with open(os.environ["ECHO_PROBE"], "w") as f:
    json.dump({k: os.environ.get(k) for k in ("AUTOCLINT_CONFIG", "AUTOCLINT_VERBOSE")}, f)


class Model:
    def __init__(self, metadata):
        self.metadata, self.done_training = metadata, False

    def train(self, dataset, remaining_time_budget=None):
        pass

    def test(self, dataset, remaining_time_budget=None):
        self.done_training = True
        return np.zeros((30, self.metadata.get_output_size()))  # tiny_dataset's test set
'''


@pytest.mark.slow
def test_config_and_verbose_reach_the_submission(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setenv("AUTOCLINT_CONFIG", '{"from": "the variable"}')
    monkeypatch.setenv("AUTOCLINT_VERBOSE", "")
    monkeypatch.setenv("ECHO_PROBE", str(tmp_path / "probe.json"))
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.py").write_text(ECHO_SUBMISSION)
    dataset = tiny_dataset()
    (tmp_path / "c.yaml").write_text("train:\n  lr: 0.1\n")
    argv = ["-dataset_dir", dataset, "-code_dir", str(code), "-time_budget", "20", "-quiet",
            "-output_dir", str(tmp_path / "o"), "-score_dir", str(tmp_path / "s")]
    assert run_local_test.main(argv) == 0
    assert json.loads((tmp_path / "probe.json").read_text()) == {
        "AUTOCLINT_CONFIG": '{"from": "the variable"}', "AUTOCLINT_VERBOSE": ""}
    assert run_local_test.main(argv + ["-config", str(tmp_path / "c.yaml"), "-verbose"]) == 0
    seen = json.loads((tmp_path / "probe.json").read_text())
    assert json.loads(seen["AUTOCLINT_CONFIG"]) == {"train": {"lr": 0.1}}
    assert seen["AUTOCLINT_VERBOSE"] == "1"


def test_a_malformed_dataset_in_fit_is_one_line(tmp_path, capsys, tiny_dataset):
    dataset = tiny_dataset()
    with open(os.path.join(dataset, "tiny.solution"), "w") as f:
        f.write("0 1\n")  # wrong shape
    assert tool.main(["fit", "--data", dataset, "--out", str(tmp_path / "out"), "--quiet",
                      "--time_budget", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "tiny.solution" in err[0], err


def _model_file(path, multi_label):
    from skeleton import persist
    meta = {"version": persist.FORMAT_VERSION, "profile": {"multi_label": multi_label}}
    np.savez(path, **{persist.META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    return str(path)


def test_fit_turns_scores_into_probabilities_the_saved_model_s_way(tmp_path):
    scores = [[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]]
    single = np.array(app.as_probabilities(scores, _model_file(tmp_path / "s.npz", False)))
    assert np.allclose(single.sum(axis=1), 1.0, atol=1e-6)
    multi = np.array(app.as_probabilities(scores, _model_file(tmp_path / "m.npz", True)))
    assert np.allclose(multi, 1 / (1 + np.exp(-np.array(scores))), atol=1e-6)
    assert app.as_probabilities([[0.2, 0.8]], "unused") == [[0.2, 0.8]]  # already in [0, 1]


def _pins(name):
    with open(os.path.join(REPO, name)) as f:
        return {line.split("#")[0].strip() for line in f
                if line.strip() and not line.startswith("#")}


def test_pyproject_commands_extras_and_install_script_agree():
    import importlib
    import tomllib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    scripts = project["project"]["scripts"]
    assert {"autodl-run", "autoclint"} <= set(scripts)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
    dynamic = project["tool"]["setuptools"]["dynamic"]
    files = list(dynamic["dependencies"]["file"])
    extras = dynamic["optional-dependencies"]
    assert files == ["requirements-tool.txt"]
    assert set(extras) == {"harness", "test", "bench", "video"}
    files += [f for extra in extras.values() for f in extra["file"]]
    # requirements.txt (the Dockerfile's, install.sh's) is the tool's pins plus the harness's
    assert _pins("requirements.txt") == _pins("requirements-tool.txt") | _pins(
        "requirements-harness.txt")
    assert not any(p.startswith(("tensorflow", "ray")) for p in _pins("requirements-tool.txt"))
    files.remove("requirements-tool.txt")
    files.remove("requirements-harness.txt")
    files.append("requirements.txt")
    assert "-r requirements-tool.txt" in open(os.path.join(REPO, "scripts", "install.sh")).read()
    with open(os.path.join(REPO, "scripts", "install.sh")) as f:
        install = f.read()
    for name in files:  # every file exists, holds pins, and the install script installs it
        with open(os.path.join(REPO, name)) as f:
            pins = [line for line in f if line.strip() and not line.startswith("#")]
        assert pins and all("==" in line for line in pins), name
        assert f"-r {name}" in install, name
    assert "pip install -q --no-deps --no-build-isolation -e ." in install
    assert "pytest==" in open(os.path.join(REPO, "requirements-test.txt")).read()
    assert "\npytest==" not in open(os.path.join(REPO, "requirements.txt")).read()
