"""The AutoDL scores: NAUC per prediction, accuracy for one-hot tasks, and ALC over time.

Twin: skeleton/metrics.py computes the same NAUC inside the submission (a submission zip
ships skeleton/ only, not the harness); tests/test_twins.py checks that the two agree.
"""
import math

import numpy as np


def tied_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties sharing the average of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Each run of equal values [start, end) gets rank (start + end + 1) / 2.
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(values)]))
    run_ranks = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def column_aucs(solution: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """AUC of each class column; NaN for columns whose solution is all 0 or all 1."""
    solution = np.asarray(solution) > 0.5
    prediction = np.asarray(prediction, np.float64)
    aucs = np.full(solution.shape[1], np.nan)
    for k in range(solution.shape[1]):
        positives = solution[:, k]
        n_pos = int(positives.sum())
        n_neg = len(positives) - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        rank_sum = tied_ranks(prediction[:, k])[positives].sum()
        aucs[k] = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return aucs


def nauc(solution: np.ndarray, prediction: np.ndarray) -> float:
    """Normalised AUC, 2 * mean AUC - 1 over the columns that hold both labels (0 if none)."""
    aucs = column_aucs(solution, prediction)
    valid = aucs[~np.isnan(aucs)]
    return float(2.0 * valid.mean() - 1.0) if valid.size else 0.0


def is_one_hot(solution: np.ndarray) -> bool:
    return bool(np.all(np.asarray(solution).sum(axis=1) == 1))


def accuracy(solution: np.ndarray, prediction: np.ndarray) -> float:
    """Mean share put on the true class, each row divided by the sum of its absolute values
    (the kit's definition): signed, in [-1, 1]; an all-zero row counts as uniform."""
    scores = np.asarray(prediction, np.float64)
    # Scaled by the row's largest magnitude first, so that huge values cannot overflow.
    peak = np.abs(scores).max(axis=1, keepdims=True)
    scores = scores / np.where(peak > 0, peak, 1.0)
    totals = np.abs(scores).sum(axis=1, keepdims=True)
    uniform = np.full_like(scores, 1.0 / scores.shape[1])
    scores = np.where(totals > 0, scores / np.where(totals > 0, totals, 1.0), uniform)
    return float((np.asarray(solution) * scores).sum() / len(scores))


def transform_time(t, time_budget: float, t0: float = 60.0):
    """Log-scaled time in [0, 1]: early predictions weigh more."""
    return np.log1p(np.asarray(t, np.float64) / t0) / math.log1p(time_budget / t0)


def alc(timestamps, scores, time_budget: float, t0: float = 60.0) -> float:
    """Area under the step learning curve over transformed time.

    The curve starts at (0, 0), each prediction holds its score until the next, and the last
    holds until x = 1. Predictions after the budget do not count.
    """
    points = sorted((t, s) for t, s in zip(timestamps, scores) if 0 <= t <= time_budget)
    if not points:
        return 0.0
    xs = [float(transform_time(t, time_budget, t0)) for t, _ in points] + [1.0]
    return float(sum(s * (xs[i + 1] - xs[i]) for i, (_, s) in enumerate(points)))
