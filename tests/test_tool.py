"""The user-facing tool: convert (folder, CSV, video, bad inputs), fit + predict end to end,
and the submission zip run through the harness."""
import csv
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from autodl import __main__ as tool
from autodl import convert
from autodl.run_local_test import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = ("circle", "square", "triangle")


def _shape_image(kind, rng, size=24, mode="RGB"):
    """A random-coloured shape on a noisy background: an easy but real image task."""
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
    draw = ImageDraw.Draw(image)
    c, r = rng.integers(9, size - 9, 2), int(rng.integers(5, 8))
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    box = [int(c[0] - r), int(c[1] - r), int(c[0] + r), int(c[1] + r)]
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), (int(c[0]), box[1])], fill=colour)
    return image.convert(mode)


def make_folder(root, per_class=20, modes=("RGB",), seed=0):
    rng = np.random.default_rng(seed)
    for kind in SHAPES:
        os.makedirs(root / kind, exist_ok=True)
        for i in range(per_class):
            _shape_image(kind, rng, mode=modes[i % len(modes)]).save(root / kind / f"{i}.png")
    return root


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def _solution_rows(dataset, name):
    return np.loadtxt(dataset / f"{name}.solution", ndmin=2)


# -- convert --------------------------------------------------------------------------------
def test_convert_folder_with_mixed_modes_and_bad_files(tmp_path):
    root = make_folder(tmp_path / "shapes", per_class=10, modes=("RGB", "L", "RGBA"))
    (root / "circle" / "empty.png").write_bytes(b"")
    (root / "square" / "broken.jpg").write_bytes(b"not an image at all")
    Image.new("RGB", (20, 20)).save(root / "triangle" / "x.bmp")  # not JPEG/PNG: re-encoded
    out = tmp_path / "ds"
    result = _cli("autodl.convert", "folder", str(root), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "empty.png" in result.stderr and "broken.jpg" in result.stderr
    assert "converted to RGB" in result.stderr
    names = (out / "shapes_label.name").read_text().split()
    assert names == list(SHAPES)
    solution = _solution_rows(out, "shapes")
    test_files = (out / "shapes_test_files.txt").read_text().split()
    assert len(test_files) == len(solution) == 6  # 20% of 31 readable, stratified
    assert solution.sum(axis=0).min() >= 1  # every class in the test split
    for row, path in zip(solution, test_files):  # the list follows record order
        assert SHAPES[int(row.argmax())] == path.split("/")[0]
    meta = (out / "shapes.data" / "train" / "metadata.textproto").read_text()
    assert "num_channels: 3" in meta and "COMPRESSED" in meta


def test_convert_csv_multilabel(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "Labels"])
        for i in range(20):
            kind = SHAPES[i % 3]
            _shape_image(kind, rng, mode="L").save(images / f"{i}.png")
            w.writerow([f"{i}.png", f"{kind} big" if i % 2 else kind])
    out = tmp_path / "ds"
    assert convert.main(["csv", str(tmp_path / "labels.csv"), "--images", str(images),
                         "--out", str(out)]) == 0
    assert (out / "labels_label.name").read_text().split() == ["big", "circle", "square",
                                                              "triangle"]
    assert (_solution_rows(out, "labels").sum(axis=1) >= 1).all()
    assert "num_channels: 1" in (out / "labels.data" / "test" / "metadata.textproto").read_text()


@pytest.mark.parametrize("case, expected", [
    ("empty_folder", "no class folders"),
    ("one_class", "only one class"),
    ("unknown_file", "line 3: missing.png not found"),
    ("empty_labels", "line 2: 0.png has no labels"),
])
def test_convert_bad_inputs(tmp_path, capsys, case, expected):
    root = tmp_path / "in"
    root.mkdir()
    out = tmp_path / "ds"
    rng = np.random.default_rng(0)
    if case == "empty_folder":
        argv = ["folder", str(root)]
    elif case == "one_class":
        (root / "cat").mkdir()
        _shape_image("circle", rng).save(root / "cat" / "a.png")
        argv = ["folder", str(root)]
    else:
        _shape_image("circle", rng).save(root / "0.png")
        _shape_image("square", rng).save(root / "1.png")
        rows = ["FileName,Labels", "0.png,circle", "missing.png,square"] \
            if case == "unknown_file" else ["FileName,Labels", "0.png,", "1.png,square"]
        (root / "l.csv").write_text("\n".join(rows) + "\n")
        argv = ["csv", str(root / "l.csv")]
    assert convert.main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")]  # nothing partial


