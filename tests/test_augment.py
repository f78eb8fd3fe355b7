"""Light Fast AutoAugment: the operations, the published pool, policies and the search."""
import logging
import math
import os
import time

import numpy as np
import pytest
import torch

from skeleton.augment import OPERATIONS, PolicyAugmenter, load_pool, parse_subpolicy
from skeleton.augment.ops import GEOMETRY
from skeleton.augment.search import search_policies
from skeleton.config import CONFIG_DIR, load_config

from conftest import drive, fast_config, splits

CFG = load_config("image").augment
RANGES = CFG.ranges
WITHOUT_MAGNITUDE = {"AutoContrast", "Equalize", "Invert"}


def _batch(channels, n=6, h=20, w=24, seed=0):
    """uint8-valued float images with structure (a bright block on a varied background)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(20, 120, (n, channels, h, w), generator=g).float()
    x[:, :, 4:12, 5:15] += 120
    return x / 255.0


def _levels(value, n=6):
    return torch.full((n,), float(value))


def _signs(n=6):
    return torch.tensor([1.0, -1.0] * (n // 2))


@pytest.mark.parametrize("channels", [1, 3, 2])
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_operation_keeps_shape_and_range_and_level_0_is_the_identity(name, channels):
    x = _batch(channels)
    for level in (0, 3, 10):
        y = OPERATIONS[name](x, _levels(level), _signs(), RANGES)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    if name not in WITHOUT_MAGNITUDE:
        assert torch.allclose(OPERATIONS[name](x, _levels(0), _signs(), RANGES), x, atol=1e-6)
    changed = OPERATIONS[name](x, _levels(10), _signs(), RANGES)
    if name == "Color" and channels != 3:
        assert torch.equal(changed, x)  # saturation is undefined without three colours
    else:
        assert (changed - x).abs().max() > 0.02, name


def test_operations_do_not_modify_their_input():
    x = _batch(3)
    before = x.clone()
    for name, op in OPERATIONS.items():
        op(x, _levels(10), _signs(), RANGES)
        assert torch.equal(x, before), name


def test_translate_moves_by_its_share_of_the_side():
    x = torch.zeros(1, 1, 20, 40)
    x[0, 0, 10, 20] = 1.0
    level = 5.0  # 0.45 * 5/10 * 40 = 9 pixels
    y = OPERATIONS["TranslateX"](x, _levels(level, 1), torch.ones(1), RANGES)
    moved = (y[0, 0] == y.max()).nonzero().tolist()
    shift = RANGES.translate * level / 10 * 40
    assert moved == [[10, 20 - round(shift)]] and float(y.max()) > 0.99


def test_rotate_turns_by_its_angle_on_a_non_square_image():
    x = torch.zeros(1, 1, 41, 81)
    x[0, 0, 20, 25:56] = 1.0  # a horizontal line through the centre
    y = OPERATIONS["Rotate"](x, _levels(10, 1), torch.ones(1), RANGES)
    points = (y[0, 0] > 0.3).nonzero().float()
    points -= points.mean(0)
    dy, dx = np.linalg.svd(points.numpy())[2][0]
    angle = math.degrees(math.atan2(dy, dx)) % 180
    assert min(abs(angle - 30), abs(angle - 150)) < 3


def test_uncovered_pixels_take_the_border_colour():
    x = torch.full((1, 1, 16, 16), 0.2)
    x[0, 0, 6:10, 6:10] = 0.9
    y = OPERATIONS["TranslateY"](x, _levels(10, 1), torch.ones(1), RANGES)
    assert torch.allclose(y[0, 0, :, 0], torch.full((16,), 0.2), atol=1e-5)


def test_the_published_pool_loads_without_duplicates():
    pool = load_pool("autoaugment_cifar")
    assert len(pool) == 94  # 95 published rows, one repeated
    assert all(len(sub.steps) == 2 for sub in pool)
    used = {step.op for sub in pool for step in sub.steps}
    assert used <= set(OPERATIONS) and {"Cutout", "Rotate", "Posterize"} <= used
    without = load_pool("autoaugment_cifar", cutout=False)
    assert len(without) == 91 and all(s.op != "Cutout" for sub in without for s in sub.steps)


@pytest.mark.parametrize("row, problem", [
    (["Blur", 0.5, 3], "unknown operation"),
    (["Rotate", 1.5, 3], "probability"),
    (["Rotate", 0.5, 11], "level"),
    (["Rotate", 0.5], "sub-policy is"),
])
def test_bad_pool_rows_are_named_errors(row, problem):
    with pytest.raises(ValueError, match=problem) as info:
        parse_subpolicy(row, "configs/mine.yaml")
    assert "configs/mine.yaml" in str(info.value)


def test_a_pool_file_without_subpolicies_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty.yaml").write_text("other: 1\n")
    with pytest.raises(ValueError, match="empty.yaml"):
        load_pool("empty", folder=str(tmp_path))


def test_policy_application_is_seeded_and_respects_probabilities():
    pool = load_pool("autoaugment_cifar")
    x = _batch(3, n=32)
    a = PolicyAugmenter(pool[:10], RANGES, seed=4)(x)
    b = PolicyAugmenter(pool[:10], RANGES, seed=4)(x)
    c = PolicyAugmenter(pool[:10], RANGES, seed=5)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    never = parse_subpolicy(["Invert", 0.0, 5, "Rotate", 0.0, 9])
    assert torch.equal(PolicyAugmenter([never], RANGES)(x), x)
    always = parse_subpolicy(["Invert", 1.0, 5])
    assert torch.allclose(PolicyAugmenter([always], RANGES)(x), 1 - x)
    assert torch.equal(PolicyAugmenter([], RANGES)(x), x)


def test_geometric_steps_of_a_batch_are_one_resampling_matching_each_operation():
    """Images that drew different geometric operations in the same step must come out as if
    each had been transformed alone."""
    x = _batch(1, n=40)
    subs = [parse_subpolicy([name, 1.0, 7]) for name in GEOMETRY]
    aug = PolicyAugmenter(subs, RANGES, seed=1)
    mixed = aug(x)
    for i in range(len(x)):
        alone = [OPERATIONS[name](x[i:i + 1], _levels(7, 1), torch.tensor([s]), RANGES)
                 for name in GEOMETRY for s in (-1.0, 1.0)]
        assert any(torch.allclose(mixed[i:i + 1], a, atol=1e-5) for a in alone), i


# -- the search ------------------------------------------------------------------------------

def _trained_scorer(seed=0):
    """A small network trained on a task where brightness decides the class, and its NAUC
    on held-out images under a transform: the search's score function."""
    from skeleton.metrics import nauc
    from skeleton.nn import build_network
    from skeleton.trainer import Trainer

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def images(n):
        y = np.arange(n) % 3
        x = rng.integers(0, 60, (n, 1, 16, 16, 1)).astype(np.uint8)
        x[:, :, 2:10, 2:10] += (y * 60)[:, None, None, None, None].astype(np.uint8)
        return x, np.eye(3, dtype=np.float32)[y]

    x, y = images(192)
    valid_x, valid_y = images(96)
    cfg = load_config("image").train.replace(batch_cpu=32, batch_cuda=32)
    trainer = Trainer(build_network("fastnet_small", 1, 3), cfg, torch.device("cpu"),
                      multi_label=False, flip=False)
    trainer.plan_phase(60, 0.05)
    trainer.train_steps(x, y, np.arange(len(x)), max_seconds=30)
    return lambda transform: nauc(valid_y, trainer.predict(valid_x, transform=transform))


