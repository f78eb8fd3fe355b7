import math

import numpy as np
import pytest

from autodl import nauc as scores


def test_worked_example_of_the_protocol():
    # One prediction at 60 s with NAUC 0.9, T = 1200: 0.9 * (1 - ln 2 / ln 21) = 0.6951
    # (the protocol doc rounds it to 0.695).
    assert scores.alc([60.0], [0.9], 1200) == pytest.approx(0.695, abs=5e-4)
    assert scores.alc([60.0], [0.9], 1200) == pytest.approx(0.9 * (1 - math.log(2) / math.log(21)))


def test_alc_step_function_and_late_predictions():
    x = lambda t: math.log1p(t / 60) / math.log1p(300 / 60)  # noqa: E731
    expected = 0.5 * (x(30) - x(10)) + 0.8 * (1 - x(30))
    assert scores.alc([10, 30, 400], [0.5, 0.8, 1.0], 300) == pytest.approx(expected)
    assert scores.alc([], [], 300) == 0.0
    # Order of the inputs does not matter.
    assert scores.alc([30, 10], [0.8, 0.5], 300) == pytest.approx(expected)


def test_ceiling_for_first_prediction():
    for t, ceiling in ((10, 0.949), (30, 0.867), (60, 0.772)):
        assert scores.alc([t], [1.0], 1200) == pytest.approx(ceiling, abs=1e-3)


def test_tied_ranks():
    assert scores.tied_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert scores.tied_ranks(np.array([5.0, 5.0, 5.0])).tolist() == [2.0, 2.0, 2.0]


def test_auc_by_hand_with_ties():
    solution = np.array([[1], [0], [1], [0]])
    prediction = np.array([[0.9], [0.5], [0.5], [0.1]])
    # Positives ranked 4 and 2.5: (6.5 - 3) / (2 * 2) = 0.875.
    assert scores.column_aucs(solution, prediction)[0] == pytest.approx(0.875)
    assert scores.nauc(solution, prediction) == pytest.approx(0.75)


def test_perfect_inverse_and_constant_predictions():
    solution = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    assert scores.nauc(solution, solution) == pytest.approx(1.0)
    assert scores.nauc(solution, -solution) == pytest.approx(-1.0)
    assert scores.nauc(solution, np.full(solution.shape, 0.3)) == 0.0


def test_columns_with_a_single_value_are_dropped():
    solution = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 1], [0, 0, 1]])
    prediction = np.array([[0.9, 0.1, 0.2], [0.1, 0.9, 0.1], [0.8, 0.5, 0.9], [0.2, 0.3, 0.1]])
    aucs = scores.column_aucs(solution, prediction)
    # Column 2: positives hold 0.9 (rank 4) and 0.1 (tied with a negative: 1.5).
    assert np.isnan(aucs[1]) and aucs[0] == 1.0 and aucs[2] == pytest.approx(0.625)
    assert scores.nauc(solution, prediction) == pytest.approx(2 * (1.0 + 0.625) / 2 - 1)
    assert scores.nauc(np.ones((3, 2)), np.random.rand(3, 2)) == 0.0


def test_multi_label_and_accuracy():
    solution = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    assert not scores.is_one_hot(solution)
    assert scores.nauc(solution, solution * 0.7 + 0.1) == pytest.approx(1.0)
    one_hot = np.eye(2)[[0, 1, 1]]
    assert scores.is_one_hot(one_hot)
    prediction = np.array([[3.0, 1.0], [0.0, 2.0], [0.0, 0.0]])  # last row: uniform
    assert scores.accuracy(one_hot, prediction) == pytest.approx((0.75 + 1.0 + 0.5) / 3)


def test_accuracy_on_signed_and_huge_scores():
    identity = np.eye(2)
    # Signed scores keep their sign: the true class got the negative share in both rows.
    assert scores.accuracy(identity, np.array([[-5.0, 1.0], [1.0, -5.0]])) == \
        pytest.approx(-5 / 6)
    assert scores.nauc(identity, np.array([[-5.0, 1.0], [1.0, -5.0]])) == -1.0
    with np.errstate(all="raise"):  # no overflow on the way
        assert scores.accuracy(identity, np.full((2, 2), 1e308)) == pytest.approx(0.5)
        assert scores.accuracy(identity, np.array([[1e308, -1e308], [0.0, 0.0]])) == \
            pytest.approx((0.5 + 0.5) / 2)
