"""The best model so far: which one it is, how well it validates, its test predictions.

Every model (quick model, frozen-feature head, networks) is offered here with its held-out
predictions and two callables: one that predicts the test set (run at the next test(), so an
offer costs nothing until then) and one that snapshots what saving needs (skeleton/persist.py),
called only when the offer is taken.

A held-out set of a few hundred examples is noisy: a candidate that scores higher by chance
would replace a better model and the learning curve would fall. So a candidate replaces the
best model only if it beats it in at least `select.confidence` of the bootstrap resamples of
the held-out set where the two differ (paired: both are scored on the same resample).
"""
import logging
import time

import numpy as np

from .metrics import bootstrap_nauc, nauc

log = logging.getLogger("skeleton")


class BestModel:
    def __init__(self, clock_start, cfg):
        self.clock_start = clock_start
        self.cfg = cfg            # the select section of the configuration
        self.labels = None        # held-out labels, once the split is known (set_labels)
        self.weights = None       # bootstrap counts [B, N] over the held-out examples
        self.score = -np.inf      # held-out NAUC of the best model (-inf: none yet)
        self.valid = None         # its held-out predictions
        self.source = None        # "quick", "transfer", "net" or "finetune"
        self.prediction = None    # its test predictions, once made
        self.pending = None       # () -> better test predictions, run at the next test()
        self.saved = None         # what saving needs (None: the quick model, or unsavable)
        self.rejected = 0         # candidates that scored higher, within the noise

    def set_labels(self, labels):
        self.labels = np.asarray(labels)
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
        """Take a model if it validates better than the best so far, beyond the held-out
        noise. Without held-out data any later network replaces the quick model and the first
        offer is taken. Returns (taken, held-out score)."""
        score = self.score_of(valid)
        if score is None:
            better = self.score == -np.inf or source != "quick"
        else:
            better = score > self.score and self._confident(valid, source, score)
        if better:
            self.score = score if score is not None else self.score
            self.valid = valid
            self._take(source, predict_test, snapshot)
            log.info("new best: %s (valid NAUC %s) at %.1f s", source, score,
                     time.time() - self.clock_start)
        return better, score

    def _confident(self, valid, source, score):
        """Whether `valid` beats the best model's held-out predictions in enough resamples."""
        if self.valid is None or self.weights is None:
            return True
        gain = (bootstrap_nauc(self.labels, valid, self.weights)
                - bootstrap_nauc(self.labels, self.valid, self.weights))
        # Resamples where both score the same (they differ only on examples left out) say
        # nothing: the share counts the others.
        wins, losses = int(np.sum(gain > 0)), int(np.sum(gain < 0))
        share = wins / max(1, wins + losses)
        if share >= self.cfg["confidence"]:
            return True
        self.rejected += 1
        log.info("%s: valid NAUC %.4f > %.4f (%s) in only %.0f%% of resamples: kept %s",
                 source, score, self.score, self.source, 100 * share, self.source)
        return False

    def refresh(self, predict_test, snapshot=None):
        """The best model itself improved without a new score (refitted on more data)."""
        self._take(self.source, predict_test, snapshot)

    def _take(self, source, predict_test, snapshot):
        self.source = source
        self.pending = predict_test
        self.saved = snapshot() if snapshot is not None else None

    def predict_pending(self):
        """Run the pending prediction, if any; returns True when the predictions changed."""
        if self.pending is None:
            return False
        pending, self.pending = self.pending, None
        self.prediction = np.asarray(pending(), np.float32)
        return True
