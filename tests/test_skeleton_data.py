"""The model's data path: fast reader == tf.data, scan, input sizes, store, quick model."""
import os

import numpy as np
import pytest

from autodl.tfdata import AutoDLDataset
from autodl.writer import write_dataset
from skeleton.config import load_config
from skeleton.data import wire
from skeleton.data.decode import iter_examples
from skeleton.data.profile import DataProfile, input_size, scan
from skeleton.data.store import ExampleStore, FrameAdapter
from skeleton.metrics import nauc
from skeleton.quick import QuickModel


def _both_paths(split_dir):
    dataset = AutoDLDataset(split_dir)
    fast = list(iter_examples(dataset.get_dataset(), dataset.get_metadata()))
    slow = list(dataset.get_dataset().as_numpy_iterator())
    return fast, slow


@pytest.mark.parametrize("image_format", ["dense", "png"])
def test_fast_reader_gives_the_tf_data_tensors(tmp_path, image_format):
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (t, 5 + t, 7, 3), dtype=np.uint8) for t in (1, 3, 2, 4)]
    if image_format == "dense":
        clips = [c[:1].astype(np.float32) * 3.5 for c in clips]  # raw values, fixed size
        clips = [np.broadcast_to(c[:, :6], (1, 6, 7, 3)).copy() for c in clips]
    path = write_dataset(tmp_path / "d", "d", (clips, [[0], [1, 2], [2], []]),
                         (clips[:2], [0, 1]), output_dim=3, image_format=image_format, shards=2)
    for split in ("train", "test"):
        fast, slow = _both_paths(os.path.join(path, "d.data", split))
        assert len(fast) == len(slow)
        for (fx, fy), (sx, sy) in zip(fast, slow):
            if image_format == "dense":
                np.testing.assert_array_equal(fx, sx)
            else:  # ours stays uint8; tf.data scales to [0, 1]
                assert fx.dtype == np.uint8
                np.testing.assert_allclose(fx / 255.0, sx, atol=1e-6)
            np.testing.assert_array_equal(fy, sy)


def test_fast_reader_falls_back_to_tf_data(tmp_path, monkeypatch):
    x = [np.full((4, 4, 1), i / 10, np.float32) for i in range(6)]
    path = write_dataset(tmp_path / "f", "f", (x, [0, 1] * 3), (x[:2], [0, 1]), output_dim=2)
    dataset = AutoDLDataset(os.path.join(path, "f.data", "train"))

    def broken(payload):
        raise wire.WireError("simulated")

    monkeypatch.setattr(wire, "parse_record", broken)
    examples = list(iter_examples(dataset.get_dataset(), dataset.get_metadata()))
    assert len(examples) == 6 and examples[3][0][0, 0, 0, 0] == pytest.approx(0.3)


def _profile(h, w, frames=1, channels=3):
    return DataProfile(frames, h, w, channels, 0.0, 1.0, True, False, np.ones(3), 3)


@pytest.mark.parametrize("shape, expected", [
    ((28, 28), (28, 28)), ((32, 32), (32, 32)), ((203, 74), (128, 48)),
    ((576, 944), (48, 64)), ((300, 400), (48, 64)), ((8, 8), (8, 8)), ((2000, 3000), (48, 64)),
])
def test_input_sizes_follow_the_published_rules(shape, expected):
    cfg = load_config("image").data
    assert input_size(_profile(*shape), cfg)[1:] == expected


def test_video_frames_are_capped_and_sampled_evenly():
    cfg = load_config("video").data
    assert input_size(_profile(60, 80, frames=46), cfg) == (8, 48, 64)
    adapter = FrameAdapter(_profile(6, 6, frames=46), 8, 6, 6)
    clip = np.arange(46, dtype=np.uint8)[:, None, None, None] * np.ones((1, 6, 6, 3), np.uint8)
    out = adapter(clip)
    assert out.shape == (8, 6, 6, 3) and out[0, 0, 0, 0] == 0 and out[-1, 0, 0, 0] == 45
    assert adapter(clip[:1]).shape == (8, 6, 6, 3)  # one frame is repeated


def test_scan_and_store():
    rng = np.random.default_rng(1)
    examples = [(rng.random((1, 10, 12, 1)).astype(np.float32) * 200, np.eye(4)[i % 2])
                for i in range(40)]
    profile = scan(examples[:20], 4, compressed=False)
    assert (profile.height, profile.width, profile.channels) == (10, 12, 1)
    assert profile.value_max > 1.5 and not profile.multi_label
    assert profile.looks_sorted(0.5)  # classes 2 and 3 never seen
    adapter = FrameAdapter(profile, 1, 10, 12)
    store = ExampleStore(iter(examples), adapter, 4, max_bytes=25 * 120)
    store.fill()
    x, y = store.arrays()
    assert store.truncated and len(x) == 25 and x.dtype == np.uint8 and x.max() > 200


def test_quick_model_learns_and_survives_constant_pixels():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    x = np.zeros((300, 1, 8, 8, 1), np.uint8)
    x[:, 0, :, :4, 0] = (y[:, None, None] * 80 + rng.integers(0, 30, (300, 8, 4)))
    labels = np.eye(4, dtype=np.float32)[y]  # class 3 never appears
    model = QuickModel(load_config("image").quick).fit(x[:200], labels[:200])
    scores = model.predict(x[200:])
    assert np.isfinite(scores).all() and scores.shape == (100, 4)
    assert nauc(labels[200:], scores) > 0.95
