"""The best-model keeper: a candidate replaces the best model only beyond held-out noise."""
import os

import numpy as np
import pytest
import yaml

from skeleton.config import CONFIG_DIR, SelectConfig
from skeleton.keeper import BestModel
from skeleton.metrics import bootstrap_nauc, nauc

# The shipped settings (confidence 0.9, 100 resamples, blending off), read from the file itself;
# BLEND: the same with blending on, for the tests of blends.
with open(os.path.join(CONFIG_DIR, "image.yaml")) as _f:
    SELECT = SelectConfig.from_dict(yaml.safe_load(_f)["select"], "configs/image.yaml")
BLEND = SELECT.replace(blend=True)


def _labels(n, classes, rng):
    return np.eye(classes)[rng.integers(0, classes, n)]


def _model(labels, noise, rng):
    """Held-out predictions of a model whose quality is set by `noise` alone."""
    return labels + rng.normal(0, noise, labels.shape)


def _complementary():
    """Labels of 300 examples in 4 classes and two models, each good on half of the classes
    (first: 0 and 1, second: 2 and 3), so that their average validates higher than either."""
    rng = np.random.default_rng(4)
    y = _labels(300, 4, rng)
    first, second = _model(y, 1.0, rng), _model(y, 1.0, rng)
    first[:, :2] = y[:, :2] + rng.normal(0, 0.2, (300, 2))
    second[:, 2:] = y[:, 2:] + rng.normal(0, 0.2, (300, 2))
    return y, first, second


def test_bootstrap_nauc_equals_nauc_on_each_resample():
    rng = np.random.default_rng(0)
    y = _labels(80, 4, rng)
    s = np.round(_model(y, 1.0, rng), 1)  # rounded: ties
    weights = rng.multinomial(80, np.full(80, 1 / 80), size=6)
    for w, value in zip(weights, bootstrap_nauc(y, s, weights)):
        index = np.repeat(np.arange(80), w)
        assert value == pytest.approx(nauc(y[index], s[index]), abs=1e-12)
    assert bootstrap_nauc(y, s, np.ones((1, 80)))[0] == pytest.approx(nauc(y, s))


def test_a_candidate_better_only_by_chance_rarely_replaces_the_best():
    """Equal-quality models on a 100-example held-out set: the plain rule (higher score wins)
    switches whenever chance favours the candidate; the keeper seldom does."""
    rng = np.random.default_rng(1)
    lucky, switched = 0, 0
    for trial in range(40):
        y = _labels(100, 3, rng)
        best = BestModel(0.0, SELECT)
        best.set_labels(y)
        current, candidate = _model(y, 1.5, rng), _model(y, 1.5, rng)
        best.offer("transfer", current, lambda: None)
        if nauc(y, candidate) > nauc(y, current):
            lucky += 1
            taken, _ = best.offer("net", candidate, lambda: None)
            switched += taken
    assert lucky >= 10  # chance favoured the candidate often: the plain rule switches then
    assert switched <= 0.3 * lucky, (switched, lucky)


def test_a_clearly_better_candidate_replaces_the_best():
    rng = np.random.default_rng(2)
    taken_count = 0
    for trial in range(20):
        y = _labels(100, 3, rng)
        best = BestModel(0.0, SELECT)
        best.set_labels(y)
        best.offer("quick", _model(y, 1.5, rng), lambda: None)
        taken, score = best.offer("net", _model(y, 0.4, rng), lambda: None)
        taken_count += taken
    assert taken_count >= 19
    assert best.source == "net" and best.score == score


def test_the_first_offer_and_offers_without_held_out_data():
    best = BestModel(0.0, SELECT)
    best.set_labels(np.zeros((0, 3)))
    assert best.offer("quick", None, lambda: np.zeros(2))[0]
    assert best.offer("net", None, lambda: np.ones(2))[0]  # a network replaces the quick model
    assert best.predict_pending() is True and np.allclose(best.prediction, 1)
    assert best.predict_pending() is False


