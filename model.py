"""AutoDL submission: the AutoDL Model interface over skeleton/ (see README).

Kept light at import: the clock is running, so torch is only imported once the first
prediction (from a torch-free quick model) is out.
"""
import logging
import os
import sys
import time

_CLOCK_START = time.time()  # the closest we can see to the harness's clock start
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads collapse under load
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from skeleton.learner import Learner  # noqa: E402

if os.environ.get("AUTOCLINT_VERBOSE"):
    logging.basicConfig(level=logging.INFO, format="[model %(relativeCreated)7.0f ms] %(message)s")


class Model:
    def __init__(self, metadata):
        self.learner = Learner(metadata, _CLOCK_START)

    @property
    def done_training(self):
        return self.learner.done_training

    def train(self, dataset, remaining_time_budget=None):
        self.learner.train(dataset, remaining_time_budget)

    def test(self, dataset, remaining_time_budget=None):
        return self.learner.test(dataset, remaining_time_budget)
