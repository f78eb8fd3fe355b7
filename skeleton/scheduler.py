"""The time-budget policy: which candidate gets the next slice of seconds, and when to stop.

Everything that can make the prediction better (the scratch network, the frozen-feature head
and its larger sides, fine-tuning the pretrained trunk) is a Candidate. The scheduler asks
each what it has measured and hands the next slice to the one whose next second is worth
most, the way the score values it:

  1. A step whose value nobody has measured yet (a candidate's first held-out score, a head
     at a larger side) runs first, cheapest first by its estimate, when that cost fits in
     `explore_fraction` of the time left (a first slice, which measures the speed behind
     the estimate, always fits): only measurement tells what a step is worth. Once under
     way, it is finished if it fits in the time left.
  2. Otherwise each candidate's worth is its gain rate: what its best held-out progress
     rose by over the second half of its own time, per second; a candidate behind the best
     model first has to catch up at that rate, which delays its gain. The gain is weighted
     by what is left of the ALC's log time axis when it arrives: a gain now is worth more
     than the same gain later.
  3. A candidate that has stalled (no gain over the second half of its time) is retired,
     and so is one that cannot catch up with the best model in the time left at its rate
     while another candidate can use the time.
  4. A live candidate that is behind gets at least `explore_floor` of the time since it
     started, so a slow starter is not starved while it can still catch up.
  5. When no candidate can improve, the run is done.

Held-out progress is NAUC minus `loss_weight` x the held-out log loss: NAUC leads, and when
it saturates (1.0 on a small held-out set) the loss still tells who is improving.
"""
import dataclasses
import logging
import math
import time
from typing import Callable, Optional

import numpy as np

log = logging.getLogger("skeleton")


