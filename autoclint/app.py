"""fit (convert if needed, run our model under a budget through the local runner, keep its
predictions and model) and predict (a saved model on new images)."""
import csv
import errno
import fcntl
import glob
import json
import math
import os
import shutil
import sys

from autodl import convert, guard

from . import REPO


class UserError(ValueError):
    """Input the tool refuses: one line for the user, exit status 2."""


# What fit made in --out, so that a later fit replaces only that; and the lock of a fit.
MARK_FILE = ".autoclint-fit.json"
LOCK_FILE = ".autoclint-fit.lock"
FOLDERS = ("dataset", "run")  # replaced as a whole: only ever when fit made them
FILES = ("model.pt", "run.json", "learning-curve.png", "predictions.csv")


def _made_by_fit(out):
    try:
        with open(os.path.join(out, MARK_FILE)) as f:
            made = json.load(f).get("made", [])
        return {name for name in made if name in FOLDERS + FILES}
    except (OSError, ValueError, AttributeError):
        return set()


def claim_out(out, overwrite, converting):
    """Refuse an --out holding anything fit did not write (with --overwrite: anything fit
    would replace); returns the names fit may replace there."""
    if os.path.islink(out) or (os.path.exists(out) and not os.path.isdir(out)):
        raise UserError(f"{out}: --out must be a folder (not a file or a link)")
    if not os.path.exists(out):
        return set()
    made = _made_by_fit(out)
    foreign = sorted(set(os.listdir(out)) - made - {MARK_FILE, LOCK_FILE})
    ours_to_write = set(FILES) | {"run"} | ({"dataset"} if converting else set())
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"{out}: holds files fit did not write ({shown}); choose a new or "
                        "empty folder, or pass --overwrite (fit then replaces only its own "
                        "files)")
    clash = [name for name in foreign if name in ours_to_write]
    if clash:
        raise UserError(f"{os.path.join(out, clash[0])}: not written by fit; refusing to "
                        "replace it (even with --overwrite), choose another --out")
    return made


def lock_out(out):
    """An exclusive lock on --out for this process's fit; UserError if another fit holds it.
    The returned file must stay open for as long as the fit writes."""
    fd = os.open(os.path.join(out, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW |
                 os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise UserError(f"{out}: another fit is writing here; wait for it to end or "
                            "choose another --out") from None
        raise
    return os.fdopen(fd, "r+")


def _mark_out(out, made, converting):
    names = made | set(FILES) | {"run"} | ({"dataset"} if converting else set())
    with open(os.path.join(out, MARK_FILE), "w") as f:
        json.dump({"made": sorted(names)}, f)


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


def write_predictions(path, names, labels, rows):
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


def as_probabilities(rows, model_path):
    """The quick model hands back scores (only their ranks matter to AutoDL): rows outside
    [0, 1] become probabilities the way the saved model says (sigmoid when it was trained
    multi-label, else softmax). Without a saved model the scores stay as they are."""
    import numpy as np
    scores = np.asarray(rows, np.float64)
    if scores.size == 0 or (scores.min() >= 0 and scores.max() <= 1):
        return scores.tolist()
    from skeleton import persist
    from skeleton.predict import to_probabilities
    try:
        multi_label = persist.read_description(model_path)["profile"]["multi_label"]
    except (persist.ModelFileError, KeyError, TypeError):
        print(f"warning: {model_path}: no model description; predictions.csv holds the "
              f"model's raw scores", file=sys.stderr)
        return scores.tolist()
    return to_probabilities(scores, bool(multi_label)).tolist()


def check_budget(value):
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"--time_budget must be a positive number of seconds, got {value:g}")


def fit(args):
    check_budget(args.time_budget)
    if not os.path.isfile(os.path.join(REPO, "model.py")):
        raise UserError(f"{REPO}: no model.py here; fit runs from a checkout "
                        f"(pip install -e .)")
    out = os.path.abspath(args.out)
    # OUT/dataset and OUT/run are replaced: OUT must keep clear of the data and of the code.
    guard.refuse_overlap("--out", out, [("data", args.data)], UserError)
    guard.refuse_overlap("--out", out, [("images folder", args.images), ("repository", REPO)],
                         UserError, allow_inside=True)
    converting = not _is_autodl_dir(args.data)
    overwrite = getattr(args, "overwrite", False)
    claim_out(out, overwrite, converting)  # before anything is created there
    os.makedirs(out, exist_ok=True)
    lock = lock_out(out)
    try:
        made = claim_out(out, overwrite, converting)  # again, now that no other fit runs
        _mark_out(out, made, converting)
        return _fit(args, out)
    finally:
        lock.close()


def _fit(args, out):
    from autodl.run_local_test import format_summary, run
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
    if os.path.exists(os.path.join(run_dir, "scores", "run.json")):
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
    saved = os.path.exists(model_path)
    if not saved:
        print(f"warning: no model saved (see {run_dir}/output/ingestion.log)", file=sys.stderr)
    write_predictions(os.path.join(out, "predictions.csv"), names, labels,
                      as_probabilities(rows, model_path) if saved else rows)
    print(f"wrote {out}/predictions.csv, learning-curve.png" + (", model.pt" if saved else ""),
          file=sys.stderr)
    return 0 if summary["ingestion_success"] or summary["num_predictions"] else 1


def predict(args):
    if not os.path.isfile(args.model):
        raise UserError(f"{args.model}: no such model file")
    if not os.path.isdir(args.data):
        raise UserError(f"{args.data}: not a folder")
    out_folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_folder):
        raise UserError(f"{args.out}: the folder {out_folder} does not exist")
    from skeleton import persist
    from skeleton.predict import to_probabilities
    try:
        predictor = persist.load(args.model)
    except persist.ModelFileError as e:
        raise UserError(str(e)) from None
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(args.data) for f in files
                   if os.path.splitext(f)[1].lower() in convert.IMAGE_EXTENSIONS)
    readable = [p for p in paths if convert._probe_image(p) is not None]  # reports the rest
    if not readable:
        raise UserError(f"{args.data}: no readable images")
    probs = predictor.predict_files(readable)
    names = [os.path.relpath(p, args.data) for p in readable]
    write_predictions(args.out, names, predictor.label_names, probs.tolist())
    print(f"wrote {args.out}: {len(readable)} images", file=sys.stderr)
    return 0
