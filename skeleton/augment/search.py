"""Light Fast AutoAugment: pick augmentation policies by density matching, without retraining.

The already trained network scores the held-out images, once as they are and once under each
random draw of a few sub-policies from the pool. A draw whose images the network still scores
about as well as the originals keeps the data where the network has learned it (the density
matching argument of Fast AutoAugment); the best such draws are merged into the training
augmentation for the next phase. The original kept only draws at least as good as the plain
images; on a trained network almost none are, so the bar is a ratio of errors,
max_error_ratio (1.0: the original rule). The search stops at its deadline, whatever it has tried by then.
"""
import logging
import time
from typing import NamedTuple

import numpy as np

from .policy import PolicyAugmenter

log = logging.getLogger("skeleton")


class Draw(NamedTuple):
    score: float
    subpolicies: tuple


class SearchResult(NamedTuple):
    baseline: float          # the score of the un-augmented held-out images
    kept: list               # the draws merged, best first
    tried: int               # how many draws were scored before the deadline
    seconds: float

    @property
    def subpolicies(self):
        """The merged policy: every sub-policy of the kept draws, once each, best draw first."""
        merged = []
        for draw in self.kept:
            merged.extend(s for s in draw.subpolicies if s not in merged)
        return merged


def search_policies(score, pool, cfg, deadline, seed=0, clock=time.time):
    """score(transform) -> the held-out score with `transform` (None: no augmentation) applied
    to the float image batches; cfg: the `augment` section of the config; clock: seconds,
    against `deadline`."""
    start = clock()
    baseline = score(None)
    if baseline is None:  # no held-out class with both positives and negatives: no ranking
        log.info("augment search: the held-out set cannot be scored (NAUC undefined), skipped")
        return SearchResult(None, [], 0, clock() - start)
    rng = np.random.default_rng(seed)
    draws = []
    per_draw = min(cfg.subpolicies_per_draw, len(pool))
    for i in range(cfg.draws):
        if clock() >= deadline:
            break
        picked = tuple(pool[j] for j in rng.choice(len(pool), per_draw, replace=False))
        # The same images for every draw and a seed per draw: scores differ only by policy.
        value = score(PolicyAugmenter(picked, cfg.ranges, seed=seed * 1_000_003 + i))
        if value is not None:
            draws.append(Draw(value, picked))
    # A draw passes when its error (1 - score) is at most max_error_ratio x the clean error:
    # 1.0 is the original's "at least as good as the plain images". Stable sort: among equal
    # scores the earlier draw wins, so a seed fixes the result.
    bar = 1.0 - cfg.max_error_ratio * (1.0 - baseline)
    passing = sorted((d for d in draws if d.score >= min(bar, baseline)), key=lambda d: -d.score)
    result = SearchResult(baseline, passing[:cfg.top_draws], len(draws), clock() - start)
    scores = np.array([d.score for d in draws]) if draws else np.full(1, np.nan)
    log.info("augment search: baseline %.4f, %d draws in %.1f s (scores: median %.4f, best "
             "%.4f), %d pass %.4f, kept %d", baseline, result.tried, result.seconds,
             np.median(scores), scores.max(), len(passing), min(bar, baseline), len(result.kept))
    for draw in result.kept:
        log.info("augment search: kept %.4f: %s", draw.score,
                 " | ".join(str(s) for s in draw.subpolicies))
    return result
