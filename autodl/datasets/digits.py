"""digits: scikit-learn's 8x8 handwritten digits, COMPRESSED PNG. The zoo's tiny dataset,
built in well under a second (tests use it).

Source:  pip `scikit-learn` (already in requirements.txt): sklearn/datasets/data/digits.csv.gz,
         the file `sklearn.datasets.load_digits()` reads, read directly because importing
         sklearn alone takes about 2 s. UCI "Optical Recognition of Handwritten Digits".
License: scikit-learn BSD-3-Clause; the UCI data set is CC BY 4.0.
Sizes:   1797 images: a stratified ~80/20 split drawn with the seed, 1438 train / 359 test.
Shape:   1 x 8 x 8 x 1, PNG; the 0..16 intensities scaled to 0..255 (round(v * 255 / 16)).
Classes: 10 (digits 0-9), one per record.
"""
import numpy as np

from ._common import (
    DatasetInfo,
    SourceDataError,
    check_sizes,
    expect,
    package_file,
    split_labelled,
)

REQUIREMENT = "scikit-learn"
DATA_FILE = "sklearn/datasets/data/digits.csv.gz"
LABELS = [str(d) for d in range(10)]
N_TRAIN, N_TEST = 1438, 359


def check_source():
    package_file(REQUIREMENT, DATA_FILE)


def load():
    """(uint8 [1797, 8, 8] scaled to 0..255, int64 labels)."""
    path = package_file(REQUIREMENT, DATA_FILE)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (ValueError, OSError) as e:
        raise SourceDataError(f"{path}: not a gzip comma-separated integer table ({e})") \
            from None
    expect(table.ndim == 2 and table.shape[1] == 65 and table[:, :64].max() <= 16, path,
           f"table {table.shape}, expected 64 pixels in 0..16 plus a label per row")
    pixels = np.rint(table[:, :64] * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8)
    return pixels, table[:, 64]


def make(seed, n_train, n_test):
    check_sizes("digits", n_train, n_test, N_TRAIN, N_TEST)
    x, y = load()
    return split_labelled(x, y, seed, n_train, n_test, LABELS, "png")


INFO = DatasetInfo(
    name="digits", source="scikit-learn load_digits (UCI)", requirement=REQUIREMENT,
    license="BSD-3-Clause (sklearn), CC BY 4.0 (UCI data)",
    description="tiny 8x8 handwritten digits, PNG; fast, for tests",
    train_size=N_TRAIN, test_size=N_TEST, small_sizes=(40, 20), shape="1x8x8x1", classes=10,
    task="multi-class", image_format="png", make=make, check_source=check_source)
