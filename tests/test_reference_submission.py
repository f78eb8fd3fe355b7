"""The reference submission driven directly (no harness) on tiny datasets of every shape."""
import importlib.util
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from sklearn.metrics import roc_auc_score  # noqa: E402

from autodl.writer import write_dataset  # noqa: E402

from conftest import REPO, drive as drive_loop, splits  # noqa: E402

MODEL_PY = os.path.join(REPO, "autodl", "reference_submission", "model.py")


def load_model_module():
    # Loaded from its file, as the harness does: a submission is not a package module.
    spec = importlib.util.spec_from_file_location("reference_model", MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Model = load_model_module().Model


def drive(root, name, budget=60.0, max_rounds=12, model=None):
    """The shared loop on the reference model; it must end by itself (done_training)."""
    train, test = splits(root, name)
    model = model or Model(train.get_metadata())
    predictions = drive_loop(model, train, test, max_rounds, budget)
    assert model.done_training, "done_training never became True"
    return model, predictions


def nauc(solution, prediction):
    """2 * mean AUC - 1 over the columns that hold both classes (the protocol's score)."""
    cols = [k for k in range(solution.shape[1]) if 0 < solution[:, k].sum() < len(solution)]
    return 2 * np.mean([roc_auc_score(solution[:, k], prediction[:, k]) for k in cols]) - 1


def solution_of(root, name):
    return np.loadtxt(os.path.join(root, f"{name}.solution"), ndmin=2)


def blobs(rng, n, classes, shape, scale=1.0):
    """Images where class k brightens its own band of rows: linearly separable."""
    y = rng.integers(0, classes, n)
    x = rng.uniform(0, 0.5, (n, *shape)).astype(np.float32)
    band = shape[-3] // classes
    for i, k in enumerate(y):
        x[i, ..., k * band:(k + 1) * band, :, :] += 0.5
    return [xi * scale for xi in x], [int(k) for k in y]


def test_separable_single_label_reaches_high_auc(tmp_path):
    rng = np.random.default_rng(0)
    # Raw 0..255 values as in the public DENSE MNIST: standardisation must cope.
    root = write_dataset(tmp_path / "easy", "Easy", train=blobs(rng, 300, 4, (24, 20, 3), 255),
                         test=blobs(rng, 100, 4, (24, 20, 3), 255), output_dim=4)
    model, predictions = drive(root, "Easy")
    assert not model.multilabel
    np.testing.assert_allclose(predictions[-1].sum(axis=1), 1.0, rtol=1e-4)
    score = nauc(solution_of(root, "Easy"), predictions[-1])
    print(f"reference model NAUC on the easy set: {score:.4f}")
    assert nauc(solution_of(root, "Easy"), predictions[0]) > 0.9  # one epoch already ranks well
    assert score > 0.98
    assert 2 <= len(predictions) <= 10


def test_multilabel(tmp_path):
    rng = np.random.default_rng(1)

    def make(n):
        labels = rng.random((n, 4)) < 0.4
        x = rng.uniform(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
        for k in range(4):  # class k lights up quadrant k
            r, c = divmod(k, 2)
            x[labels[:, k], r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] += 0.7
        return list(x), [row.astype(np.int8) for row in labels]

    root = write_dataset(tmp_path / "multi", "Multi", train=make(200), test=make(80),
                         output_dim=4)
    model, predictions = drive(root, "Multi")
    assert model.multilabel
    assert np.all((predictions[-1] >= 0) & (predictions[-1] <= 1))
    assert nauc(solution_of(root, "Multi"), predictions[-1]) > 0.95


def test_video_with_variable_length(tmp_path):
    rng = np.random.default_rng(2)

    def make(n):
        y = rng.integers(0, 3, n)
        clips = [np.full((rng.integers(1, 6), 10, 12, 1), k / 2, np.float32) +
                 rng.uniform(0, 0.2, (1, 10, 12, 1)).astype(np.float32) for k in y]
        return clips, list(y)

    root = write_dataset(tmp_path / "video", "Video", train=make(60), test=make(30),
                         output_dim=3)
    model, predictions = drive(root, "Video")
    assert not model.batched  # metadata says T > 1: records are read one at a time
    assert nauc(solution_of(root, "Video"), predictions[-1]) > 0.9


def test_batched_guess_falls_back_when_lengths_differ(tmp_path):
    rng = np.random.default_rng(3)
    clips = [np.ones((t, 6, 6, 1), np.float32) * t for t in rng.integers(1, 4, 40)]
    root = write_dataset(tmp_path / "v", "V", train=(clips, [i % 2 for i in range(40)]),
                         test=(clips[:10], [i % 2 for i in range(10)]), output_dim=2)
    train, _ = splits(root, "V")
    model = Model(train.get_metadata())
    model.batched = True  # a wrong guess (as if metadata claimed single frames)
    drive(root, "V", model=model)


@pytest.mark.parametrize("channels,image_format", [(1, "png"), (3, "jpeg"), (4, "png")])
def test_compressed_variable_size_and_channel_counts(tmp_path, channels, image_format):
    rng = np.random.default_rng(channels)

    def make(n):
        y = rng.integers(0, 2, n)
        images = []
        for k in y:
            h, w = rng.integers(9, 40, 2)
            image = rng.integers(0, 60, (h, w, channels))
            image[: h // 2] += 150 * int(k)  # class 1: bright top half
            images.append(image.astype(np.uint8))
        return images, list(y)

    root = write_dataset(tmp_path / "c", "C", train=make(60), test=make(30), output_dim=2,
                         image_format=image_format)
    train, _ = splits(root, "C")
    assert train.get_metadata().get_matrix_size() == (-1, -1)
    model, predictions = drive(root, "C")
    assert model.x_train.shape[1] == 12 * 12 * channels + 1
    assert nauc(solution_of(root, "C"), predictions[-1]) > 0.9


def test_degenerate_inputs_stay_finite(tmp_path):
    # Constant images (zero variance everywhere), a NaN pixel, classes never seen in training.
    xs = [np.zeros((5, 5, 1), np.float32) for _ in range(20)]
    xs[3][2, 2, 0] = np.nan
    root = write_dataset(tmp_path / "d", "D", train=(xs, [0, 1] * 10),
                         test=(xs[:6], [0, 1, 2, 3, 4, 0]), output_dim=5)
    _, predictions = drive(root, "D")
    assert np.all(np.isfinite(predictions[-1]))


def test_single_class(tmp_path):
    rng = np.random.default_rng(5)
    xs = list(rng.uniform(0, 1, (12, 6, 6, 1)).astype(np.float32))
    root = write_dataset(tmp_path / "one", "One", train=(xs, [0] * 12), test=(xs[:4], [0] * 4),
                         output_dim=1)
    model, predictions = drive(root, "One")
    assert model.multilabel  # one output column: a binary problem, not a one-way softmax
    assert predictions[-1].shape == (4, 1)


def test_small_budget_stops_training(tmp_path):
    rng = np.random.default_rng(6)
    root = write_dataset(tmp_path / "b", "B", train=blobs(rng, 40, 2, (6, 6, 1)),
                         test=blobs(rng, 10, 2, (6, 6, 1)), output_dim=2)
    _, predictions = drive(root, "B", budget=1.0)
    assert len(predictions) == 1  # a first prediction, then done
