"""Validation score: the same NAUC the harness computes (2 * AUC - 1 over usable columns)."""
# Twin of autodl/nauc.py (the zip ships skeleton/ only); tests/test_twins.py checks they agree.
import numpy as np


def nauc(labels, scores):
    aucs = []
    for k in range(labels.shape[1]):
        positive = labels[:, k] > 0.5
        n_pos = int(positive.sum())
        n_neg = len(positive) - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        # Mann-Whitney U with average ranks for ties.
        values, inverse, counts = np.unique(scores[:, k], return_inverse=True,
                                            return_counts=True)
        first_rank = np.cumsum(counts) - counts + 1
        ranks = (first_rank + (counts - 1) / 2.0)[inverse]
        aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return 2 * float(np.mean(aucs)) - 1 if aucs else None
