"""The best model so far: which one it is, how well it validates, its test predictions.

Every model (quick model, frozen-feature head, networks) is offered here with its held-out
predictions and two callables: one that predicts the test set (run at the next test(), so an
offer costs nothing until then) and one that snapshots what saving needs (skeleton/persist.py),
called only when the offer is taken.

A held-out set of a few hundred examples is noisy: a candidate that scores higher by chance
would replace a better model and the learning curve would fall. So a candidate replaces the
best model only if it beats it in at least `select.confidence` of the bootstrap resamples of
the held-out set where the two differ (paired: both are scored on the same resample).
Each candidate is also tried blended with the best model (their probabilities averaged):
the blend is offered instead when it validates higher than the candidate alone.
"""
import logging
import time

import numpy as np

from .metrics import bootstrap_nauc, nauc
from .predict import to_probabilities

log = logging.getLogger("skeleton")


class BestModel:
    def __init__(self, clock_start, cfg):
        self.clock_start = clock_start
        self.cfg = cfg            # the select section of the configuration
        self.labels = None        # held-out labels, once the split is known (set_labels)
        self.multi_label = False
        self.weights = None       # bootstrap counts [B, N] over the held-out examples
        self.score = -np.inf      # held-out NAUC of the best model (-inf: none yet)
        self.valid = None         # its held-out predictions
        self.source = None        # "quick", "transfer", "net", "finetune" or "blend"
        self.prediction = None    # its test predictions, once made
        self.pending = None       # () -> better test predictions, run at the next test()
        self.saved = None         # what saving needs (None: the quick model's arrays do)
        self.savable = True       # False for a model that cannot be saved (video heads)
        self.rejected = 0         # candidates that scored higher, within the noise

    def set_labels(self, labels, multi_label=False):
        self.labels = np.asarray(labels)
        self.multi_label = multi_label
        rng = np.random.default_rng(self.cfg["seed"])
        n = len(self.labels)
        if n:
            self.weights = rng.multinomial(n, np.full(n, 1.0 / n), size=self.cfg["bootstrap"])

    def score_of(self, valid):
        """Held-out NAUC of held-out predictions (None without a held-out set)."""
        if valid is None or self.labels is None or not len(self.labels):
            return None
        return nauc(self.labels, valid)

    def offer(self, source, valid, predict_test, snapshot=None):
        """Take a model, or its blend with the best model, if it validates better than the
        best so far beyond the held-out noise. Without held-out data any later network
        replaces the quick model and the first offer is taken. Returns (taken, the model's
        own held-out score)."""
        score = self.score_of(valid)
        if score is None:
            if self.score == -np.inf or source != "quick":
                self._take(_Candidate(source, valid, None, predict_test, snapshot))
                return True, None
            return False, None
        candidate = _Candidate(source, valid, score, predict_test, snapshot)
        blend = self._blend(candidate)
        pick = candidate if blend is None or candidate.score >= blend.score else blend
        if pick.score > self.score and self._confident(pick):
            self._take(pick)
            return True, score
        return False, score

    def _blend(self, candidate):
        """The average of the best model's and the candidate's probabilities (half each), as
        a candidate of its own; None when blending is off or the best model's test
        predictions are not made yet."""
        if not self.cfg["blend"] or self.valid is None or self.pending is not None \
                or self.prediction is None:
            return None
        share = self.cfg["blend_weight"]
        old_source, old_prediction = self.source, self.prediction
        valid = ((1 - share) * self._probabilities(self.valid, old_source)
                 + share * self._probabilities(candidate.valid, candidate.source))

        def predict_test():
            return ((1 - share) * self._probabilities(old_prediction, old_source)
                    + share * self._probabilities(candidate.predict_test(), candidate.source))
        # Saving keeps the stronger member (a file holds one model).
        if candidate.score >= self.score:
            snapshot, savable = candidate.snapshot, None
        else:
            snapshot, savable = (lambda saved=self.saved: saved), self.savable
        return _Candidate("blend", valid, self.score_of(valid), predict_test, snapshot,
                          f"{old_source} + {candidate.source}", savable)

    def _probabilities(self, values, source):
        """The quick model's ranking scores as probabilities; the others' pass."""
        return to_probabilities(values, self.multi_label) if source == "quick" else values

    def _confident(self, pick):
        """Whether `pick` beats the best model's held-out predictions in enough resamples."""
        if self.valid is None or self.weights is None:
            return True
        gain = (bootstrap_nauc(self.labels, pick.valid, self.weights)
                - bootstrap_nauc(self.labels, self.valid, self.weights))
        # Resamples where both score the same (they differ only on examples left out) say
        # nothing: the share counts the others.
        wins, losses = int(np.sum(gain > 0)), int(np.sum(gain < 0))
        share = wins / max(1, wins + losses)
        if share >= self.cfg["confidence"]:
            return True
        self.rejected += 1
        log.info("%s: valid NAUC %.4f > %.4f (%s) in only %.0f%% of resamples: kept %s",
                 pick.name, pick.score, self.score, self.source, 100 * share, self.source)
        return False

    def refresh(self, predict_test, snapshot=None):
        """The best model itself improved without a new score (refitted on more data)."""
        self._take(_Candidate(self.source, self.valid, self.score, predict_test, snapshot),
                   announce=False)

    def _take(self, pick, announce=True):
        if pick.score is not None:
            self.score = pick.score
        self.valid = pick.valid
        self.source = pick.source
        self.pending = pick.predict_test
        self.saved = pick.snapshot() if pick.snapshot is not None else None
        self.savable = (pick.savable if pick.savable is not None
                        else pick.snapshot is None or self.saved is not None)
        if announce:
            log.info("new best: %s (valid NAUC %s) at %.1f s", pick.name, pick.score,
                     time.time() - self.clock_start)

    def predict_pending(self):
        """Run the pending prediction, if any; returns True when the predictions changed."""
        if self.pending is None:
            return False
        pending, self.pending = self.pending, None
        self.prediction = np.asarray(pending(), np.float32)
        return True


class _Candidate:
    """A model on offer: its held-out predictions and score, how to predict the test set
    and how to snapshot it for saving (savable: None = the snapshot decides)."""

    def __init__(self, source, valid, score, predict_test, snapshot, name=None, savable=None):
        self.source, self.valid, self.score = source, valid, score
        self.predict_test, self.snapshot = predict_test, snapshot
        self.name = name or source
        self.savable = savable