def test_snapshot_only_when_taken_and_refresh_replaces_a_model_in_use():
    rng = np.random.default_rng(3)
    y = _labels(60, 3, rng)
    best = BestModel(0.0, SELECT.replace(blend=False))
    best.set_labels(y)
    calls = []
    best.offer("transfer", _model(y, 0.3, rng), lambda: np.ones((2, 3)),
               lambda: calls.append("good") or "saved")
    best.offer("net", _model(y, 3.0, rng), lambda: np.zeros((2, 3)),
               lambda: calls.append("worse") or "other")
    assert calls == ["good"] and best.saved == "saved" and best.source == "transfer"
    assert best.predict_pending() and np.allclose(best.prediction, 1.0)
    assert not best.refresh("net", lambda: np.zeros((2, 3)))  # not in use: nothing happens
    assert best.refresh("transfer", lambda: np.full((2, 3), 0.5), lambda: "refit")
    assert best.source == "transfer" and best.saved == "refit"
    assert best.predict_pending() and np.allclose(best.prediction, 0.5)


def test_a_refit_replaces_itself_unless_clearly_worse():
    """A model in use, refitted on more data, that scores a little lower by chance (an
    equally good model) is taken; as a plain candidate it never is; a clearly worse refit
    is kept out."""
    rng = np.random.default_rng(7)
    lower = taken_as_refit = taken_plain = 0
    for trial in range(40):
        y = _labels(150, 3, rng)
        first, refit = _model(y, 1.0, rng), _model(y, 1.0, rng)
        if nauc(y, refit) >= nauc(y, first):
            continue
        lower += 1
        for as_refit in (True, False):
            best = BestModel(0.0, SELECT.replace(blend=False))
            best.set_labels(y)
            best.offer("transfer", first, lambda: np.zeros(1))
            best.predict_pending()
            taken, _ = best.offer("transfer", refit, lambda: np.ones(1), refit=as_refit)
            if as_refit:
                taken_as_refit += taken
            else:
                taken_plain += taken
        worse, _ = best.offer("transfer", _model(y, 5.0, rng), lambda: np.ones(1), refit=True)
        assert not worse
    assert lower >= 10 and taken_plain == 0
    assert taken_as_refit >= 0.6 * lower, (taken_as_refit, lower)


def test_a_refit_of_a_blended_model_replaces_it_inside_the_blend():
    y, first, second = _complementary()
    best = BestModel(0.0, BLEND)
    best.set_labels(y)
    best.offer("transfer", np.clip(first, 0, 1), lambda: np.full((5, 4), 0.2))
    best.predict_pending()
    best.offer("net", np.clip(second, 0, 1), lambda: np.full((5, 4), 0.6))
    best.predict_pending()
    assert best.source == "blend" and best.sources == ["transfer", "net"]
    assert best.refresh("transfer", lambda: np.full((5, 4), 0.4))
    assert best.predict_pending() and np.allclose(best.prediction, 0.5)  # (0.4 + 0.6) / 2
    assert best.sources == ["transfer", "net"]


def test_two_complementary_models_are_blended_when_the_blend_validates_higher():
    """Each model sees half of the classes well: their average beats both."""
    y, first, second = _complementary()
    best = BestModel(0.0, BLEND)
    best.set_labels(y)
    best.offer("transfer", first, lambda: np.full((5, 4), 0.2), lambda: "head")
    best.predict_pending()
    taken, alone = best.offer("net", second, lambda: np.full((5, 4), 0.6), lambda: "net")
    assert taken and best.source == "blend"
    assert best.score > max(alone, nauc(y, first))
    assert best.predict_pending() and np.allclose(best.prediction, 0.4)  # half each
    # A file holds one model: the blend's best-scoring member.
    assert best.saved == ("head" if nauc(y, first) >= alone else "net") and best.savable


def test_no_blend_when_the_candidate_alone_is_better_or_blending_is_off():
    rng = np.random.default_rng(5)
    y = _labels(300, 3, rng)
    weak, strong = _model(y, 2.0, rng), _model(y, 0.2, rng)
    for cfg in (BLEND, SELECT):
        best = BestModel(0.0, cfg)
        best.set_labels(y)
        best.offer("quick", weak, lambda: np.zeros((2, 3)))
        best.predict_pending()
        assert best.offer("net", strong, lambda: np.ones((2, 3)))[0]
        assert best.source == "net"