def test_search_keeps_only_draws_at_least_as_good_and_is_reproducible():
    score = _trained_scorer()
    pool = load_pool("autoaugment_cifar")
    cfg = CFG.replace(draws=12, max_error_ratio=1.0)  # the original rule: at least as good
    first = search_policies(score, pool, cfg, deadline=time.time() + 60, seed=3)
    again = search_policies(score, pool, cfg, deadline=time.time() + 60, seed=3)
    other = search_policies(score, pool, cfg, deadline=time.time() + 60, seed=4)
    assert first.tried == 12
    assert all(d.score >= first.baseline for d in first.kept)
    assert len(first.kept) <= cfg.top_draws
    assert [d.score for d in first.kept] == sorted((d.score for d in first.kept), reverse=True)
    assert first.subpolicies == again.subpolicies and first.kept == again.kept
    assert first.subpolicies != other.subpolicies or not first.kept


def test_search_stops_at_its_deadline():
    # A scripted clock that moves one second per scoring: the check is exact, not a race with
    # a busy machine (a real clock can pass the deadline between the check and the draw).
    class Clock:
        now = 1000.0

        def __call__(self):
            return self.now

    clock = Clock()
    started = []

    def score(transform):
        started.append(clock.now)
        clock.now += 1.0
        return 0.5

    result = search_policies(score, load_pool("autoaugment_cifar"), CFG.replace(draws=10_000),
                             deadline=1003.5, clock=clock)
    # The baseline at 1000, draws at 1001, 1002, 1003; at 1004 the deadline has passed.
    assert started == [1000.0, 1001.0, 1002.0, 1003.0]
    assert result.tried == 3 and result.seconds == 4.0