def test_convert_video(tmp_path):
    av = pytest.importorskip("av")
    root = tmp_path / "clips"
    for label, step in (("left", -2), ("right", 2)):
        (root / label).mkdir(parents=True)
        for k in range(4):
            with av.open(str(root / label / f"{k}.mp4"), "w") as container:
                stream = container.add_stream("mpeg4", rate=8)
                stream.width = stream.height = 32
                stream.pix_fmt = "yuv420p"
                for t in range(10):
                    frame = np.zeros((32, 32, 3), np.uint8)
                    frame[:, (16 + step * t + k) % 32] = 255
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
    (root / "left" / "bad.mp4").write_bytes(b"")
    out = tmp_path / "ds"
    assert convert.main(["video", str(root), "--out", str(out), "--frames", "6"]) == 0
    meta = (out / "clips.data" / "train" / "metadata.textproto").read_text()
    assert "sequence_size: 6" in meta
    assert len(_solution_rows(out, "clips")) == 2


# -- fit + predict ---------------------------------------------------------------------------
def test_fit_then_predict(tmp_path):
    data = make_folder(tmp_path / "shapes", per_class=20)
    out = tmp_path / "out"
    result = _cli("autodl", "fit", "--data", str(data), "--time_budget", "20", "--out",
                  str(out), "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "learning-curve.png").exists() and (out / "model.pt").exists()
    with open(out / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "class", *SHAPES]
    assert len(rows) == 1 + 12 and rows[1][0].endswith(".png")
    new = make_folder(tmp_path / "new", per_class=4, seed=7)
    preds = tmp_path / "preds.csv"
    result = _cli("autodl", "predict", "--model", str(out / "model.pt"), "--images", str(new),
                  "--out", str(preds))
    assert result.returncode == 0, result.stderr
    with open(preds) as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == 12
    probs = np.array([[float(v) for v in r[2:]] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    accuracy = np.mean([r[1] == r[0].split("/")[0] for r in rows])
    assert accuracy > 1 / 3  # better than chance on shapes it has not seen


# -- zip ---------------------------------------------------------------------------------------
def test_zip_runs_through_the_harness(tmp_path):
    path, _, _ = tool.build_zip(str(tmp_path / "submission.zip"))
    names = zipfile.ZipFile(path).namelist()
    assert "model.py" in names and "skeleton/learner.py" in names and "configs/image.yaml" in names
    assert not [n for n in names if "__pycache__" in n]
    with pytest.raises(tool.UserError, match="over the platform"):
        tool.build_zip(str(tmp_path / "big.zip"), limit=1000)
    data = make_folder(tmp_path / "shapes", per_class=10)
    dataset = convert.convert_folder(str(data), str(tmp_path / "ds"))
    summary = run(dataset, path, 15, output_dir=str(tmp_path / "o"),
                  score_dir=str(tmp_path / "s"), progress=False)
    assert summary["num_predictions"] >= 1, summary


def test_persist_network_round_trip(tmp_path):
    """A learner whose best model is the network: the saved file predicts like the trainer."""
    import types

    import torch

    from skeleton import persist
    from skeleton.config import load_config
    from skeleton.data.profile import scan
    from skeleton.nn import build_network
    from skeleton.quick import QuickModel
    from skeleton.trainer import Trainer
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 1, 16, 16, 3), dtype=np.uint8)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    cfg = load_config("image")
    net = build_network("fastnet", 3, 3, weights="none")
    trainer = Trainer(net, dict(cfg["train"], temperature=1.0), torch.device("cpu"), False,
                      flip=False)
    trainer.save_best()
    meta = types.SimpleNamespace(get_label_to_index_map=lambda: {"a": 0, "b": 1, "c": 2})
    learner = types.SimpleNamespace(
        best_source="net", quick=QuickModel(cfg["quick"]).fit(x, y), classes=3, metadata=meta,
        profile=scan([(f, l) for f, l in zip(x, y)], 3, True), shape=(1, 16, 16), cfg=cfg,
        trainer=trainer)
    assert persist.save(learner, str(tmp_path / "model.pt"))
    predictor = persist.load(str(tmp_path / "model.pt"))
    assert predictor.source == "net" and predictor.label_names == ["a", "b", "c"]
    expected = trainer.predict(x, tta_flip=cfg["train"]["tta_flip"])
    assert np.allclose(predictor.predict_arrays(x), expected, atol=1e-4)
    for i in range(2):
        Image.fromarray(x[i, 0]).save(tmp_path / f"{i}.png")
    probs = predictor.predict_files([str(tmp_path / "0.png"), str(tmp_path / "1.png")])
    assert np.allclose(probs, expected[:2], atol=1e-4)