def test_the_quick_models_scores_are_blended_as_probabilities():
    rng = np.random.default_rng(6)
    y = _labels(200, 3, rng)
    best = BestModel(0.0, BLEND.replace(confidence=0.0, blend_quick=True))  # whatever is higher
    best.set_labels(y)
    best.offer("quick", 10 * _model(y, 0.8, rng), lambda: np.array([[30.0, 0.0, 0.0]]))
    best.predict_pending()
    net = np.clip(_model(y, 0.8, rng), 0, 1)
    members = best._with(__import__("skeleton.keeper", fromlist=["Member"]).Member(
        "net", net, 0.5, lambda: np.array([[0.0, 1.0, 0.0]]), None, False))
    assert [m.source for m in members] == ["quick", "net"]
    assert [m.weight for m in members] == [0.5, 0.5]
    valid = best._valid_of(members)
    assert np.all((valid >= 0) & (valid <= 1.0 + 1e-6))  # probabilities, not ridge scores
    best._take(members)
    assert best.predict_pending()
    assert np.allclose(best.prediction[0], [0.5, 0.5, 0.0], atol=1e-6)  # softmax(30,0,0)~(1,0,0)


def test_any_trained_model_that_validates_higher_replaces_the_quick_model():
    rng = np.random.default_rng(8)
    taken_count = lucky = 0
    for trial in range(30):
        y = _labels(100, 3, rng)
        current, candidate = _model(y, 1.5, rng), _model(y, 1.5, rng)
        if nauc(y, candidate) <= nauc(y, current):
            continue
        lucky += 1
        best = BestModel(0.0, SELECT.replace(blend=False))
        best.set_labels(y)
        best.offer("quick", current, lambda: None)
        taken_count += best.offer("transfer", candidate, lambda: None)[0]
    assert lucky >= 5 and taken_count == lucky


def test_a_successor_replaces_its_placeholder_by_validating_higher_and_only_it():
    """The small head holds the larger head's place: the larger one replaces it whenever it
    validates higher (no bootstrap bar), and never when it validates lower; any other
    candidate still needs to clear the bar."""
    rng = np.random.default_rng(9)
    y = _labels(120, 3, rng)
    small = _model(y, 1.5, rng)
    better = _model(y, 1.5, np.random.default_rng(103))  # higher, within the noise
    assert nauc(y, better) > nauc(y, small)
    for succeeds, taken in (("transfer-small", True), (None, False)):
        best = BestModel(0.0, SELECT)
        best.set_labels(y)
        best.offer("transfer-small", small, lambda: None)
        assert best.offer("transfer", better, lambda: None, succeeds=succeeds)[0] == taken
        assert best.source == ("transfer" if taken else "transfer-small")
    best = BestModel(0.0, SELECT)
    best.set_labels(y)
    best.offer("transfer-small", better, lambda: None)
    assert not best.offer("transfer", small, lambda: None, succeeds="transfer-small")[0]


def test_the_quick_model_is_not_blended_unless_asked():
    """Complementary quick model and head: their blend validates higher, yet with blending on
    the head replaces the quick model alone (select.blend_quick)."""
    rng = np.random.default_rng(9)
    y = _labels(300, 4, rng)
    quick, head = _model(y, 1.0, rng), _model(y, 1.0, rng)
    quick[:, :2] = y[:, :2] + rng.normal(0, 0.2, (300, 2))  # good on classes 0, 1
    head[:, 1:] = y[:, 1:] + rng.normal(0, 0.2, (300, 3))   # good on classes 1, 2, 3
    assert not SELECT.blend_quick
    for blend_quick, sources in ((False, ["transfer"]), (True, ["quick", "transfer"])):
        best = BestModel(0.0, BLEND.replace(blend_quick=blend_quick))
        best.set_labels(y)
        best.offer("quick", quick, lambda: np.zeros((2, 4)))
        best.predict_pending()
        assert best.offer("transfer", np.clip(head, 0, 1), lambda: np.ones((2, 4)))[0]
        assert best.sources == sources


def test_a_blend_is_held_to_its_own_stricter_bar():
    """select.blend_confidence, not select.confidence, decides a blend: the same two
    complementary models are blended or not by that setting alone."""
    assert SELECT.blend_confidence > SELECT.confidence
    y, first, second = _complementary()
    for bar, blended in ((0.0, True), (1.01, False)):
        best = BestModel(0.0, BLEND.replace(confidence=0.0, blend_confidence=bar))
        best.set_labels(y)
        best.offer("net", second, lambda: np.zeros((2, 4)))
        best.predict_pending()
        best.offer("transfer", first, lambda: np.ones((2, 4)))
        assert (best.source == "blend") == blended


