"""Stratified subsets of a training split: autodl.datasets.subsample and its CLI."""
import hashlib
import json
import os

import numpy as np
import pytest

from autodl import layout, reader
from autodl.datasets.__main__ import main as datasets_main
from autodl.datasets.subsample import (
    SubsampleError,
    _allocate,
    choose,
    read_train_labels,
    subsample,
)
from autodl.writer import write_dataset


def _tree(path):
    """{relative path: (sha1, mtime_ns)} of every file under path."""
    found = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = (hashlib.sha1(f.read()).hexdigest(),
                                                      os.stat(full).st_mtime_ns)
    return found


def _imbalanced(tmp_path, name="skewed", counts=(60, 25, 10, 4, 1), n_test=10):
    """A single-label PNG set whose classes hold `counts` training records, shuffled."""
    rng = np.random.default_rng(1)
    y = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    x = [np.full((4, 4, 1), 40 * c, np.uint8) for c in y]
    test_y = np.arange(n_test) % len(counts)
    test_x = [np.full((4, 4, 1), 40 * c, np.uint8) for c in test_y]
    return write_dataset(tmp_path / "src" / name, name, (x, y.tolist()),
                         (test_x, test_y.tolist()), output_dim=len(counts), image_format="png",
                         label_names=[f"c{k}" for k in range(len(counts))])


def test_allocate_keeps_shares_and_one_per_class():
    assert _allocate([50, 30, 15, 5], 20).tolist() == [10, 6, 3, 1]
    take = _allocate([97, 2, 1], 10)
    assert take.tolist() == [8, 1, 1]  # 9.7 / 0.2 / 0.1, but every class keeps one
    assert _allocate([5, 0, 9, 3], 2).tolist() == [1, 0, 1, 0]  # n < classes: the largest
    take = _allocate([3, 3, 100], 50)
    assert take.sum() == 50 and take.min() >= 1 and (take <= [3, 3, 100]).all()


def test_stratified_counts_on_a_written_set(tmp_path):
    src = _imbalanced(tmp_path)
    path, built = subsample(src, 20, tmp_path / "zoo")
    assert built and os.path.basename(path) == "skewed-n20"
    labels = read_train_labels(layout.find_data_dir(path))
    # Shares 12/5/2/0.8/0.2; the two small classes keep one each, the largest gives one up.
    assert labels.sum(axis=0).tolist() == [11, 5, 2, 1, 1]
    # Test split, solution and label names are the source's, whole.
    data = layout.find_data_dir(path)
    assert reader.check_splits(data) == {"train": 20, "test": 10}
    with open(os.path.join(src, "skewed.solution")) as a, \
            open(os.path.join(path, "skewed-n20.solution")) as b:
        assert a.read() == b.read()
    with open(os.path.join(path, "skewed-n20_label.name")) as f:
        assert f.read().split() == ["c0", "c1", "c2", "c3", "c4"]


def test_records_are_copied_byte_for_byte_in_source_order(tmp_path):
    src = _imbalanced(tmp_path)
    path, _ = subsample(src, 30, tmp_path / "zoo", seed=3)
    src_ids, src_x, _ = reader.read_split(os.path.join(src, "skewed.data", "train"))
    ids, x, _ = reader.read_split(os.path.join(path, "skewed-n30-s3.data", "train"))
    assert list(ids) == sorted(ids) and set(ids) <= set(src_ids)
    by_id = dict(zip(src_ids.tolist(), src_x))
    assert all(np.array_equal(by_id[i], frames) for i, frames in zip(ids.tolist(), x))


def test_deterministic_by_seed_and_source_untouched(tmp_path):
    src = _imbalanced(tmp_path)
    before = _tree(src)
    a, _ = subsample(src, 25, tmp_path / "a", seed=7)
    b, _ = subsample(src, 25, tmp_path / "b", seed=7)
    c, _ = subsample(src, 25, tmp_path / "c", seed=8)
    train = "{}.data/train/sample-{}-train.tfrecord"

    def train_bytes(path):
        name = os.path.basename(path)
        with open(os.path.join(path, train.format(name, name)), "rb") as f:
            return f.read()
    assert train_bytes(a) == train_bytes(b) != train_bytes(c)
    assert _tree(src) == before


