"""Where things live in an AutoDL dataset folder, and the metadata.textproto format.

DATASET_DIR/NAME.data/{train,test}/{metadata.textproto, sample*}, DATASET_DIR/NAME.solution
and, optionally, DATASET_DIR/NAME_label.name. Every problem found here raises DatasetError
with the offending path in the message.
"""
import glob
import os

import numpy as np
from google.protobuf import text_format

from .proto import DataSpecification

SPLITS = ("train", "test")
METADATA_FILE = "metadata.textproto"


class DatasetError(ValueError):
    """A dataset folder that does not follow the AutoDL layout; the message names the file."""


def show(path) -> str:
    """A path as printable text: bytes that are not UTF-8 shown as \\xNN escapes."""
    return os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8",
                                                                      "backslashreplace")


def check_name(path):
    """Refuse a file or folder name that is not UTF-8: TensorFlow, the prediction file names
    and the logs all need text."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(f"{show(path)}: the name is not valid UTF-8; rename it") from None
    return path


def find_data_dir(dataset_dir) -> str:
    """The single NAME.data folder inside dataset_dir (or dataset_dir itself if it is one)."""
    dataset_dir = os.path.abspath(os.fspath(dataset_dir))
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"{dataset_dir}: dataset folder does not exist")
    check_name(dataset_dir)
    if dataset_dir.endswith(".data"):
        return dataset_dir
    found = sorted(p for p in glob.glob(os.path.join(dataset_dir, "*.data")) if os.path.isdir(p))
    if len(found) != 1:
        what = "no *.data folder" if not found else f"{len(found)} *.data folders " \
            f"({', '.join(show(os.path.basename(p)) for p in found)}); exactly one is allowed"
        raise DatasetError(f"{dataset_dir}: {what}")
    return check_name(found[0])


def task_name(data_dir) -> str:
    return os.path.basename(os.path.normpath(data_dir))[: -len(".data")]


def split_dir(data_dir, split) -> str:
    path = os.path.join(data_dir, split)
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: split folder '{split}' is missing")
    return path


def record_files(split_path):
    """The sample* files of a split, in the order they are interleaved."""
    files = sorted(p for p in glob.glob(os.path.join(split_path, "sample*")) if os.path.isfile(p))
    if not files:
        raise DatasetError(f"{split_path}: no sample* record files")
    for path in files:
        check_name(path)
    return files


def solution_path(dataset_dir, name) -> str:
    return os.path.join(os.path.abspath(os.fspath(dataset_dir)), f"{name}.solution")


def label_names_path(dataset_dir, name) -> str:
    return os.path.join(os.path.abspath(os.fspath(dataset_dir)), f"{name}_label.name")


def read_metadata(split_path) -> DataSpecification:
    path = os.path.join(split_path, METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: metadata file is missing") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a text file ({e.reason})") from None
    spec = DataSpecification()
    try:
        text_format.Parse(text, spec, allow_unknown_field=True)
    except text_format.ParseError as e:
        raise DatasetError(f"{path}: garbled metadata: {e}") from None
    for field in ("sample_count", "output_dim"):
        if not spec.HasField(field):
            raise DatasetError(f"{path}: required field '{field}' is missing")
    if spec.sample_count < 0 or spec.output_dim < 1:
        raise DatasetError(f"{path}: sample_count={spec.sample_count}, "
                           f"output_dim={spec.output_dim} are not valid")
    if not spec.matrix_spec:
        raise DatasetError(f"{path}: no matrix_spec block")
    return spec


def format_metadata(spec: DataSpecification) -> str:
    # Field numbers put is_sequence and sample_count on lines 1-2, where readers in the
    # wild look for sample_count.
    return text_format.MessageToString(spec)


def read_solution(path, expected_rows=None, expected_cols=None) -> np.ndarray:
    """The 0/1 label matrix of a .solution file, shape-checked when shapes are given."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: solution file is missing")
    try:
        solution = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DatasetError(f"{path}: not a matrix of numbers ({e})") from None
    if expected_rows is not None and solution.shape[0] != expected_rows:
        raise DatasetError(f"{path}: {solution.shape[0]} rows, but the test split has "
                           f"{expected_rows} records")
    if expected_cols is not None and solution.shape[1] != expected_cols:
        raise DatasetError(f"{path}: {solution.shape[1]} columns, but output_dim is "
                           f"{expected_cols}")
    bad = np.argwhere((solution != 0) & (solution != 1))
    if len(bad):
        row, col = bad[0]
        raise DatasetError(f"{path}: row {row + 1}, column {col + 1} holds "
                           f"{solution[row, col]:g}; labels must be 0 or 1")
    return solution
