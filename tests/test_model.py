"""model.py end to end on odd tiny datasets: every one must reach a valid prediction."""
import logging
import os

import numpy as np
import pytest

from autodl.nauc import nauc
from autodl.writer import write_dataset
from conftest import FAST, REPO, drive, fast_config, splits


@pytest.fixture
def run_model(our_model):
    Model = our_model(FAST)

    def run(path, name, rounds=4, budget=30.0):
        train, test = splits(path, name)
        m = Model(train.get_metadata())
        return m, drive(m, train, test, rounds, budget)
    return run


def _images(rng, n, shape, classes, dtype=np.uint8):
    y = np.arange(n) % classes
    x = rng.integers(0, 60, (n, *shape)).astype(dtype)
    x[..., : shape[1] // 2, :] += (y * (150 // classes))[:, None, None, None].astype(dtype)
    return list(x), y


@pytest.mark.slow
def test_learns_an_easy_set_and_improves(tmp_path, run_model):
    rng = np.random.default_rng(0)
    train, test = _images(rng, 120, (12, 12, 1), 3), _images(rng, 60, (12, 12, 1), 3)
    path = write_dataset(tmp_path / "e", "e", train, test, output_dim=3, image_format="png")
    model, predictions = run_model(path, "e", rounds=5)
    solution = np.loadtxt(os.path.join(path, "e.solution"))
    assert nauc(solution, predictions[0]) > 0.8  # the quick model already ranks well
    assert nauc(solution, predictions[-1]) > 0.9
    assert model.learner.trainer is not None  # the network was trained


@pytest.mark.slow
def test_each_phase_is_planned_once_and_only_the_first_re_planned(tmp_path, our_model, caplog):
    rng = np.random.default_rng(1)
    train, test = _images(rng, 120, (12, 12, 1), 3), _images(rng, 30, (12, 12, 1), 3)
    path = write_dataset(tmp_path / "p", "p", train, test, output_dim=3, image_format="png")
    # No transfer, no early end on a saturated held-out set: phases follow each other.
    Model = our_model(fast_config({"transfer": {"enabled": False},
                                   "schedule": {"min_gain": -1.0}}))
    data, test_data = splits(path, "p")
    model = Model(data.get_metadata())
    with caplog.at_level(logging.INFO, logger="skeleton"):
        drive(model, data, test_data, rounds=30, budget=60.0,
              stop=lambda m: m.learner.phase_count >= 3)
    assert model.learner.phase_count >= 3, caplog.text
    prefix = "scratch network "
    lines = [r.getMessage()[len(prefix):] for r in caplog.records
             if r.getMessage().startswith(prefix + "phase ")]
    # The first plan guesses the speed; once it is measured the phase is re-planned. Later
    # phases start with the measured speed: one plan each.
    assert [line.split(":")[0] for line in lines[:2]] == ["phase 1", "phase 1 re-planned"]
    for n in range(2, model.learner.phase_count + 1):
        assert [line.split(":")[0] for line in lines].count(f"phase {n}") == 1, lines
    assert sum("re-planned" in line for line in lines) == 1, lines


@pytest.mark.slow
@pytest.mark.parametrize("case", ["zero_variance", "one_class", "absent_classes",
                                  "four_channels", "tiny_8x8", "huge_2000x3000",
                                  "test_larger_than_train", "multi_label", "dense_raw_range"])
def test_odd_image_sets_reach_a_valid_prediction(tmp_path, run_model, case):
    rng = np.random.default_rng(1)
    classes, fmt, shape, n_train, n_test = 3, "png", (10, 10, 3), 30, 12
    if case == "four_channels":
        shape = (10, 10, 4)
    if case == "tiny_8x8":
        shape = (8, 8, 1)
    if case == "test_larger_than_train":
        n_train, n_test = 12, 80
    train, test = _images(rng, n_train, shape, classes), _images(rng, n_test, shape, classes)
    if case == "zero_variance":
        train = ([np.zeros(shape, np.uint8)] * n_train, train[1])
    if case == "one_class":
        train = (train[0], [0] * n_train)
    if case == "absent_classes":
        classes = 6  # classes 3..5 never appear in train
    if case == "huge_2000x3000":
        big = np.zeros((2000, 3000, 3), np.uint8)
        big[:1000] = 200
        train = ([big] * 4 + train[0][:6], list(train[1][:10]))
        test = ([big] * 2, [0, 1])
    if case == "multi_label":
        train = (train[0], [[k % 3, (k + 1) % 3] if k % 2 else [k % 3] for k in range(n_train)])
    if case == "dense_raw_range":
        fmt = "dense"
        train = ([x.astype(np.float32) * 40 - 500 for x in train[0]], train[1])
        test = ([x.astype(np.float32) * 40 - 500 for x in test[0]], test[1])
    path = write_dataset(tmp_path / case, "odd", train, test, output_dim=classes,
                         image_format=fmt)
    run_model(path, "odd", rounds=3)


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [(1, 1, 1), (300, 4, 9), (2, 17, 5)])
def test_videos_of_any_length(tmp_path, run_model, lengths):
    rng = np.random.default_rng(2)
    clips = [rng.integers(0, 255, (lengths[i % 3], 16, 16, 1), dtype=np.uint8)
             for i in range(18)]
    path = write_dataset(tmp_path / "v", "v", (clips[:12], np.arange(12) % 2),
                         (clips[12:], np.arange(6) % 2), output_dim=2, image_format="png")
    run_model(path, "v", rounds=3)


@pytest.mark.slow
def test_torch_after_tensorflow_does_not_crash(tmp_path):
    import subprocess
    import sys
    script = ("import tensorflow, sys; sys.path.insert(0, %r)\n"
              "from skeleton.compat import import_torch\n"
              "torch = import_torch(); import torchvision\n"
              "print(torchvision.models.resnet18().eval()(torch.zeros(1, 3, 32, 32)).shape)") % REPO
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch.Size([1, 1000])" in result.stdout
