import os

import numpy as np
import pytest

# TensorFlow's C++ logging is noise in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# One pytest process imports both frameworks: torch first is the safe order (TensorFlow
# first, then torch, segfaults; tests/test_model.py checks that our model guards the other).
import torch  # noqa: E402,F401

from autodl.writer import write_dataset  # noqa: E402


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
