"""solar: ELPV electroluminescence images of solar-cell crops, COMPRESSED JPEG, grayscale.

Source:  pip `elpv-dataset==1.0.0.post1` (Buerhop-Lutz, Deitsch et al., "A Benchmark for
         Visual Identification of Defective Solar Cells in Electroluminescence Imagery",
         2018): elpv_dataset/data/labels.csv (path, defect probability, module type) and
         elpv_dataset/data/images/cellNNNN.png (300x300 8-bit grayscale). Read directly.
License: CC BY-NC-SA 4.0 for the images and labels: NON-COMMERCIAL use only, share-alike,
         with attribution (the package's code is Apache-2.0). Datasets built from it carry
         the same terms.
Sizes:   2624 images, a ~80/20 split stratified by class and module type (mono/poly), drawn
         and shuffled with the seed: 2099 train / 525 test.
Shape:   1 x 300 x 300 x 1, JPEG (quality 95), one channel.
Classes: 4, one per record: the experts' defect probability 0, 1/3, 2/3, 1
         (defect_0 1508 images, defect_33 295, defect_67 106, defect_100 715).
"""
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._common import (
    DatasetInfo,
    Generated,
    SourceDataError,
    check_sizes,
    package_file,
    stratified_split,
    take_balanced,
)

REQUIREMENT = "elpv-dataset==1.0.0.post1"
LABELS_FILE = "elpv_dataset/data/labels.csv"
LABELS = ["defect_0", "defect_33", "defect_67", "defect_100"]
SIDE = 300
N_TRAIN, N_TEST = 2099, 525


def check_source():
    package_file(REQUIREMENT, LABELS_FILE)


def load_index():
    """(image paths, class 0..3, module type) from labels.csv, in file order."""
    csv_path = package_file(REQUIREMENT, LABELS_FILE)
    root = os.path.dirname(csv_path)
    paths, classes, types = [], [], []
    with open(csv_path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                relpath, probability, module_type = fields
                level = float(probability) * 3
            except ValueError:
                raise SourceDataError(f"{csv_path}:{line_no}: expected 'path probability type', "
                                      f"got {line.strip()!r}") from None
            if abs(level - round(level)) > 1e-6 or not 0 <= round(level) <= 3:
                raise SourceDataError(f"{csv_path}:{line_no}: probability {probability} is not "
                                      "one of 0, 1/3, 2/3, 1")
            paths.append(os.path.join(root, relpath))
            classes.append(round(level))
            types.append(module_type)
    return paths, np.asarray(classes, np.int64), np.asarray(types)


def _read(paths):
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.mode != "L" or image.size != (SIDE, SIDE):
                    raise SourceDataError(f"{path}: {image.mode} {image.size}, expected 8-bit "
                                          f"grayscale {SIDE}x{SIDE}")
                yield np.asarray(image)
        except (OSError, UnidentifiedImageError) as e:
            raise SourceDataError(f"{path}: cannot read the image ({e})") from None


def make(seed, n_train, n_test):
    check_sizes("solar", n_train, n_test, N_TRAIN, N_TEST)
    paths, y, types = load_index()
    strata = np.char.add(y.astype(str), types.astype(str))
    train_idx, test_idx = stratified_split(strata, 0.2, np.random.default_rng([seed, 0]))
    splits = []
    for idx, n in ((train_idx, n_train), (test_idx, n_test)):
        idx = idx[take_balanced(y[idx], n)]
        splits.append((_read([paths[i] for i in idx]), y[idx].tolist()))
    return Generated(splits[0], splits[1], LABELS, "jpeg")


INFO = DatasetInfo(
    name="solar", source="ELPV solar cells via pip elpv-dataset==1.0.0.post1",
    requirement=REQUIREMENT,
    license="CC BY-NC-SA 4.0 (NON-COMMERCIAL only)",
    description="electroluminescence solar-cell crops, 4 defect-probability levels, JPEG",
    train_size=N_TRAIN, test_size=N_TEST, small_sizes=(32, 16), shape="1x300x300x1",
    classes=4, task="multi-class", image_format="jpeg", make=make, check_source=check_source)
