"""The best model so far: which model (or blend of models) it is, how well it validates, and
its test predictions.

Every model (quick model, frozen-feature head, networks) is offered here with its held-out
predictions and two callables: one that predicts the test set (run at the next test(), so an
offer costs nothing until then) and one that snapshots what saving needs (skeleton/persist.py),
called only when the model is taken.

A held-out set of a few hundred examples is noisy: a candidate that scores higher by chance
would replace a better model and the learning curve would fall. So a candidate replaces the
best model only if it beats it in at least `select.confidence` of the bootstrap resamples of
the held-out set where the two differ (paired: both are scored on the same resample).
A refit of a model already in use on more data is expected to be better: it is taken unless
it is worse with that confidence. The quick model only holds the place until a trained model
comes: any model that validates higher replaces it.

The best model may be a blend: each candidate is also tried averaged with the best model
(probabilities; a candidate whose source is already in the blend replaces its older self),
and the blend is offered instead when it beats the candidate alone, and the best model,
by a stricter bar (select.blend_confidence).
"""
import logging
import time

import numpy as np

from .metrics import bootstrap_nauc, log_loss, nauc
from .predict import to_probabilities

log = logging.getLogger("skeleton")


class Member:
    """One model in the best model: its share, held-out predictions and score, and its test
    predictions (made at the next test() by `predict` when `test` is None)."""

    def __init__(self, source, valid, score, predict, snapshot, multi_label):
        self.source, self.valid, self.score = source, valid, score
        self.weight = 1.0
        self.predict, self.test = predict, None
        self.snapshot = snapshot   # () -> what saving needs; run once, when it is taken
        self.saved = None
        self.multi_label = multi_label

    def probabilities(self, values):
        """The quick model's ranking scores as probabilities; the others' pass."""
        return to_probabilities(values, self.multi_label) if self.source == "quick" else values

    def replaced_by(self, other):
        other = other.copy()
        other.weight = self.weight
        return other

    def copy(self):
        twin = Member(self.source, self.valid, self.score, self.predict, self.snapshot,
                      self.multi_label)
        twin.weight, twin.test, twin.saved = self.weight, self.test, self.saved
        return twin


def _combine(members, values):
    """members' values (held-out or test predictions) as one: a single model's as they are,
    a blend's as the weighted mean of probabilities."""
    if len(members) == 1:
        return values[0]
    return sum(m.weight * m.probabilities(v) for m, v in zip(members, values))