def test_search_ranks_draws_and_merges_the_top_ones():
    pool = [parse_subpolicy([name, 0.5, level]) for name in ("Rotate", "Solarize", "Contrast")
            for level in (1, 5, 9)]
    # A scripted score: the baseline is 0.5; a draw scores by its sub-policies' mean level.
    def score(transform):
        if transform is None:
            return 0.5
        return float(np.mean([s.steps[0].level for s in transform.subpolicies])) / 10
    cfg = CFG.replace(draws=30, top_draws=2, max_error_ratio=1.0, subpolicies_per_draw=2)
    result = search_policies(score, pool, cfg, time.time() + 30)
    assert result.baseline == 0.5 and result.tried == 30 and len(result.kept) == 2
    assert all(d.score >= 0.5 for d in result.kept)
    assert result.kept[0].score >= result.kept[1].score
    merged = result.subpolicies
    assert len(merged) == len(set(merged)) and set(merged) <= {s for d in result.kept
                                                               for s in d.subpolicies}


def test_search_keeps_nothing_past_its_error_bar():
    pool = load_pool("autoaugment_cifar")
    # Clean error 0.1; draws' error 0.2: twice the clean error.
    score = lambda t: 0.9 if t is None else 0.8  # noqa: E731
    strict = search_policies(score, pool, CFG.replace(draws=5, max_error_ratio=1.0),
                             time.time() + 30)
    assert strict.kept == [] and strict.subpolicies == []
    loose = search_policies(score, pool, CFG.replace(draws=5, max_error_ratio=2.5),
                            time.time() + 30)
    assert len(loose.kept) == 5 and all(d.score == 0.8 for d in loose.kept)


# -- in the learner --------------------------------------------------------------------------

# These tests are about the phases of the scratch network: no transfer stage beside it.
# min_gain -1: held-out NAUC saturates on this easy set (30 held-out images) and the network
# would stall (and stop) before the phases these tests count.
AUGMENT_FAST = fast_config({
    "schedule": {"min_gain": -1.0},
    "train": {"horizon_epochs": 1, "batch_cpu": 16, "batch_cuda": 16, "test_batch": 64},
    "augment": {"min_time_left_s": 1.0, "max_seconds": 3.0, "budget_fraction": 1.0},
    "transfer": {"enabled": False}})


