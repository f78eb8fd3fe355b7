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


def bootstrap_nauc(labels, scores, weights):
    """NAUC of `scores` under each row of `weights` [B, N] (bootstrap counts per example):
    [B] values, the same statistic as nauc() on each resample, computed without resampling
    (one sort per class). Classes without both a positive and a negative are left out,
    per resample."""
    weights = np.asarray(weights, np.float64)
    aucs = []
    for k in range(labels.shape[1]):
        positive = labels[:, k] > 0.5
        if positive.all() or not positive.any():
            continue
        order = np.argsort(scores[:, k], kind="stable")
        ordered = scores[order, k]
        # Each example's tie group in sorted order: [start, end) positions.
        starts = np.searchsorted(ordered, ordered, side="left")
        ends = np.searchsorted(ordered, ordered, side="right")
        pos_w = weights[:, order] * positive[order]
        neg_w = weights[:, order] * ~positive[order]
        cum = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(neg_w, axis=1)], axis=1)
        below, tied = cum[:, starts], cum[:, ends] - cum[:, starts]
        pairs = pos_w.sum(axis=1) * neg_w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append((pos_w * (below + 0.5 * tied)).sum(axis=1) / pairs)
    if not aucs:
        return np.full(len(weights), np.nan)
    stacked = np.array(aucs)
    usable = np.isfinite(stacked)
    return 2 * np.where(usable, stacked, 0).sum(axis=0) / np.maximum(usable.sum(axis=0), 1) - 1


def log_loss(labels, probabilities, multi_label=False):
    """Mean held-out log loss: cross-entropy of the true class (per-class binary
    cross-entropy for multi-label); it still ranks models whose NAUC has saturated."""
    eps = 1e-7
    p = np.clip(np.asarray(probabilities, np.float64), eps, 1.0 - eps)
    labels = np.asarray(labels) > 0.5
    if multi_label:
        return float(-np.mean(np.where(labels, np.log(p), np.log1p(-p))))
    rows = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(rows[np.arange(len(rows)), labels.argmax(axis=1)])))


def format_score(score):
    """A held-out score for a log line: four decimals, or "none" without held-out data."""
    return "none" if score is None else f"{score:.4f}"