class BestModel:
    def __init__(self, clock_start, cfg):
        self.clock_start = clock_start
        self.cfg = cfg            # the select section of the configuration
        self.labels = None        # held-out labels, once the split is known (set_labels)
        self.multi_label = False
        self.weights = None       # bootstrap counts [B, N] over the held-out examples
        self.members = []         # the models in the best model (one, or a blend)
        self.score = -np.inf      # its held-out NAUC (-inf: none yet)
        self.valid = None         # its held-out predictions
        self.prediction = None    # its test predictions, once made
        self.stale = False        # the test predictions must be made again at the next test()

    # -- what the learner and persist read -------------------------------------------------
    @property
    def source(self):
        """"quick", "transfer", "net", "finetune", "blend", or None before any model."""
        if not self.members:
            return None
        return self.members[0].source if len(self.members) == 1 else "blend"

    @property
    def sources(self):
        return [m.source for m in self.members]

    @property
    def pending(self):
        """True when the next test() makes new predictions, else None."""
        return True if self.stale else None

    def saved_member(self):
        """The member a model file holds (a file holds one model): the best-scoring one."""
        return max(self.members, key=lambda m: -np.inf if m.score is None else m.score)

    @property
    def saved(self):
        return self.saved_member().saved if self.members else None

    @property
    def savable(self):
        """False when the saved member is a model that cannot be saved (a video head)."""
        member = self.saved_member() if self.members else None
        return member is None or member.snapshot is None or member.saved is not None

    # -- offers ----------------------------------------------------------------------------
    def set_labels(self, labels, multi_label=False):
        self.labels = np.asarray(labels)
        self.multi_label = multi_label
        rng = np.random.default_rng(self.cfg.seed)
        n = len(self.labels)
        if n:
            self.weights = rng.multinomial(n, np.full(n, 1.0 / n), size=self.cfg.bootstrap)

    def score_of(self, valid):
        """Held-out NAUC of held-out predictions (None without a held-out set)."""
        if valid is None or self.labels is None or not len(self.labels):
            return None
        return nauc(self.labels, valid)

    def offer(self, source, valid, predict_test, snapshot=None, refit=False, succeeds=None):
        """Take a model, or its blend with the best model, if it validates better than the
        best so far beyond the held-out noise (refit=True: a model in use, refitted on more
        data, is taken unless it is worse beyond the noise). A placeholder (the quick model,
        or the source named by `succeeds`: the small head holds the larger one's place) is
        replaced by any model that validates higher. Without held-out data any later network
        replaces the quick model and the first offer is taken. Returns (taken, the model's
        own held-out score)."""
        score = self.score_of(valid)
        candidate = Member(source, valid, score, predict_test, snapshot, self.multi_label)
        if score is None:
            if self.score == -np.inf or source != "quick":
                self._take([candidate])
                return True, None
            return False, None
        options = [[candidate]]
        refit = refit and source in self.sources
        # The quick model's ridge scores are no probabilities: no blend (select.blend_quick).
        blendable = self.source != "quick" or self.cfg.blend_quick
        if refit or (self.cfg.blend and blendable and self.members and not self.stale):
            options.append(self._with(candidate))
        pick, pick_score = options[0], score
        if len(options) > 1:
            # A blend must beat the candidate alone beyond the noise too (method.md, select.blend).
            blend_valid = self._valid_of(options[1])
            blend_score = self.score_of(blend_valid)
            if blend_score > score and self._confident(blend_valid, valid, options[1],
                                                        blend_score, quiet=True):
                pick, pick_score = options[1], blend_score
        if refit:
            taken = not self._confident(self._valid_of(pick), self.valid, pick,
                                        pick_score, worse=True)
        elif pick_score == self.score:
            taken = self._breaks_tie(pick)
        elif self.source == "quick" or (succeeds is not None and self.source == succeeds):
            # A placeholder only holds the place: its successor wins by validating higher.
            taken = pick_score > self.score
        else:
            taken = pick_score > self.score and self._confident(
                self._valid_of(pick), self.valid, pick, pick_score)
        if taken:
            self._take(pick)
        return taken, score

    def _breaks_tie(self, members):
        """An equal held-out NAUC (saturated: 1.0 on a small held-out set) is a tie: the
        candidate is taken if its held-out log loss is below select.tie_loss_ratio x the
        best model's."""
        mine = log_loss(self.labels, self._valid_of(members), self.multi_label)
        theirs = log_loss(self.labels, self.valid, self.multi_label)
        taken = mine < self.cfg.tie_loss_ratio * theirs
        log.info("%s ties at valid NAUC %.4f: log loss %.4f against %.4f: %s", _name(members),
                 self.score, mine, theirs, "taken" if taken else "kept the best")
        return taken

    def beats(self, valid):
        """Whether the best model beats a candidate's held-out predictions beyond the noise:
        it scores higher in at least select.confidence of the resamples where the two differ
        (a candidate that merely scores lower may have drawn the harder half of a small
        held-out set). False before any model, or without held-out data."""
        score = self.score_of(valid)
        if score is None or score >= self.score:  # before any model, self.score is -inf
            return False
        beaten = self._confident(valid, self.valid, [], score, worse=True)
        log.info("%s (valid NAUC %.4f) beats %.4f %s the held-out noise", self.source,
                 self.score, score, "beyond" if beaten else "only within")
        return beaten

    def _with(self, candidate):
        """The best model's members with the candidate: in place of its older self, or
        added with weight blend_weight (the others scaled down)."""
        if candidate.source in self.sources:
            return [m.replaced_by(candidate) if m.source == candidate.source else m.copy()
                    for m in self.members]
        share = self.cfg.blend_weight
        members = [m.copy() for m in self.members]
        for m in members:
            m.weight *= 1 - share
        candidate = candidate.copy()
        candidate.weight = share
        return members + [candidate]

    def _valid_of(self, members):
        return _combine(members, [m.valid for m in members])

    def _confident(self, valid, best_valid, members, score, worse=False, quiet=False):
        """Whether `valid` beats (worse=True: loses to) the best model's held-out
        predictions in at least select.confidence of the resamples where they differ
        (select.blend_confidence for a blend to beat it: the stricter bar is for taking a
        blend, and must not make a worse one harder to tell)."""
        if best_valid is None or self.weights is None:
            return not worse
        gain = (bootstrap_nauc(self.labels, valid, self.weights)
                - bootstrap_nauc(self.labels, best_valid, self.weights))
        # Resamples where both score the same (they differ only on examples left out) say
        # nothing: the share counts the others.
        wins, losses = int(np.sum(gain > 0)), int(np.sum(gain < 0))
        share = (losses if worse else wins) / max(1, wins + losses)
        stricter = len(members) > 1 and not worse
        if share >= (self.cfg.blend_confidence if stricter else self.cfg.confidence):
            return True
        if not worse and not quiet:
            log.info("%s: valid NAUC %.4f > %.4f (%s) in only %.0f%% of resamples: kept it",
                     _name(members), score, self.score, _name(self.members), 100 * share)
        return False

    def refresh(self, source, predict_test, snapshot=None):
        """A model in use improved without a new honest score (refitted on the held-out
        examples too): its test predictions replace its old ones. False if not in use."""
        member = next((m for m in self.members if m.source == source), None)
        if member is None:
            return False
        member.predict, member.test, member.snapshot = predict_test, None, snapshot
        member.saved = snapshot() if snapshot is not None else None
        self.stale = True
        return True

    def _take(self, members):
        for m in members:
            if m.test is None and m.snapshot is not None and m.saved is None:
                m.saved = m.snapshot()
        self.members = members
        self.valid = self._valid_of(members)
        score = self.score_of(self.valid)
        if score is not None:
            self.score = score
        self.stale = True
        log.info("new best: %s (valid NAUC %s) at %.1f s", _name(members), score,
                 time.time() - self.clock_start)

    # -- test ------------------------------------------------------------------------------
    def predict_pending(self):
        """Make the test predictions of what changed; True when the predictions changed."""
        if not self.stale:
            return False
        self.stale = False
        for m in self.members:
            if m.test is None:
                m.test = np.asarray(m.predict(), np.float32)
        self.prediction = np.asarray(_combine(self.members, [m.test for m in self.members]),
                                     np.float32)
        return True


def _name(members):
    return " + ".join(f"{m.source} {m.weight:.2f}" if len(members) > 1 else m.source
                      for m in members)