def test_cache_reused_rebuilt_when_stale_and_foreign_folders_left_alone(tmp_path):
    src = _imbalanced(tmp_path)
    out = tmp_path / "zoo"
    path, built = subsample(src, 20, out)
    assert built
    assert subsample(src, 20, out) == (path, False)
    record = os.path.join(path, "subsample.json")
    with open(record) as f:
        stale = json.load(f)
    stale["subsample_version"] = 0
    with open(record, "w") as f:
        json.dump(stale, f)
    assert subsample(src, 20, out) == (path, True)  # stale: rebuilt in place
    os.makedirs(out / "skewed-n21")
    (out / "skewed-n21" / "mine.txt").write_text("keep")
    with pytest.raises(SubsampleError, match="not made by subsample"):
        subsample(src, 21, out)
    assert (out / "skewed-n21" / "mine.txt").read_text() == "keep"
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no staging left behind


def test_n_out_of_range_is_one_line_error(tmp_path, capsys):
    src = _imbalanced(tmp_path)  # 100 training records
    for n in (100, 500, 0):
        with pytest.raises(SubsampleError) as info:
            subsample(src, n, tmp_path / "zoo")
        assert info.value.flag == "n" and "holds 100 records" in str(info.value)
    assert datasets_main(["subsample", "--source", str(src), "--n", "100",
                          "--out", str(tmp_path / "zoo")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --n 100:") and "\n" not in err
    assert datasets_main(["subsample", "--source", str(tmp_path / "none"), "--n", "5",
                          "--out", str(tmp_path / "zoo")]) == 2
    assert capsys.readouterr().err.startswith("error: --source ")
    assert not os.path.exists(tmp_path / "zoo" / "skewed-n100")


def test_cli_builds_several_sizes(tmp_path, capsys):
    src = _imbalanced(tmp_path)
    assert datasets_main(["subsample", "--source", str(src), "--n", "10", "50",
                          "--out", str(tmp_path / "zoo")]) == 0
    out = capsys.readouterr().out
    assert "built: " in out and "skewed-n10" in out and "skewed-n50" in out
    for n in (10, 50):
        data = layout.find_data_dir(tmp_path / "zoo" / f"skewed-n{n}")
        assert reader.check_splits(data)["train"] == n


def test_multi_label_covers_every_label():
    rng = np.random.default_rng(0)
    labels = rng.random((400, 6)) < [0.5, 0.4, 0.3, 0.2, 0, 0]
    labels[17, 4] = True  # label 4 appears once, label 5 never
    labels[200:210] = False  # some records with no label at all
    for seed in range(5):
        picked = choose(labels, 5, seed)
        assert len(picked) == 5 == len(set(picked.tolist()))
        assert 17 in picked and labels[picked, :5].any(axis=0).all()
    big = choose(labels, 200, 0)
    shares = labels[big].mean(axis=0)[:4]
    assert np.allclose(shares, labels.mean(axis=0)[:4], atol=0.1)


def test_multi_label_dataset(tmp_path):
    y = [[0, 1], [1], [0], [0, 2]] * 10 + [[3]]  # label 3 once
    x = [np.full((5, 5, 3), 6 * k, np.uint8) for k in range(len(y))]
    src = write_dataset(tmp_path / "ml", "ml", (x, y), (x[:8], y[:8]), output_dim=4,
                        image_format="png")
    path, _ = subsample(src, 4, tmp_path / "zoo")
    labels = read_train_labels(layout.find_data_dir(path))
    assert labels.shape == (4, 4) and labels.any(axis=0).all()


def test_video_subset(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [3, 5, 8] * 8
    x = [rng.integers(0, 255, (t, 6, 6, 1), dtype=np.uint8) for t in lengths]
    y = [k % 3 for k in range(len(x))]
    src = write_dataset(tmp_path / "vid", "vid", (x, y), (x[:6], y[:6]), output_dim=3,
                        image_format="png")
    path, _ = subsample(src, 9, tmp_path / "zoo")
    data = layout.find_data_dir(path)
    assert reader.check_splits(data) == {"train": 9, "test": 6}
    ids, frames, labels = reader.read_split(os.path.join(data, "train"))
    assert labels.sum(axis=0).tolist() == [3, 3, 3]
    assert sorted(f.shape for f in frames) == [(t, 6, 6, 1) for t in (3, 3, 3, 5, 5, 5, 8, 8, 8)]
    src_ids, src_frames, _ = reader.read_split(os.path.join(src, "vid.data", "train"))
    by_id = dict(zip(src_ids.tolist(), src_frames))
    assert all(np.array_equal(by_id[i], f) for i, f in zip(ids.tolist(), frames))