def _run(tmp_path, our_model, overrides, shape=(16, 16, 1), rounds=8):
    from autodl.writer import write_dataset

    Model = our_model(fast_config(AUGMENT_FAST, overrides))
    rng = np.random.default_rng(0)

    def images(n):
        y = np.arange(n) % 3
        x = rng.integers(0, 60, (n, *shape)).astype(np.uint8)
        x[..., 2:10, 2:10, :] += (y * 60)[(slice(None),) + (None,) * len(shape)].astype(np.uint8)
        return list(x), y

    path = write_dataset(tmp_path / "a", "a", images(300), images(60), output_dim=3,
                         image_format="dense")
    train, test = splits(path, "a")
    m = Model(train.get_metadata())
    drive(m, train, test, rounds, budget=60,
          stop=lambda m: m.learner.trainer is not None and m.learner.phase_count >= 2)
    return m.learner


@pytest.mark.slow
def test_learner_searches_once_between_the_first_and_second_phase(tmp_path, our_model,
                                                                    caplog):
    with caplog.at_level(logging.INFO, logger="skeleton"):
        learner = _run(tmp_path, our_model, {})
    assert learner.phase_count >= 2
    result = learner.augment_search
    assert result is not None and result.tried > 0
    assert result.seconds < AUGMENT_FAST["augment"]["max_seconds"] + 2
    assert any("augment search: baseline" in r.getMessage() for r in caplog.records)
    if result.kept:
        assert learner.trainer.policy is not None
        assert learner.trainer.policy.subpolicies == result.subpolicies
        assert any("augment search: kept" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_learner_skips_the_search_when_off_or_short_of_time(tmp_path, our_model):
    learner = _run(tmp_path / "off", our_model, {"augment": {"search": False}})
    assert learner.phase_count >= 2 and learner.augment_search is None
    learner = _run(tmp_path / "short", our_model, {"augment": {"min_time_left_s": 1e6}})
    assert learner.phase_count >= 2 and learner.augment_search is None
    assert learner.trainer.policy is None


def test_video_config_keeps_the_search_off():
    assert load_config("video").augment.search is False
    assert os.path.exists(os.path.join(CONFIG_DIR, f"{CFG.pool}.yaml"))


@pytest.mark.slow
def test_search_never_holds_back_a_better_prediction(tmp_path, monkeypatch, our_model):
    """When the first phase ends with a better model, test() gets it before the search runs."""
    from skeleton.candidates import NetworkCandidate

    real = NetworkCandidate.search_augmentation
    pending_at_search = []

    def spy(self, time_left):
        pending_at_search.append(self.keeper.pending)
        return real(self, time_left)

    monkeypatch.setattr(NetworkCandidate, "search_augmentation", spy)
    learner = _run(tmp_path, our_model, {})
    assert pending_at_search == [None]  # searched once, with no better prediction waiting
    assert learner.augment_search is not None


def test_search_without_a_defined_score_keeps_nothing_and_does_not_fail():
    """A held-out set with no class both present and absent: NAUC is None, nothing ranks."""
    pool = load_pool("autoaugment_cifar")
    result = search_policies(lambda transform: None, pool, CFG.replace(draws=3), time.time() + 30)
    assert result.kept == [] and result.baseline is None
    calls = iter([0.5, None, 0.6, None])
    result = search_policies(lambda transform: next(calls), pool,
                             CFG.replace(draws=3, max_error_ratio=2.0), time.time() + 30)
    assert result.tried == 1 and [d.score for d in result.kept] == [0.6]


@pytest.mark.slow
def test_a_failing_optional_stage_leaves_the_best_model_in_place(tmp_path, monkeypatch,
                                                                 our_model, caplog):
    """The search and the flip probe are optional: when they raise, training and predictions
    go on from the best model so far."""
    from skeleton.candidates import NetworkCandidate

    def broken(self, *args):
        self.flip_probed = True
        raise RuntimeError("scripted failure")

    monkeypatch.setattr(NetworkCandidate, "search_augmentation", broken)
    monkeypatch.setattr(NetworkCandidate, "probe_flip", broken)
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        learner = _run(tmp_path, our_model, {"train": {"flip": True}})
    assert learner.phase_count >= 2  # the second phase started after the failed search
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("augmentation search failed, carrying on without it: "
                            "RuntimeError: scripted failure") for m in messages)
    assert any(m.startswith("flip probe failed") for m in messages)
    assert learner.best.source is not None
