"""The Python API; the command line (autoclint/__main__.py) calls these same functions.

    from autoclint import fit, load
    model = fit("photos/train", valid="photos/val", time_budget=90, out="out1")
    model = load("out1")                       # the folder, or out1/model.pt
    preds = model.predict("new_photos/")       # a folder, a file or a list of files
    preds.classes, preds.probabilities         # top class names, [N, C] numpy array
    preds.to_pandas()                          # file, class, one column per class
    model.evaluate("photos/val")               # a dict: accuracy (top-1), per class, ...
"""
import dataclasses
import os
import sys
import types

import numpy as np

from . import app, metrics


@dataclasses.dataclass
class Predictions:
    """files: names as shown in the CSV; probabilities: [N, C] over label_names."""
    files: list
    label_names: list
    probabilities: np.ndarray
    paths: list

    @property
    def classes(self):
        """The top class of each file."""
        return [self.label_names[i] for i in self.probabilities.argmax(axis=1)]

    def to_pandas(self):
        """A DataFrame: file, class, one probability column per class (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas (pip install pandas); .files, .classes "
                              "and .probabilities hold the same as lists and numpy") from None
        frame = pd.DataFrame(self.probabilities, columns=self.label_names)
        frame.insert(0, "class", self.classes)
        frame.insert(0, "file", self.files)
        return frame

    def to_csv(self, path):
        app.write_predictions(path, self.files, self.label_names, self.probabilities.tolist())


class Model:
    """A model saved by fit: predict new images, evaluate on a labelled folder."""

    def __init__(self, path, predictor, fit_result=None):
        self.path = path
        self.predictor = predictor
        self.label_names = list(predictor.label_names)
        self.fit_result = fit_result  # for a model fit() returned: out, status, scores, report

    def __repr__(self):
        return f"Model({self.path!r}, classes={self.label_names})"

    def predict(self, images):
        """images: a folder (searched recursively), an image file, or a list of either."""
        found = app.image_files(images)
        where = images if isinstance(images, (str, os.PathLike)) else "the images given"
        names, probs, paths = app.predict_files(self.predictor, found, where)
        return Predictions(names, self.label_names, probs.astype(np.float64), paths)

    def evaluate(self, folder, out=None):
        """Scores on FOLDER/CLASS/*.jpg: top-1 and balanced accuracy, per-class precision and
        recall, confusion matrix, AUC/NAUC. With `out`, also writes there the confusion
        matrix (confusion.png), the scores (evaluation.json) and predictions.csv."""
        found, truth = app.labelled_files(os.fspath(folder), self.label_names)
        names, probs, paths = app.predict_files(self.predictor, found, folder)
        known = {p: t for (p, _), t in zip(found, truth)}
        onehot = np.zeros((len(paths), len(self.label_names)))
        onehot[np.arange(len(paths)), [known[p] for p in paths]] = 1
        result = metrics.score(onehot, probs, self.label_names)
        if out is not None:
            _write_evaluation(out, result, Predictions(names, self.label_names, probs, paths))
        return result


def _write_evaluation(out, result, predictions):
    import json
    if os.path.exists(out) and not os.path.isdir(out):
        raise app.UserError(f"{out}: not a folder")
    os.makedirs(out, exist_ok=True)
    for name in ("confusion.png", "evaluation.json", "predictions.csv"):
        if os.path.isdir(os.path.join(out, name)):
            raise app.UserError(f"{os.path.join(out, name)}: is a folder")
    metrics.plot_confusion(result, os.path.join(out, "confusion.png"))
    with open(os.path.join(out, "evaluation.json"), "w") as f:
        json.dump(result, f, indent=1)
    predictions.to_csv(os.path.join(out, "predictions.csv"))


def load(path):
    """The model saved by fit in `path` (a model.pt, or the folder fit wrote)."""
    found, predictor = app.load_predictor(os.fspath(path))
    return Model(found, predictor)


def fit(data, time_budget=60, out=None, valid=None, *, images=None, test_ratio=0.2, seed=0,
        overwrite=False, keep_dataset=False, quiet=False, verbose=False, config=None):
    """Train on `data` (FOLDER/CLASS/*.jpg, a CSV FileName,Labels, a video folder or an AutoDL
    dataset) for `time_budget` seconds; returns the Model saved in `out` (default: a new
    folder named after the data and the time). `valid`: a folder of class folders the model
    is chosen on (never trained on) and scored on, instead of a `test_ratio` share;
    test_ratio=0 gives every image to the model (no held-out score)."""
    from autodl import flags
    flags.apply_submission_settings(config, verbose)
    args = types.SimpleNamespace(
        data=os.fspath(data), time_budget=float(time_budget),
        out=None if out is None else os.fspath(out),
        valid=None if valid is None else os.fspath(valid),
        images=None if images is None else os.fspath(images), test_ratio=float(test_ratio),
        seed=int(seed), overwrite=overwrite, keep_dataset=keep_dataset, quiet=quiet,
        verbose=verbose)
    result = app.fit(args)
    found, predictor = app.load_predictor(result["model"])
    if result["status"]:
        print("warning: the run reported a failure; the model is the best it saved",
              file=sys.stderr)
    return Model(found, predictor, result)
