"""The scheduler's policy (skeleton/scheduler.py) on scripted candidates and a scripted clock:
no network, no data, every decision visible."""
import logging
import math

import numpy as np
import pytest

from skeleton.config import load_config
from skeleton.keeper import BestModel
from skeleton.scheduler import Candidate, Measurement, Offer, Report, Scheduler

CFG = load_config("image").schedule


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Scripted(Candidate):
    """A candidate whose held-out NAUC after s of its own seconds is curve(s), evaluated
    every `every` own seconds at a cost of `speed` (1: a second of clock per second)."""

    def __init__(self, name, clock, curve, every=2.0, first=None, loss=None, fail_at=None,
                 order=None):
        self.name, self.clock, self.curve, self.every = name, clock, curve, every
        self.order = order          # a list its name is appended to at each slice
        self.own = 0.0
        self.first = first          # seconds before its first score (a step of unknown worth)
        self.loss = loss            # own seconds -> held-out log loss
        self.fail_at = fail_at
        self.next_eval = every if first is None else first
        self.measured = False

    def pending_cost(self, time_left):
        return None if self.measured else self.next_eval - self.own

    def advance(self, seconds, time_left):
        if self.order is not None:
            self.order.append(self.name)
        if self.fail_at is not None and self.own >= self.fail_at:
            raise MemoryError("no room")
        step = min(seconds, self.next_eval - self.own)
        self.own += step
        self.clock.now += step
        if self.own + 1e-9 < self.next_eval:
            return Report()
        self.next_eval += self.every
        self.measured = True
        score = self.curve(self.own)
        loss = self.loss(self.own) if self.loss is not None else None
        return Report(measured=Measurement(score, loss),
                      offers=(Offer(self.name, _valid(score), lambda: np.zeros((1, 2))),))


def _valid(score, n=200):
    """Held-out predictions over n examples of 2 classes whose NAUC is about `score`."""
    labels = np.arange(n) % 2
    rng = np.random.default_rng(0)
    signal = labels * 2.0 - 1.0
    noise = rng.normal(size=n)
    w = max(0.0, min(1.0, score))
    p = 1 / (1 + np.exp(-(w * 4 * signal + (1 - w) * 4 * noise)))
    return np.stack([1 - p, p], axis=1)


def _keeper():
    keeper = BestModel(0.0, load_config("image").select)
    keeper.set_labels(np.eye(2)[np.arange(200) % 2])
    return keeper


def _run(candidates, budget=300.0, cfg=None, clock=None):
    clock = clock or Clock()
    scheduler = Scheduler(CFG.replace(**(cfg or {})), budget, 0.0, _keeper(), clock=clock)
    for c in candidates:
        scheduler.add(c)
    while clock.now < budget:
        track, _ = scheduler.run_slice(budget - clock.now)
        if track is None:
            break
    return scheduler, clock


def _spent(scheduler):
    return {t.name: t.spent for t in scheduler.tracks}


def test_time_goes_to_the_candidate_that_gains():
    clock = Clock()
    rising = Scripted("rising", clock, lambda s: min(0.95, 0.3 + 0.1 * math.log2(1 + s)))
    flat = Scripted("flat", clock, lambda s: 0.4)
    scheduler, _ = _run([rising, flat], clock=clock)
    spent = _spent(scheduler)
    assert spent["rising"] > 10 * spent["flat"], spent
    assert "flat" in {t.name for t in scheduler.tracks if t.retired}


def test_a_candidate_that_stalls_is_stopped_and_the_run_is_done_when_none_can_improve(caplog):
    clock = Clock()
    saturating = Scripted("saturating", clock, lambda s: min(0.8, 0.2 + 0.1 * s))
    with caplog.at_level(logging.INFO, logger="skeleton"):
        scheduler, clock = _run([saturating], clock=clock)
    # It reaches 0.8 after 6 s; with evaluations every 2 s its second half shows no gain
    # after a few more, and the run ends long before the budget.
    assert clock.now < 40, clock.now
    assert "no gain over the second half" in scheduler.tracks[0].retired
    assert "no candidate can improve" not in caplog.text  # the learner says that, not this
    assert scheduler.pick(0.8, 300 - clock.now, clock.now) is None


