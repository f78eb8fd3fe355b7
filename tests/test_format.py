"""Write datasets with our writer, read them back (our reader and tf.data), compare."""
import os

import numpy as np
import pytest

from autodl import layout, records
from autodl.tfdata import AutoDLDataset, AutoDLMetadata
from autodl.reader import check_split, read_split
from autodl.writer import write_dataset


ULP = 1e-7  # TensorFlow's uint8 -> float32 scaling and ours differ by at most 1 ulp


def _smooth_image(rng, height, width, channels=3):
    """A gradient with a random tilt: JPEG keeps it close, unlike noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    tilt = rng.uniform(0.5, 2.0, channels)
    image = (yy[..., None] * tilt + xx[..., None] * tilt[::-1]) * 255 / (height + width) / 2
    return np.clip(image, 0, 255).astype(np.uint8)


def _tf_split(split_dir):
    data = AutoDLDataset(split_dir).get_dataset()
    pairs = list(data.as_numpy_iterator())
    return [x for x, _ in pairs], np.stack([y for _, y in pairs])


def _roundtrip(path, name):
    for split in ("train", "test"):
        split_dir = os.path.join(path, f"{name}.data", split)
        assert check_split(split_dir) == AutoDLMetadata(split_dir).size()
        yield split, read_split(split_dir), _tf_split(split_dir)


def test_dense_roundtrip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    train_x = rng.random((12, 5, 7, 2)).astype(np.float32) * 255  # raw 0..255 values kept
    test_x = rng.random((4, 5, 7, 2)).astype(np.float32)
    path = write_dataset(tmp_path / "d", "dense", (list(train_x), np.arange(12) % 4),
                         (list(test_x), [0, 1, 2, 3]), output_dim=4,
                         label_names=["a", "b", "c", "d"])
    for split, (ids, frames, labels), (tf_frames, tf_labels) in _roundtrip(path, "dense"):
        source = train_x if split == "train" else test_x
        assert all(f.shape == (1, 5, 7, 2) for f in frames)
        np.testing.assert_array_equal(np.stack(frames)[:, 0], source)
        np.testing.assert_array_equal(np.stack(tf_frames), np.stack(frames))
        np.testing.assert_array_equal(tf_labels, labels)
        if split == "train":
            assert ids.tolist() == list(range(4, 16))  # train ids continue after test ids
            np.testing.assert_array_equal(labels.argmax(1), np.arange(12) % 4)
        else:
            assert ids.tolist() == [0, 1, 2, 3]
            assert not labels.any()  # test records carry no labels
    solution = np.loadtxt(os.path.join(path, "dense.solution"))
    np.testing.assert_array_equal(solution, np.eye(4))
    with open(os.path.join(path, "dense_label.name")) as f:
        assert f.read().split() == ["a", "b", "c", "d"]
    dataset = AutoDLDataset(os.path.join(path, "dense.data", "train"))
    assert dataset.get_class_labels() == ["a", "b", "c", "d"]
    assert dataset.get_dataset() is dataset.get_dataset()


def test_metadata_api_and_sample_count_in_first_lines(tmp_path):
    x = [np.zeros((9, 11, 3), np.uint8)] * 3
    path = write_dataset(tmp_path / "m", "meta", (x, [0, 1, 2]), (x, [2, 1, 0]),
                         image_format="png")
    split_dir = os.path.join(path, "meta.data", "train")
    with open(os.path.join(split_dir, "metadata.textproto")) as f:
        assert any(line.startswith("sample_count: 3") for line in f.read().splitlines()[:3])
    meta = AutoDLMetadata(split_dir)
    assert meta.get_dataset_name() == split_dir
    assert meta.size() == 3 and meta.get_output_size() == 3 and meta.get_bundle_size() == 1
    assert meta.get_matrix_size(0) == (9, 11) and meta.get_num_channels(0) == 3
    assert meta.get_tensor_shape(0) == (1, 9, 11, 3) and meta.get_tensor_size(0) == (9, 11, 3)
    assert meta.is_compressed(0) and not meta.is_sparse(0)
    assert meta.get_sequence_size() == 1 and meta.get_label_to_index_map() == {}


@pytest.mark.parametrize("image_format, tolerance", [("png", 0.0), ("jpeg", 0.05)])
def test_compressed_variable_sizes_and_multilabel(tmp_path, image_format, tolerance):
    rng = np.random.default_rng(2)
    sizes = [(8, 8), (12, 20), (30, 9)]
    train_x = [_smooth_image(rng, *sizes[i % 3]) for i in range(9)]
    test_x = [_smooth_image(rng, *sizes[i % 3]) for i in range(3)]
    train_y = [[0], [1, 2], [0, 1, 2], [2], [], [1], [0, 2], [1], [0]]
    path = write_dataset(tmp_path / "c", "comp", (train_x, train_y),
                         (test_x, [[0, 1], [2], [1, 2]]), output_dim=3,
                         image_format=image_format, shards=2)
    assert AutoDLMetadata(os.path.join(path, "comp.data", "train")).get_matrix_size() == (-1, -1)
    for split, (ids, frames, labels), (tf_frames, tf_labels) in _roundtrip(path, "comp"):
        source = train_x if split == "train" else test_x
        for frame, tf_frame, original in zip(frames, tf_frames, source):
            assert frame.shape == (1, *original.shape) == tf_frame.shape
            assert np.abs(frame[0] * 255 - original).max() <= tolerance * 255 + 1e-3
            # Both decoders are libjpeg-turbo builds, but not bit-identical ones.
            assert np.abs(tf_frame - frame).max() <= (8 / 255 if tolerance else ULP)
        np.testing.assert_array_equal(tf_labels, labels)
        if split == "train":  # two shards, read interleaved: the written order comes back
            assert [np.flatnonzero(r).tolist() for r in labels] == train_y
    np.testing.assert_array_equal(np.loadtxt(os.path.join(path, "comp.solution")),
                                  [[1, 1, 0], [0, 0, 1], [0, 1, 1]])


def test_video_with_variable_frame_counts(tmp_path):
    rng = np.random.default_rng(3)
    clips = [rng.integers(0, 256, (t, 6, 8, 1), dtype=np.uint8) for t in (1, 5, 12, 3)]
    path = write_dataset(tmp_path / "v", "vid", (clips, [0, 1, 0, 1]), (clips[:2], [1, 0]),
                         image_format="png")
    train_dir = os.path.join(path, "vid.data", "train")
    assert AutoDLMetadata(train_dir).get_sequence_size() == 12
    (_, (_, frames, _), (tf_frames, _)), _ = list(_roundtrip(path, "vid"))
    for frame, tf_frame, clip in zip(frames, tf_frames, clips):
        np.testing.assert_array_equal(np.rint(frame * 255).astype(np.uint8), clip)
        np.testing.assert_allclose(tf_frame, frame, rtol=0, atol=ULP)


def test_image_files_are_stored_as_they_are(tmp_path):
    from PIL import Image
    files = []
    for i in range(4):
        file = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((5, 6), i * 60, np.uint8)).save(file)
        files.append(str(file))
    path = write_dataset(tmp_path / "f", "files", (files, [0, 1, 0, 1]), (files[:2], [0, 1]),
                         image_format="png")
    payload = next(records.iter_records(
        os.path.join(path, "files.data", "train", "sample-files-train.tfrecord")))
    with open(files[0], "rb") as f:
        assert f.read() in payload
    _, frames, _ = read_split(os.path.join(path, "files.data", "train"))
    assert frames[1].shape == (1, 5, 6, 1) and frames[1].max() == pytest.approx(60 / 255)


def test_interrupted_write_leaves_nothing(tmp_path):
    def examples():
        yield np.zeros((4, 4, 1), np.float32)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "broken", "broken", (examples(), [0, 1]), ([], []),
                      output_dim=2)
    assert os.listdir(tmp_path) == []


def test_writer_rejects_bad_input(tmp_path):
    x = [np.zeros((4, 4, 1), np.float32)]
    with pytest.raises(ValueError, match="longer"):  # fewer examples than labels
        write_dataset(tmp_path / "z", "z", (x, [0, 1]), (x, [0]), output_dim=2)
    with pytest.raises(ValueError, match="outside"):
        write_dataset(tmp_path / "a", "a", (x, [5]), (x, [0]), output_dim=2)
    with pytest.raises(TypeError, match="uint8"):
        write_dataset(tmp_path / "b", "b", (x, [0]), (x, [0]), output_dim=2, image_format="png")
    made = write_dataset(tmp_path / "c", "c", (x, [0]), (x, [1]), output_dim=2)
    assert os.stat(made).st_mode & 0o055 == 0o055  # readable by others, not private
    with pytest.raises(FileExistsError):
        write_dataset(tmp_path / "c", "c", (x, [0]), (x, [1]), output_dim=2)


def test_our_records_parse_in_tensorflow_and_back(tmp_path):
    import tensorflow as tf
    from autodl import codec
    payload = codec.encode_record(7, [1, 3], dense_frames=[np.arange(6, dtype=np.float32)])
    parsed = tf.train.SequenceExample.FromString(payload)
    assert parsed.context.feature["id"].int64_list.value == [7]
    assert list(parsed.context.feature["label_index"].int64_list.value) == [1, 3]
    path = tmp_path / "x.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(parsed.SerializeToString())
    assert list(records.iter_records(path)) == [parsed.SerializeToString()]
    records.write_records(tmp_path / "y.tfrecord", [payload, payload])
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "y.tfrecord"))] == \
        [payload, payload]


def test_layout_errors_name_the_file(tmp_path):
    with pytest.raises(layout.DatasetError, match="no \\*.data folder"):
        layout.find_data_dir(tmp_path)
    (tmp_path / "a.data").mkdir()
    (tmp_path / "b.data").mkdir()
    with pytest.raises(layout.DatasetError, match="2 \\*.data folders"):
        layout.find_data_dir(tmp_path)