def test_the_shipped_settings_never_blend():
    """Blending is off by default (select.blend: on solar every blend taken lowered the test
    NAUC): two complementary models, whose blend validates higher, stay single models."""
    assert not SELECT.blend
    y, first, second = _complementary()
    best = BestModel(0.0, SELECT.replace(confidence=0.0))
    best.set_labels(y)
    for source, valid in (("net", second), ("transfer", first), ("net", second)):
        best.offer(source, valid, lambda: np.zeros((2, 4)))
        best.predict_pending()
        assert best.source != "blend" and len(best.members) == 1


def test_a_refit_that_makes_a_blend_worse_is_refused_at_the_plain_bar():
    """select.blend_confidence is the bar for taking a blend; whether a refit made the blend
    worse is told at select.confidence. Here the blend with the refitted head loses in 95% of
    the resamples: between the two bars, so the stricter one would have let it in."""
    y, first, second = _complementary()
    best = BestModel(0.0, BLEND)
    best.set_labels(y)
    best.offer("transfer", first, lambda: np.zeros((2, 4)))
    best.predict_pending()
    best.offer("net", second, lambda: np.zeros((2, 4)))
    best.predict_pending()
    assert best.source == "blend"
    score = best.score
    refitted = first + np.random.default_rng(7).normal(0, 0.1, y.shape)
    taken, _ = best.offer("transfer", refitted, lambda: np.ones((2, 4)), refit=True)
    assert not taken and best.score == score and best.sources == ["transfer", "net"]


def test_the_best_beats_a_candidate_only_when_it_is_clearly_worse():
    """What ends the transfer stage's probe: equal models on a 100-example held-out set, where
    the candidate scores lower by chance, are seldom "beaten"; a clearly worse one always is."""
    rng = np.random.default_rng(5)
    unlucky, beaten_by_chance, beaten_clearly = 0, 0, 0
    for trial in range(40):
        y = _labels(100, 3, rng)
        best = BestModel(0.0, SELECT)
        best.set_labels(y)
        assert not best.beats(_model(y, 1.5, rng))  # no model yet: nothing beats it
        best.offer("quick", _model(y, 1.5, rng), lambda: None)
        equal = _model(y, 1.5, rng)
        if nauc(y, equal) < best.score:
            unlucky += 1
            beaten_by_chance += best.beats(equal)
        beaten_clearly += best.beats(_model(y, 8.0, rng))
        assert not best.beats(best.valid)  # not lower: not beaten
    assert unlucky >= 10  # chance made the candidate lose often: the old rule dropped it then
    assert beaten_by_chance <= 0.3 * unlucky, (beaten_by_chance, unlucky)
    assert beaten_clearly >= 36, beaten_clearly


def test_without_held_out_data_nothing_is_beaten():
    best = BestModel(0.0, SELECT)
    best.set_labels(np.zeros((0, 3)))
    best.offer("quick", None, lambda: None)
    assert not best.beats(None) and not best.beats(np.zeros((0, 3)))


def test_a_saturated_tie_is_broken_by_the_held_out_loss():
    """Two models at held-out NAUC 1.0 tie: the one whose log loss is clearly lower takes
    over, one that is only as confident does not."""
    y = np.eye(2)[np.arange(60) % 2]
    unsure = np.where(y > 0.5, 0.6, 0.4)    # NAUC 1.0, loss 0.51
    sure = np.where(y > 0.5, 0.95, 0.05)    # NAUC 1.0, loss 0.05
    best = BestModel(0.0, SELECT)
    best.set_labels(y)
    assert best.offer("net", unsure, lambda: unsure)[0]
    assert best.offer("net", unsure.copy(), lambda: unsure)[0] is False  # the same: kept
    assert best.score == 1.0 and best.offer("transfer", sure, lambda: sure)[0]
    assert best.sources == ["transfer"]
    assert best.offer("net", unsure, lambda: unsure)[0] is False  # worse loss: kept