def test_a_candidate_far_behind_that_cannot_catch_up_is_stopped():
    clock = Clock()
    head = Scripted("head", clock, lambda s: min(0.99, 0.9 + 0.001 * s), first=3.0)
    slow = Scripted("slow", clock, lambda s: 0.05 + 0.002 * s)
    scheduler, _ = _run([head, slow], budget=120.0, clock=clock)
    retired = {t.name: t.retired for t in scheduler.tracks}
    assert "cannot catch up" in retired["slow"], retired


def test_a_slow_starter_alone_keeps_the_time_while_it_gains():
    """Behind a model that cannot improve (the quick model) with nothing else to run: a
    network still on the slow start of its curve keeps training (the time has no other
    use), and overtakes."""
    clock = Clock()
    keeper = _keeper()
    keeper.offer("quick", _valid(0.6), lambda: np.zeros((1, 2)))
    slow = Scripted("slow", clock, lambda s: min(0.95, 0.002 * s * s))  # speeds up
    scheduler = Scheduler(CFG, 120.0, 0.0, keeper, clock=clock)
    scheduler.add(slow)
    while clock.now < 120.0:
        track, _ = scheduler.run_slice(120.0 - clock.now)
        if track is None:
            break
    assert not scheduler.tracks[0].retired or "no gain" in scheduler.tracks[0].retired
    assert scheduler.tracks[0].best > 0.9, scheduler.summary()


def test_the_exploration_floor_keeps_a_slow_starter_alive():
    """A behind candidate whose gain rate is lower than the leader's still gets its floor
    share of the time since it joined; without the floor the leader gets every slice."""
    def picks(floor):
        clock = Clock()
        scheduler = Scheduler(CFG.replace(explore_floor=floor), 300.0, 0.0, _keeper(), clock=clock)
        lead = Scripted("lead", clock, lambda s: 0.9)
        slow = Scripted("slow", clock, lambda s: 0.5)
        for c in (lead, slow):
            c.measured = True
            scheduler.add(c)
        a, b = scheduler.tracks
        scheduler.lead = a
        a.spent, a.curve, a.evaluations = 20.0, [(10.0, 0.4), (20.0, 0.9)], [10.0, 20.0]
        b.spent, b.curve, b.evaluations = 4.0, [(2.0, 0.6), (4.0, 0.7)], [2.0, 4.0]
        scheduler.total = 100.0  # b has had 4 s of the 100 since it joined
        value = scheduler.value(b, 0.9, 100.0, 30.0)
        return [scheduler.pick(0.9, 100.0, 30.0).name, value]
    with_floor, without = picks(CFG.explore_floor), picks(0.0)
    assert with_floor == ["slow", without[1]] and without[1][0] > 0  # live and behind
    assert without[0] == "lead"


def test_steps_of_unknown_worth_run_first_cheapest_first_when_affordable():
    clock = Clock()
    order = []
    cheap = Scripted("cheap", clock, lambda s: 0.5, first=2.0, order=order)
    costly = Scripted("costly", clock, lambda s: 0.7, first=6.0, order=order)
    dear = Scripted("dear", clock, lambda s: 0.9, first=500.0, order=order)  # > the budget
    scheduler, _ = _run([costly, dear, cheap], budget=60.0, clock=clock)
    # The cheapest estimate first, whatever the order they joined in; the dear one gets
    # the slice that measures its speed once the cheaper steps are done, and no more.
    assert order[:5] == ["cheap", "costly", "costly", "costly", "dear"], order
    assert order.count("dear") == 1  # 500 s of 60: never more than its measuring slice


def test_a_cheap_first_score_runs_before_a_dearer_one_that_joined_first():
    """A pretrained head whose first score costs less than a network's first evaluation
    runs first, and the other way round: their estimates decide, not who joined first."""
    for head_first, expected in ((2.5, ["head", "head"]), (9.0, ["network", "network"])):
        clock = Clock()
        order = []
        network = Scripted("network", clock, lambda s: 0.3, first=3.0, order=order)
        head = Scripted("head", clock, lambda s: 0.8, first=head_first, order=order)
        _run([network, head], budget=60.0, clock=clock)
        assert order[:2] == expected, (head_first, order)


