"""Shared test fixtures: the repository root, the FAST schedule, tiny datasets, and one
drive-the-model loop (ingestion in miniature) for model.py, the Learner and the reference."""
import copy
import json
import os

import numpy as np
import pytest

# TensorFlow's C++ logging is noise in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# One pytest process imports both frameworks: torch first is the safe order (TensorFlow
# first, then torch, segfaults; tests/test_model.py checks that our model guards the other).
import torch  # noqa: E402,F401

from autodl.writer import write_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Short phases and slices, so that a few rounds exercise the whole schedule in seconds.
FAST = {"schedule": {"min_slice_s": 0.5, "reserve_s": 0.0, "slice_s": 0.5},
        "train": {"min_phase_seconds": 1.0, "horizon_epochs": 2, "batch_cpu": 8,
                  "batch_cuda": 8, "test_batch": 16}}


def fast_config(*overrides):
    """FAST with each override merged in (section by section), as a new dict."""
    config = copy.deepcopy(FAST)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **copy.deepcopy(value)}
            else:
                config[key] = copy.deepcopy(value)
    return config


def splits(path, name):
    """(train, test) AutoDLDatasets of the dataset NAME in folder `path`."""
    from autodl.tfdata import AutoDLDataset
    data = os.path.join(path, f"{name}.data")
    return AutoDLDataset(os.path.join(data, "train")), AutoDLDataset(os.path.join(data, "test"))


def drive(model, train, test, rounds=4, budget=30.0, after_round=None, stop=None):
    """The ingestion loop in miniature: train, test (checked: an array of the test set's
    shape, finite), until done_training, `stop(model)` or `rounds` rounds. `model` is a
    Model or a Learner; `train`/`test` are AutoDLDatasets, or None for a Learner that reads
    its records itself. `after_round(model)` runs after each test. Returns the predictions."""
    predictions = []
    for _ in range(rounds):
        model.train(train.get_dataset() if train is not None else None, budget)
        p = model.test(test.get_dataset() if test is not None else None, budget)
        assert isinstance(p, np.ndarray) and np.isfinite(p).all()
        if test is not None:
            meta = test.get_metadata()
            assert p.shape == (meta.size(), meta.get_output_size())
        predictions.append(p)
        if after_round is not None:
            after_round(model)
        if model.done_training or (stop is not None and stop(model)):
            break
    return predictions


@pytest.fixture
def our_model(monkeypatch):
    """load(config=FAST) -> model.py's Model class, with AUTOCLINT_CONFIG set to `config`
    (read when a Model is built)."""
    monkeypatch.syspath_prepend(REPO)

    def load(config=FAST):
        monkeypatch.setenv("AUTOCLINT_CONFIG", json.dumps(config))
        import model
        return model.Model
    return load


@pytest.fixture
def tiny_dataset(tmp_path):
    """A 3-class DENSE set where class k has brightness k: easy for any model."""
    def make(name="tiny", n_train=60, n_test=30, image_format="dense", seed=0, **kwargs):
        rng = np.random.default_rng(seed)

        def split(n):
            y = np.arange(n) % 3
            x = (y[:, None, None, None] / 2.0 + rng.normal(0, 0.05, (n, 6, 6, 1)))
            x = np.clip(x, 0, 1).astype(np.float32)
            if image_format != "dense":
                x = (x * 255).astype(np.uint8)
            return list(x), y

        return write_dataset(tmp_path / name, name, split(n_train), split(n_test),
                             output_dim=3, image_format=image_format, **kwargs)
    return make
