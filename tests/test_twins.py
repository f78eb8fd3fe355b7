"""Harness code that the submission keeps a twin of (a submission zip ships skeleton/ only,
not autodl/): the two must agree. NAUC (autodl/nauc.py vs skeleton/metrics.py) and record
reading and frame decoding (autodl/codec.py vs skeleton/data/wire.py + decode.py)."""
import os

import numpy as np
import pytest

from autodl import codec, layout, records
from autodl.nauc import nauc as harness_nauc
from autodl.reader import channel_count
from autodl.writer import write_dataset
from skeleton.data import wire
from skeleton.data.decode import decode_image
from skeleton.metrics import nauc as model_nauc

ZOO = os.environ.get("AUTODL_ZOO", "/tmp/zoo")


@pytest.mark.parametrize("seed", range(5))
def test_nauc_twins_agree_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n, k = 50 + 10 * seed, 2 + seed
    labels = np.eye(k)[rng.integers(0, k, n)]
    scores = rng.normal(size=(n, k))
    assert model_nauc(labels, scores) == pytest.approx(harness_nauc(labels, scores), abs=1e-12)


def test_nauc_twins_agree_on_ties_multilabel_and_single_value_columns():
    rng = np.random.default_rng(1)
    labels = (rng.random((40, 5)) < 0.4).astype(float)  # multi-label: rows with 0..5 labels
    labels[:, 3] = 1.0  # a column with one value: both drop it
    scores = rng.integers(0, 3, (40, 5)).astype(float)  # many ties
    assert model_nauc(labels, scores) == pytest.approx(harness_nauc(labels, scores), abs=1e-12)
    constant = np.zeros((40, 5))
    assert model_nauc(labels, constant) == pytest.approx(harness_nauc(labels, constant))
    # No usable column: the harness scores 0, the model says "no score" (None).
    assert harness_nauc(np.ones((4, 2)), np.zeros((4, 2))) == 0.0
    assert model_nauc(np.ones((4, 2)), np.zeros((4, 2))) is None


def _agree(split_dir, limit=200):
    """Every record's labels and frames, read by both, are the same."""
    spec = layout.read_metadata(split_dir)
    matrix = spec.matrix_spec[0]
    rows, cols, channels = matrix.row_count, matrix.col_count, channel_count(matrix)
    checked = 0
    for path in wire.record_files(split_dir):
        for payload in records.iter_records(path):
            example = codec.parse_record(payload)
            expected_labels = codec.record_labels(example, spec.output_dim)
            labels, frames = wire.parse_record(payload)
            got = np.zeros(spec.output_dim, np.float32)
            got[list(labels)] = 1.0
            np.testing.assert_array_equal(got, expected_labels)
            expected = codec.record_frames(example, rows, cols, channels)
            if frames and isinstance(frames[0], bytes):
                ours = np.stack([decode_image(b, channels) for b in frames])
                np.testing.assert_array_equal(ours.astype(np.float32) / np.float32(255.0),
                                              expected)
                for b in frames:  # the two decoders, byte for byte
                    np.testing.assert_array_equal(decode_image(b, channels),
                                                  codec.decode_frame(b, channels))
            else:
                ours = np.stack(frames).reshape(expected.shape)
                np.testing.assert_array_equal(ours.astype(np.float32), expected)
            checked += 1
            if checked >= limit:
                return checked
    return checked


@pytest.mark.parametrize("image_format", ["dense", "png", "jpeg"])
def test_record_reading_twins_agree_on_written_records(tmp_path, image_format):
    rng = np.random.default_rng(0)
    if image_format == "dense":
        clips = [rng.random((2, 5, 4, 1)).astype(np.float32) for _ in range(6)]
    else:
        clips = [rng.integers(0, 256, (t, 9, 7, 3), dtype=np.uint8) for t in (1, 2, 3) * 2]
    labels = [[0], [1, 2], [2], [], [0, 1], [1]]
    path = write_dataset(tmp_path / "d", "d", (clips, labels), (clips[:3], [0, 1, 2]),
                         output_dim=3, image_format=image_format)
    for split in ("train", "test"):
        assert _agree(os.path.join(path, "d.data", split)) > 0


@pytest.mark.parametrize("name", ["munster", "animals", "solar", "mosaic", "moving", "digits"])
def test_record_reading_twins_agree_on_the_zoo(name):
    dataset = os.path.join(ZOO, name)
    if not os.path.isdir(dataset):
        pytest.skip(f"{dataset} not built (python -m autodl.datasets build all --out {ZOO})")
    data_dir = layout.find_data_dir(dataset)
    assert _agree(layout.split_dir(data_dir, "train"), limit=50) == 50