@dataclasses.dataclass(frozen=True)
class Offer:
    """A model for the keeper (skeleton/keeper.py): its held-out predictions and how to make
    its test predictions (run at the next test()) and its saved form (run once taken)."""
    source: str
    valid: Optional[np.ndarray]
    predict_test: Callable
    snapshot: Optional[Callable] = None
    refit: bool = False     # the same model on more data: taken unless worse beyond noise
    refresh: bool = False   # refitted on the held-out examples too: new test predictions only
    on_taken: Optional[Callable] = None  # called once the keeper takes it
    succeeds: Optional[str] = None  # the source of a placeholder it is meant to replace


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A held-out evaluation: NAUC and log loss (None without held-out data)."""
    nauc: Optional[float]
    loss: Optional[float] = None


@dataclasses.dataclass
class Report:
    """What one slice of a candidate did."""
    measured: Optional[Measurement] = None
    offers: tuple = ()
    spawned: tuple = ()     # new candidates it makes possible (fine-tuning after the head)
    finished: bool = False  # nothing more it can do
    why: str = ""           # said once in the log when it finishes


class Candidate:
    """The interface the scheduler drives. A subclass sets `name` and implements advance()."""
    name = "candidate"

    def advance(self, seconds, time_left):
        """Work for about `seconds` (never past `time_left`); returns a Report."""
        raise NotImplementedError

    def pending_cost(self, time_left):
        """Estimated seconds until a held-out score of unknown worth (its first, or a new
        step's), or None when its worth is measured. float('inf'): not affordable now."""
        return None

    def start(self):
        """The held-out progress it starts from (a fine-tuned network starts at the head's)."""
        return 0.0


@dataclasses.dataclass
class Track:
    """What the scheduler knows of one candidate."""
    candidate: Candidate
    since: float            # the scheduler's total seconds when it was added
    spent: float = 0.0      # its own seconds
    curve: list = dataclasses.field(default_factory=list)  # [(own seconds, best progress)]
    evaluations: list = dataclasses.field(default_factory=list)  # own seconds of each
    retired: str = ""       # why it gets no more time ("" while live)
    step_spent: float = 0.0  # its seconds on the step of unknown worth under way, if any

    @property
    def name(self):
        return self.candidate.name

    @property
    def best(self):
        return self.curve[-1][1] if self.curve else None

    def best_at(self, seconds):
        """Its best progress by `seconds` of its own time (its start before any score)."""
        value = self.candidate.start()
        for at, progress in self.curve:
            if at > seconds:
                break
            value = progress
        return value


class Scheduler:
    def __init__(self, cfg, budget, clock_start, keeper, clock=time.time,
                 fatal=lambda error: False):
        self.cfg = cfg                  # the schedule section of the configuration
        self.budget = budget            # the whole time budget T (seconds)
        self.clock_start = clock_start
        self.keeper = keeper            # the BestModel: the one judge of what is best
        self.clock = clock
        self.fatal = fatal              # errors that end the slice loop (CUDA failures)
        self.tracks = []
        self.total = 0.0                # seconds given to candidates so far
        self.lead = None                # the Track whose model the keeper holds, if any

    # -- candidates ------------------------------------------------------------------------
    def add(self, candidate):
        self.tracks.append(Track(candidate, since=self.total))
        log.info("scheduler: %s joins", candidate.name)

    def live(self):
        return [t for t in self.tracks if not t.retired]

    def retire(self, track, why):
        if not track.retired:
            track.retired = why
            log.info("scheduler: %s stops: %s", track.name, why)

    def progress(self, measured):
        if measured is None or measured.nauc is None:
            return None
        loss = measured.loss if measured.loss is not None else 0.0
        return measured.nauc - self.cfg.loss_weight * loss

    # -- the policy ------------------------------------------------------------------------
    def weight(self, elapsed):
        """What is left of the ALC's log time axis at `elapsed` seconds (1 at 0, 0 at T)."""
        t0 = self.cfg.alc_t0
        x = math.log(1 + max(0.0, elapsed) / t0) / math.log(1 + self.budget / t0)
        return max(0.0, 1.0 - x)

    def gain_rate(self, track):
        """(progress per own second over the second half of its time, the progress gained
        over that half) of a measured candidate; over all its time while the second half
        holds fewer than `stall_evaluations` evaluations (too few to call it a stall)."""
        half = track.spent / 2
        gained = track.best - track.best_at(half)
        recent = sum(1 for at in track.evaluations if at > half)
        if gained <= self.cfg.min_gain and recent < self.cfg.stall_evaluations:
            half = track.spent
            gained = track.best - track.candidate.start()
        return (gained / half if half > 0 else 0.0), gained

    def value(self, track, best, time_left, now):
        """Expected gain in the best model's progress per second of this candidate, weighted
        by the log time axis; 0 when it cannot improve (and why)."""
        rate, gained = self.gain_rate(track)
        if gained <= self.cfg.min_gain:
            return 0.0, "no gain over the second half of its time"
        gained = max(gained, 1e-9)
        rate = max(rate, 1e-9 / max(track.spent, 1e-9))
        behind = 0.0 if best is None or track is self.lead else max(0.0, best - track.best)
        if behind > 0:
            # At its recent rate kept up (optimistic for a curve that flattens, so a network
            # still speeding up is not stopped early): when it would catch up.
            needed = behind / rate
            if needed > time_left:
                return 0.0, (f"{track.best:.4f} cannot catch up with {best:.4f} in "
                             f"{time_left:.0f} s (about {min(needed, 1e6):.0f} s at its "
                             f"recent rate)")
            return rate * self.weight(now + needed), ""
        return rate * self.weight(now), ""

    def pick(self, best, time_left, now):
        """The Track to run next, or None when no candidate can improve."""
        live = self.live()
        pending = []  # (seconds it needs now, its estimated cost, track)
        for track in live:
            cost = track.candidate.pending_cost(time_left)
            if cost is not None:
                # One slice measures its speed before it is judged: affordable whatever
                # its estimate, and ordered by it.
                now_cost = min(cost, self.cfg.slice_s) if track.spent == 0 else cost
                pending.append((now_cost, cost, track))
        # A step already under way (past its measuring slice) is finished if it fits.
        cheap = [p for p in pending if p[0] <= self.cfg.explore_fraction * time_left
                 or (p[2].step_spent > self.cfg.slice_s and p[0] <= time_left)]
        if cheap:
            return min(cheap, key=lambda p: p[1])[2]
        scored, hopeless = [], []
        waiting = {id(track) for _, _, track in pending}
        for track in live:
            if track.best is None or id(track) in waiting:
                continue
            value, why = self.value(track, best, time_left, now)
            if value <= 0:
                if len(track.evaluations) < self.cfg.stall_evaluations:
                    value = 0.0  # too few evaluations to judge it: it keeps its floor
                elif why.startswith("no gain"):
                    self.retire(track, why)
                    continue
                else:
                    hopeless.append((track, why))
                    continue
            scored.append((value, track))
        if scored or pending:
            # Behind for good while others can use the time: stopped. Alone, it keeps
            # going while it gains: the time has no other use.
            for track, why in hopeless:
                self.retire(track, why)
        else:
            scored = [(0.0, track) for track, _ in hopeless]
        for value, track in scored:  # the exploration floor
            share = track.spent / max(1e-9, self.total - track.since)
            if track is not self.lead and share < self.cfg.explore_floor:
                return track
        if scored:
            return max(scored, key=lambda s: s[0])[1]
        # Nothing measured can improve: a costly step still runs if it fits at all.
        fits = [p for p in pending if p[0] <= time_left]
        return min(fits, key=lambda p: p[1])[2] if fits else None

    # -- one slice -------------------------------------------------------------------------
    def best(self):
        """The best model's progress: its candidate's, or the keeper's score before one."""
        if self.lead is not None and self.lead.best is not None:
            return self.lead.best
        return None if self.keeper.score == -np.inf else self.keeper.score

    def run_slice(self, time_left):
        """Give one slice to the candidate picked and its offers to the keeper. Returns
        (track, whether a better model was taken), or (None, False) when no candidate can
        improve."""
        now = self.clock() - self.clock_start
        track = self.pick(self.best(), time_left, now)
        if track is None:
            return None, False
        seconds = min(self.cfg.slice_s, time_left)
        started = self.clock()
        try:
            report = track.candidate.advance(seconds, time_left)
        except Exception as error:  # noqa: BLE001  (a failing candidate must not end the run)
            if self.fatal(error):
                raise
            track.spent += self.clock() - started
            self.total += self.clock() - started
            track.retired = "failed"
            log.warning("%s failed, carrying on without it: %s: %s", track.name,
                        type(error).__name__, " ".join(str(error).split())[:200])
            return track, False
        used = self.clock() - started
        track.spent += used
        self.total += used
        still = track.candidate.pending_cost(time_left) is not None and not report.finished
        track.step_spent = track.step_spent + used if still else 0.0
        progress = self.progress(report.measured)
        gained = None
        if progress is not None:
            track.evaluations.append(track.spent)
            before = track.best if track.best is not None else track.candidate.start()
            gained = progress - before
            if track.best is None or progress > track.best:
                track.curve.append((track.spent, progress))
        taken = any([self._hand(track, offer) for offer in report.offers])
        for candidate in report.spawned:
            self.add(candidate)
        if report.finished:
            self.retire(track, report.why or "finished")
        log.info("slice: %s %.2f s%s%s", track.name, used,
                 "" if gained is None else f", held-out gain {gained:+.4f}",
                 ", taken" if taken else "")
        return track, taken

    def _hand(self, track, offer):
        """Give an offer to the keeper; its candidate leads once it is taken."""
        if offer.refresh:
            taken = self.keeper.refresh(offer.source, offer.predict_test, offer.snapshot)
        else:
            taken, _ = self.keeper.offer(offer.source, offer.valid, offer.predict_test,
                                         offer.snapshot, refit=offer.refit,
                                         succeeds=offer.succeeds)
        if taken:
            if offer.on_taken is not None:
                offer.on_taken()
            if offer.source in self.keeper.sources:
                self.lead = track
        return taken

    def summary(self):
        """One line: each candidate's seconds, best progress and state."""
        return "; ".join(
            f"{t.name} {t.spent:.0f} s best {'-' if t.best is None else f'{t.best:.4f}'}"
            f"{' (' + t.retired + ')' if t.retired else ''}" for t in self.tracks)
