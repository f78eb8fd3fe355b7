"""A test submission whose behaviour the environment variable SCRIPTED_BEHAVIOUR selects.

good: three random predictions, then done. never_done: predicts forever, ignoring the budget.
raise_init / raise_train / raise_test: raise there (after one good prediction for train/test).
wrong_shape / nan: a bad prediction after one good one. sleep: one good prediction, then
sleeps far past the budget. torch_after_tf: imports torchvision (the TF-then-torch crash).
metadata_only: like good, but never touches the tf.data datasets (the test set's size comes
from its metadata), so it runs where TensorFlow is absent.
"""
import os
import time

import numpy as np

BEHAVIOUR = os.environ.get("SCRIPTED_BEHAVIOUR", "good")
if BEHAVIOUR == "torch_after_tf":
    import torchvision  # noqa: F401  (segfaults after TensorFlow unless the harness guards)


class Model:
    def __init__(self, metadata):
        if BEHAVIOUR == "raise_init":
            raise RuntimeError("scripted failure in __init__")
        self.classes = metadata.get_output_size()
        self.train_dir = metadata.get_dataset_name()
        self.done_training = False
        self.calls = 0
        self.test_size = None

    def train(self, dataset, remaining_time_budget=None):
        self.calls += 1
        if BEHAVIOUR == "raise_train" and self.calls == 2:
            raise ValueError("scripted failure in train")
        if BEHAVIOUR == "sleep" and self.calls == 2:
            time.sleep(3600)
        if BEHAVIOUR == "never_done":
            time.sleep(0.5)
        elif self.calls >= 3:
            self.done_training = True

    def test(self, dataset, remaining_time_budget=None):
        if self.test_size is None and BEHAVIOUR == "metadata_only":
            from autodl.dataset import AutoDLMetadata  # the harness's package: no TensorFlow
            test_dir = os.path.join(os.path.dirname(self.train_dir), "test")
            self.test_size = AutoDLMetadata(test_dir).size()
        if self.test_size is None:
            self.test_size = sum(1 for _ in dataset)
        if self.calls == 2 and BEHAVIOUR == "raise_test":
            raise KeyError("scripted failure in test")
        if self.calls == 2 and BEHAVIOUR == "wrong_shape":
            return np.zeros((self.test_size, self.classes + 1))
        if self.calls == 2 and BEHAVIOUR == "nan":
            return np.full((self.test_size, self.classes), np.nan)
        return np.random.default_rng(self.calls).random((self.test_size, self.classes))
