"""The quick model (skeleton/quick.py) on synthetic sets that only its new blocks can read."""
import numpy as np
import pytest

from skeleton.config import load_config
from skeleton.metrics import nauc
from skeleton.quick import QuickModel


def _cfg(kind="image", **changes):
    return load_config(kind).quick.replace(**changes)


def _moving_blob(rng, n, frames=8, side=24):
    """Clips of a bright square moving right (class 0) or left (class 1) from a random start.
    Both classes visit the same places, so the frames' average carries no class: only the
    order of the frames does (classes are paired: each left clip is a right clip reversed)."""
    x = np.zeros((n, frames, side, side, 1), np.uint8)
    y = np.zeros((n, 2), np.float32)
    for i in range(0, n, 2):
        row = rng.integers(0, side - 4)
        start = rng.integers(0, side - 4 - frames)
        for t in range(frames):
            x[i, t, row:row + 4, start + t:start + t + 4] = 255
        x[i + 1] = x[i, ::-1]  # the same clip played backwards: moving left
        y[i, 0] = y[i + 1, 1] = 1
    noise = rng.integers(0, 30, x.shape).astype(np.uint8)
    return np.maximum(x, noise), y


def _canvases(rng, n, side=32, classes=4, per_canvas=2):
    """Multi-label canvases: `per_canvas` different shapes out of `classes` at random places."""
    shapes = [np.zeros((6, 6), bool) for _ in range(classes)]
    shapes[0][:, 2:4] = True                    # vertical bar
    shapes[1][2:4, :] = True                    # horizontal bar
    shapes[2][np.eye(6, dtype=bool)] = True     # diagonal
    shapes[3][[0, 0, 5, 5], [0, 5, 0, 5]] = True  # four corners
    shapes[3][1:5, 1:5] = False
    x = rng.integers(0, 20, (n, 1, side, side, 1)).astype(np.uint8)
    y = np.zeros((n, classes), np.float32)
    for i in range(n):
        for k in rng.choice(classes, per_canvas, replace=False):
            r, c = rng.integers(0, side - 6, 2)
            x[i, 0, r:r + 6, c:c + 6, 0][shapes[k]] = 255
            y[i, k] = 1
    return x, y


def test_motion_beats_chance_and_needs_the_time_block():
    rng = np.random.default_rng(0)
    x, y = _moving_blob(rng, 400)
    xt, yt = _moving_blob(rng, 200)
    score = nauc(yt, QuickModel(_cfg("video")).fit(x, y).predict(xt))
    averaged = nauc(yt, QuickModel(_cfg("video", time_segments=0)).fit(x, y).predict(xt))
    assert score > 0.8
    assert averaged < 0.3  # frames averaged away: nothing left to read


def test_multi_label_canvases_beat_chance():
    rng = np.random.default_rng(1)
    x, y = _canvases(rng, 600)
    xt, yt = _canvases(rng, 300)
    score = nauc(yt, QuickModel(_cfg(), multi_label=True).fit(x, y).predict(xt))
    pixels = nauc(yt, QuickModel(_cfg(), multi_label=False).fit(x, y).predict(xt))
    assert score > 0.8
    assert score > pixels + 0.2  # the local block is what finds shapes anywhere


@pytest.mark.parametrize("kind,shape,multi_label", [
    ("image", (1, 28, 28, 1), False), ("image", (1, 20, 30, 3), True),
    ("video", (5, 16, 16, 3), False), ("image", (1, 8, 8, 1), True)])
def test_shapes_dtypes_and_seed(kind, shape, multi_label):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (40, *shape)).astype(np.uint8)
    y = np.eye(3, dtype=np.float32)[np.arange(40) % 3]
    if multi_label:
        y[::4, 0] = 1
    fit = QuickModel(_cfg(kind), seed=3, multi_label=multi_label).fit(x, y)
    p = fit.predict(x[:7])
    assert p.shape == (7, 3) and p.dtype == np.float32 and np.isfinite(p).all()
    assert fit.predict(x[:0]).shape == (0, 3)
    again = QuickModel(_cfg(kind), seed=3, multi_label=multi_label).fit(x, y).predict(x[:7])
    np.testing.assert_array_equal(p, again)
    other = QuickModel(_cfg(kind), seed=4, multi_label=multi_label).fit(x, y).predict(x[:7])
    assert not np.array_equal(p, other)  # the seed is what draws the projection and filters


def test_chunks_do_not_change_the_predictions():
    rng = np.random.default_rng(5)
    x, y = _canvases(rng, 90)
    whole = QuickModel(_cfg(chunk_records=1000), multi_label=True).fit(x, y).predict(x)
    pieces = QuickModel(_cfg(chunk_records=16), multi_label=True).fit(x, y).predict(x)
    np.testing.assert_allclose(whole, pieces, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_saved_state_is_all_it_predicts_from(multi_label):
    """skeleton/persist.py saves QUICK_STATE only: a model rebuilt from it predicts the same."""
    from skeleton.persist import QUICK_STATE
    rng = np.random.default_rng(6)
    x, y = _canvases(rng, 60)
    fitted = QuickModel(_cfg(), multi_label=multi_label).fit(x, y)
    rebuilt = QuickModel(_cfg())
    for key in QUICK_STATE:
        setattr(rebuilt, key, getattr(fitted, key))
    np.testing.assert_array_equal(rebuilt.predict(x), fitted.predict(x))
