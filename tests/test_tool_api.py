"""The tool as a user reaches for it: the Python API (fit, load, predict, evaluate), the
evaluate command, --valid, --test_ratio 0, the report in words and the errors that help. One
tiny fit is shared; the CLI and the API are checked against each other on it."""
import csv
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import autoclint
from autoclint import __main__ as tool
from autoclint import app, metrics
from conftest import REPO
from test_tool import SHAPES, make_folder


def _cli(*args, cwd=REPO, env=None):
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "autoclint", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A fit through the API, on photos/train with photos/val as its held-out folder."""
    root = tmp_path_factory.mktemp("api")
    train = make_folder(root / "photos" / "train", per_class=12)
    valid = make_folder(root / "photos" / "val", per_class=5, seed=3)
    model = autoclint.fit(train, time_budget=6, out=root / "out", valid=valid, quiet=True)
    return model, root


@pytest.mark.slow
def test_api_fit_scores_the_valid_folder_and_writes_the_report(fitted):
    model, root = fitted
    out = root / "out"
    scores = model.fit_result["scores"]
    assert model.label_names == list(SHAPES)
    assert scores["images"] == 15 and sum(scores["confusion"][0]) == 5
    with open(out / "predictions.csv") as f:
        rows = list(csv.reader(f))[1:]
    assert sorted(r[0] for r in rows) == sorted(f"{c}/{i}.png" for c in SHAPES
                                                for i in range(5))
    top1 = np.mean([r[1] == r[0].split("/")[0] for r in rows])
    assert scores["accuracy"] == pytest.approx(top1)  # top-1, not the kit's mean probability
    report = (out / "report.md").read_text()
    assert report == model.fit_result["report"]
    assert "top-1 accuracy" in report and "validated on" in report and "ended:" in report
    # The model was chosen on the valid folder's 15 images, and the report says in which
    # precision it trained.
    from skeleton import persist
    assert persist.read_description(str(out / "model.pt"))["held_out"] == 15
    assert "- chosen on: your --valid folder (15 images)" in report
    assert re.search(r"- trained: .*, in (fp32|bf16|fp16), on ", report), report
    assert "ALC" not in report and not (out / "dataset").exists()  # no copy kept by default
    assert (out / "model.pt").is_file()


@pytest.mark.slow
def test_api_load_predicts_folders_files_and_lists(fitted):
    _, root = fitted
    model = autoclint.load(root / "out")  # the folder finds model.pt inside
    assert model.path == str(root / "out" / "model.pt")
    folder = model.predict(root / "photos" / "val")
    assert len(folder.files) == 15 and folder.probabilities.shape == (15, 3)
    assert np.allclose(folder.probabilities.sum(axis=1), 1, atol=1e-3)
    one = root / "photos" / "val" / "circle" / "0.png"
    single = model.predict(str(one))
    assert single.files == [str(one)]
    assert np.allclose(single.probabilities[0],
                       folder.probabilities[folder.files.index("circle/0.png")], atol=1e-5)
    mixed = model.predict([one, root / "photos" / "val" / "square"])
    assert len(mixed.files) == 6 and len(set(mixed.files)) == 6
    try:
        import pandas  # noqa: F401  (optional: the tool does not need it)
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            folder.to_pandas()
    else:
        frame = folder.to_pandas()
        assert list(frame.columns) == ["file", "class", *SHAPES]
        assert list(frame["class"]) == folder.classes


@pytest.mark.slow
def test_evaluate_cli_and_api_agree(fitted, tmp_path):
    _, root = fitted
    result = autoclint.load(root / "out").evaluate(root / "photos" / "val")
    assert result["images"] == 15
    assert np.array(result["confusion"]).sum() == 15
    assert result["accuracy"] == pytest.approx(np.trace(result["confusion"]) / 15)
    recalls = [v["recall"] for v in result["per_class"].values()]
    assert result["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    out = tmp_path / "eval"
    run = _cli("evaluate", "--model", root / "out", "--data", root / "photos" / "val",
               "--out", out)
    assert run.returncode == 0, run.stderr
    assert f"top-1 accuracy {result['accuracy']:.3f}" in run.stdout
    assert "confusion matrix" in run.stdout and "precision" in run.stdout
    assert (out / "confusion.png").stat().st_size > 0 and (out / "evaluation.json").exists()
    # the held-out folder scored by fit and by evaluate: the same model, the same figure
    assert fitted[0].fit_result["scores"]["confusion"] == result["confusion"]


@pytest.mark.slow
def test_predict_cli_takes_single_files_and_model_folders(fitted, tmp_path):
    _, root = fitted
    one = root / "photos" / "val" / "triangle" / "1.png"
    run = _cli("predict", "--model", root / "out", "--data", one, "--out", tmp_path / "p.csv")
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(open(tmp_path / "p.csv")))
    assert rows[0] == ["file", "class", *SHAPES] and len(rows) == 2
    square = root / "photos" / "val" / "square"
    run = _cli("predict", "--model", root / "out" / "model.pt", "--data", one, square,
               "--out", tmp_path / "q.csv")
    assert run.returncode == 0, run.stderr
    names = [r[0] for r in list(csv.reader(open(tmp_path / "q.csv")))[1:]]
    assert names == [str(one)] + [str(square / f"{i}.png") for i in range(5)]


@pytest.mark.slow
def test_evaluate_refuses_a_class_the_model_does_not_know(fitted, tmp_path, capsys):
    _, root = fitted
    make_folder(tmp_path / "other", per_class=2)
    (tmp_path / "other" / "circle").rename(tmp_path / "other" / "hexagon")
    assert tool.main(["evaluate", "--model", str(root / "out"), "--data",
                      str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hexagon: a class the model does not know" in err[0]


@pytest.mark.slow
def test_fit_with_test_ratio_0_trains_on_all_without_tensorflow(tmp_path):
    """No --out: a new folder named after the data; TensorFlow made unimportable for the
    tool and for the run it starts."""
    data = make_folder(tmp_path / "shapes", per_class=6)
    blocker = tmp_path / "blocker" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('tensorflow blocked by the test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "blocker"))
    run = _cli("fit", "--data", data, "--time_budget", "5", "--test_ratio", "0", "--quiet",
               cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no held-out score exists" in run.stderr
    outs = [p for p in tmp_path.iterdir() if p.name.startswith("shapes-fit-")]
    assert len(outs) == 1 and f"writing to {outs[0]}" in run.stderr
    report = (outs[0] / "report.md").read_text()
    assert "held-out score: none" in report
    assert "training images the model set aside" in report
    assert "top-1" not in run.stdout and "NAUC" not in run.stdout
    rows = list(csv.reader(open(outs[0] / "predictions.csv")))[1:]
    assert len(rows) == 18  # every training image, predicted again
    assert "[ingestion]" not in run.stderr  # the run's log stays in its file
    assert "prediction 1 at" not in run.stderr  # --quiet: no bar, no progress lines


@pytest.mark.slow
def test_progress_in_a_file_is_one_line_per_prediction(fitted, tmp_path):
    _, root = fitted
    run = _cli("fit", "--data", root / "photos" / "train", "--valid", root / "photos" / "val",
               "--time_budget", "4", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    # Through the CLI too, the held-out set the model chose on is the --valid folder.
    from skeleton import persist
    assert persist.read_description(str(tmp_path / "out" / "model.pt"))["held_out"] == 15
    assert "(the first 15 held out)" in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("prediction ")]
    assert lines and lines[0].startswith("prediction 1 at ")
    assert "\r" not in run.stderr  # no bar frames in a file


@pytest.mark.slow
def test_predict_and_evaluate_never_import_tensorflow(fitted):
    _, root = fitted
    code = ("import sys, autoclint; m = autoclint.load(sys.argv[1]); m.predict(sys.argv[2]); "
            "m.evaluate(sys.argv[2]); print('tensorflow' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, str(root / "out"),
                          str(root / "photos" / "val")], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


# -- errors that help (no fit runs) ----------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["fit", "--data", "{photos}", "--out", "{out}"],
     "looks like a folder of splits (train/, val/): use --data {photos}/train "
     "[--valid {photos}/val]"),
    (["fit", "--data", "{photos}/train", "--test_ratio", "1", "--out", "{out}"],
     "--test_ratio must be at least 0 and below 1"),
    (["fit", "--data", "{photos}/train", "--valid", "{odd}", "--out", "{out}"],
     "hexagon: class not in the training folder"),
    (["predict", "--model", "{photos}", "--data", "{photos}/val", "--out", "{tmp}/p.csv"],
     "a folder without model.pt"),
    (["predict", "--model", "{png}", "--data", "{photos}/val", "--out", "{tmp}/p.csv"],
     "not a model saved by autoclint fit (a PNG image)"),
    (["evaluate", "--model", "{png}", "--data", "{photos}/val"],
     "not a model saved by autoclint fit (a PNG image)"),
])
def test_slips_get_one_line_errors_that_say_what_to_do(tmp_path, capsys, argv, expected):
    photos = tmp_path / "photos"
    make_folder(photos / "train", per_class=3)
    make_folder(photos / "val", per_class=2)
    odd = make_folder(tmp_path / "odd", per_class=1)
    (odd / "circle").rename(odd / "hexagon")
    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    names = {"photos": photos, "out": tmp_path / "out", "odd": odd,
             "png": tmp_path / "cat.png", "tmp": tmp_path}
    assert tool.main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected.format(**names) in err[-1]
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.csv").exists()


def test_the_api_raises_the_same_errors(tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos / "train", per_class=3)
    make_folder(photos / "val", per_class=2)
    with pytest.raises(app.UserError, match="looks like a folder of splits"):
        autoclint.fit(photos, time_budget=5, out=tmp_path / "out")
    with pytest.raises(app.UserError, match="no such model file or folder"):
        autoclint.load(tmp_path / "missing.pt")
    assert not (tmp_path / "out").exists()


def test_a_failed_fit_leaves_no_out_behind(tmp_path, capsys):
    data = make_folder(tmp_path / "shapes", per_class=3)
    valid = tmp_path / "val"
    (valid / "circle").mkdir(parents=True)
    (valid / "circle" / "0.png").write_bytes(b"not an image")  # nothing readable to hold out
    out = tmp_path / "out"
    assert tool.main(["fit", "--data", str(data), "--valid", str(valid), "--out", str(out),
                      "--time_budget", "5", "--quiet"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last == f"error: {valid}: no readable images left in the validation folder"
    assert not out.exists() and (valid / "circle" / "0.png").exists()


def test_a_held_out_set_with_few_images_of_a_class_is_explained_in_one_line():
    labels, counts = ["circle", "square", "triangle"], np.array([2, 7, 0])
    line = app.few_held_out(labels, counts, valid=True)
    assert line == ("warning: the --valid folder has fewer than 5 images of circle (2), "
                    "triangle (0); the model is chosen and scored on it, roughly (add images "
                    "to it)")
    assert "larger --test_ratio" in app.few_held_out(labels, counts, valid=False)
    assert app.few_held_out(labels, np.array([5, 9, 6]), valid=True) is None


def test_the_valid_count_reaches_the_run_through_its_config_and_is_then_removed(
        monkeypatch):
    from skeleton.config import load_config
    monkeypatch.setenv("AUTOCLINT_CONFIG", '{"data": {"valid_min": 7}, "select": {"seed": 1}}')
    with app._config_env({"data": {"holdout_first": 15}}):
        cfg = load_config("image")  # as the run's subprocess reads it
        assert cfg.data.holdout_first == 15 and cfg.data.valid_min == 7
        assert cfg.select.seed == 1  # the user's --config kept
    assert load_config("image").data.holdout_first == 0
    assert os.environ["AUTOCLINT_CONFIG"] == ('{"data": {"valid_min": 7}, '
                                              '"select": {"seed": 1}}')
    monkeypatch.delenv("AUTOCLINT_CONFIG")
    with app._config_env({"data": {"holdout_first": 3}}):
        assert load_config("image").data.holdout_first == 3
    assert "AUTOCLINT_CONFIG" not in os.environ


def test_scores_count_top_1_and_balance_classes():
    truth = np.eye(2)[[0, 0, 0, 1]]
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.45, 0.55]])
    result = metrics.score(truth, probs, ["a", "b"])
    assert result["accuracy"] == 0.75  # the kit's mean probability on the truth is 0.6125
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    assert result["confusion"] == [[2, 1], [0, 1]]
    assert "top-1 accuracy 0.750" in metrics.format_scores(result)


def test_default_out_is_named_after_the_data_and_time(tmp_path, monkeypatch):
    import time
    monkeypatch.chdir(tmp_path)
    stamp = time.strptime("2026-01-02 03:04:05", "%Y-%m-%d %H:%M:%S")
    assert app.default_out("/data/my photos/", stamp) == str(tmp_path /
                                                            "my_photos-fit-20260102-030405")
