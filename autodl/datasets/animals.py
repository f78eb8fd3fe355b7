"""animals: Animal-MNIST silhouettes, COMPRESSED PNG.

Source:  pip `animal-mnist==0.4` (Sina Mohammadi), gzip pickles
         animal_mnist/data/Animal_MNIST/animal_data_version_3.gz (uint8 [10000, 28, 28],
         white silhouettes on black) and animal_label_version_3.gz (int64 [10000], sorted by
         class, 1000 each). Read directly: the package's loader imports TensorFlow.
License: MIT.
Sizes:   8000 train / 2000 test: a stratified split (200 test images per class), drawn and
         shuffled with the seed.
Shape:   1 x 28 x 28 x 1, PNG.
Classes: 10, one per record: bear, bird, cat, cow, dog, elephant, giraffe, horse, sheep, zebra
         (the package lists them alphabetically; the index order was checked by looking at
         the images of every class).
"""
import numpy as np

from ._common import (
    DatasetInfo,
    check_sizes,
    expect,
    load_pickle,
    package_file,
    split_labelled,
)

REQUIREMENT = "animal-mnist==0.4"
DATA_FILE = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
LABEL_FILE = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"
LABELS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


def check_source():
    package_file(REQUIREMENT, DATA_FILE)
    package_file(REQUIREMENT, LABEL_FILE)


def load():
    data_path = package_file(REQUIREMENT, DATA_FILE)
    label_path = package_file(REQUIREMENT, LABEL_FILE)
    x = np.asarray(load_pickle(data_path))
    y = np.asarray(load_pickle(label_path))
    expect(x.dtype == np.uint8 and x.shape[1:] == (28, 28), data_path,
           f"{x.dtype} {x.shape}, expected uint8 [N, 28, 28]")
    expect(y.shape == (len(x),) and y.min() >= 0 and y.max() < len(LABELS), label_path,
           f"labels {y.shape} in {y.min()}..{y.max()}, expected {len(x)} labels in 0..9")
    return x, y.astype(np.int64)


def make(seed, n_train, n_test):
    check_sizes("animals", n_train, n_test, 8000, 2000)
    x, y = load()
    return split_labelled(x, y, seed, n_train, n_test, LABELS, "png")


INFO = DatasetInfo(
    name="animals", source="Animal-MNIST via pip animal-mnist==0.4", requirement=REQUIREMENT,
    license="MIT", description="animal silhouettes (bear ... zebra), PNG",
    train_size=8000, test_size=2000, small_sizes=(40, 20), shape="1x28x28x1", classes=10,
    task="multi-class", image_format="png", make=make, check_source=check_source)
