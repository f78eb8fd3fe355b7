"""The learner (skeleton/learner.py): the adapter between model.py's train()/test() calls and
the scheduler. Driven here with a scripted scheduler and an injected clock: when a train()
call returns, and when the run says it is done."""
import types

import pytest

from skeleton.config import load_config
from skeleton.learner import Learner


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class ScriptedScheduler:
    """run_slice() takes `seconds` of the clock per slice and reports the scripted outcomes:
    True (a better model was taken), False (not), or None (no candidate can improve)."""

    def __init__(self, clock, outcomes, seconds=2.0):
        self.clock, self.outcomes, self.seconds = clock, list(outcomes), seconds
        self.slices = 0
        self.time_left = []

    def run_slice(self, time_left):
        self.time_left.append(time_left)
        outcome = self.outcomes.pop(0) if self.outcomes else False
        if outcome is None:
            return None, False
        self.clock.now += self.seconds
        self.slices += 1
        return object(), outcome

    def summary(self):
        return "scripted"


def _learner(outcomes, last_test_at=10.0, seconds=2.0):
    clock = Clock()
    metadata = types.SimpleNamespace(get_output_size=lambda: 3, size=lambda: 100)
    learner = Learner(metadata, clock_start=clock.now, clock=clock)
    learner.cfg = load_config("image")
    learner.scheduler = ScriptedScheduler(clock, outcomes, seconds)
    clock.now += last_test_at
    learner.last_test_at = last_test_at
    return learner, clock


def _train(learner, clock, remaining):
    learner.deadline = clock.now + remaining
    learner._train_slices()


def test_a_better_model_goes_out_at_once():
    learner, clock = _learner([False, False, True, False])
    _train(learner, clock, remaining=300.0)
    assert learner.scheduler.slices == 3 and not learner.done_training


def test_without_a_better_model_it_returns_on_the_log_grid_of_tests():
    sched = load_config("image").schedule
    learner, clock = _learner([False] * 100, last_test_at=10.0)
    _train(learner, clock, remaining=300.0)
    test_due = max(10.0 * sched.test_ratio, 10.0 + sched.min_slice_s)
    give_up = test_due + (test_due - 10.0)
    # It returned at the first slice that ended past give_up, not before.
    assert learner.elapsed() >= give_up > learner.elapsed() - learner.scheduler.seconds
    assert not learner.done_training


def test_done_when_no_candidate_can_improve(caplog):
    learner, clock = _learner([False, None])
    with caplog.at_level("INFO", logger="skeleton"):
        _train(learner, clock, remaining=300.0)
    assert learner.done_training and learner.scheduler.slices == 1
    assert "no candidate can improve: done (scripted)" in caplog.text


def test_a_reserve_for_the_last_tests_is_kept_and_grows_with_their_cost():
    sched = load_config("image").schedule
    learner, clock = _learner([False] * 100, last_test_at=1e6)  # no test due: runs on
    learner.test_seconds = 3.0
    reserve = sched.reserve_s + 2 * 3.0
    _train(learner, clock, remaining=40.0)
    assert learner.done_training  # the time left reached the reserve
    assert all(t <= 40.0 - reserve for t in learner.scheduler.time_left)
    assert learner._time_left() <= reserve < learner._time_left() + learner.scheduler.seconds
    learner, clock = _learner([False] * 100, last_test_at=1e6)
    learner.test_seconds = 10.0  # slower predictions: more is kept back
    _train(learner, clock, remaining=40.0)
    assert learner._time_left() == pytest.approx(40.0 - 2.0 * learner.scheduler.slices)
    assert learner._time_left() <= sched.reserve_s + 20.0