def test_a_costly_step_runs_once_nothing_else_can_improve():
    clock = Clock()
    done = Scripted("done", clock, lambda s: 0.6)
    rescan = Scripted("rescan", clock, lambda s: 0.8, first=100.0)  # > explore_fraction x left
    scheduler, _ = _run([done, rescan], budget=150.0, clock=clock)
    assert _spent(scheduler)["rescan"] >= 100.0
    assert scheduler.keeper.sources == ["rescan"]


def test_a_failing_candidate_is_dropped_with_one_line(caplog):
    clock = Clock()
    good = Scripted("good", clock, lambda s: min(0.9, 0.5 + 0.05 * s))
    bad = Scripted("bad", clock, lambda s: 0.3, fail_at=0.0)
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        scheduler, _ = _run([bad, good], budget=60.0, clock=clock)
    lines = [r for r in caplog.records if "bad failed" in r.getMessage()]
    assert len(lines) == 1 and "MemoryError: no room" in lines[0].getMessage()
    assert {t.name: t.retired for t in scheduler.tracks}["bad"] == "failed"
    assert _spent(scheduler)["good"] > 0


def test_a_fatal_error_is_not_swallowed():
    clock = Clock()
    bad = Scripted("bad", clock, lambda s: 0.3, fail_at=0.0)
    scheduler = Scheduler(CFG, 60.0, 0.0, _keeper(), clock=clock,
                          fatal=lambda e: isinstance(e, MemoryError))
    scheduler.add(bad)
    with pytest.raises(MemoryError):
        scheduler.run_slice(60.0)


def test_a_saturated_score_is_a_tie_that_the_held_out_loss_breaks():
    clock = Clock()
    # NAUC 1.0 from the first evaluation: the loss still falls for 40 s, then stays.
    perfect = Scripted("perfect", clock, lambda s: 1.0,
                       loss=lambda s: 0.05 + 0.5 * max(0.0, 1 - s / 40))
    scheduler, clock = _run([perfect], budget=300.0, clock=clock)
    # Not done at the first 1.0: it trains while the loss improves, then stops.
    assert 40 <= clock.now < 150, clock.now


def test_the_same_policy_gives_a_fast_fine_tuning_the_time_on_a_gpu():
    """Scripted speeds as on a GPU: fine-tuning gains ten times as fast per second as the
    head, which stalls; fine-tuning gets most of the budget."""
    clock = Clock()
    head = Scripted("head", clock, lambda s: min(0.85, 0.8 + 0.01 * s), first=2.0)
    finetune = Scripted("finetune", clock, lambda s: min(0.97, 0.5 + 0.05 * math.log2(1 + 10 * s)))
    scheduler, _ = _run([head, finetune], budget=300.0, clock=clock)
    spent = _spent(scheduler)
    assert spent["finetune"] > 3 * spent["head"], spent
    assert {t.name: t.best for t in scheduler.tracks}["finetune"] > 0.95


def test_a_gain_now_is_worth_more_than_later():
    scheduler = Scheduler(CFG, 300.0, 0.0, _keeper())
    assert scheduler.weight(0) == 1.0 and scheduler.weight(300) == pytest.approx(0.0)
    assert scheduler.weight(10) > scheduler.weight(100) > scheduler.weight(200)


def test_a_step_under_way_is_finished_if_it_fits():
    """A costly step, once past its measuring slice, is not put off for a candidate that
    merely gains a little; one not yet under way is."""
    def run(started):
        clock = Clock()
        gaining = Scripted("gaining", clock, lambda s: min(0.9, 0.5 + 0.004 * s))
        rescan = Scripted("rescan", clock, lambda s: 0.95, first=60.0)
        scheduler = Scheduler(CFG, 100.0, 0.0, _keeper(), clock=clock)
        scheduler.add(gaining)
        scheduler.add(rescan)
        for _ in range(12):  # gaining is measured first
            scheduler.run_slice(100.0 - clock.now)
        b = scheduler.tracks[1]
        b.step_spent = 5.0 if started else 0.0
        rescan.own = 5.0 if started else rescan.own
        return scheduler.pick(scheduler.best(), 100.0 - clock.now, clock.now).name
    assert run(started=True) == "rescan"     # 55 s to go fits in the time left: finished
    assert run(started=False) == "gaining"   # 58 s > explore_fraction x time left: put off
