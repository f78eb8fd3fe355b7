"""fit (convert if needed, run our model under a budget through the local runner, keep its
predictions and model) and predict (a saved model on new images)."""
import contextlib
import csv
import errno
import fcntl
import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from autodl import convert, flags, guard

from . import REPO, metrics, report


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


def _has_images(folder):
    return any(os.path.splitext(f)[1].lower() in convert.IMAGE_EXTENSIONS
               for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))


def refuse_split_parent(data):
    """A folder whose subfolders are themselves folders of classes (train/, val/) is a folder
    of splits, not of classes: say which flags the user meant."""
    if not os.path.isdir(data) or _is_autodl_dir(data):
        return
    subs = sorted(d for d in os.listdir(data)
                  if os.path.isdir(os.path.join(data, d)) and not d.startswith("."))
    if not subs or any(_has_images(os.path.join(data, d)) for d in subs):
        return
    nested = [d for d in subs if any(os.path.isdir(os.path.join(data, d, x))
                                     for x in os.listdir(os.path.join(data, d)))]
    if len(nested) == len(subs):
        train = next((d for d in subs if d.lower().startswith("train")), subs[0])
        valid = next((d for d in subs if d.lower().startswith(("val", "dev"))), None)
        hint = f"--data {os.path.join(data, train)}"
        if valid:
            hint += f" [--valid {os.path.join(data, valid)}]"
        raise UserError(f"{data}: looks like a folder of splits "
                        f"({', '.join(d + '/' for d in subs)}): use {hint}")


def check_test_ratio(value):
    if not (math.isfinite(value) and 0 <= value < 1):
        raise UserError(f"--test_ratio must be at least 0 and below 1, got {value:g}")


def _prepare_dataset(data, images, dest, test_ratio, seed, valid=None, progress=True):
    """An AutoDL folder as it is; anything else converted into `dest`."""
    if _is_autodl_dir(data):
        if valid or test_ratio == 0:
            raise UserError(f"{data}: an AutoDL dataset keeps its own test split; --valid "
                            "and --test_ratio apply to folders and CSV files")
        return data
    held_out = convert.EVERYTHING if test_ratio == 0 else None
    kw = {"test_ratio": test_ratio or 0.2, "seed": seed, "overwrite": True}
    if os.path.isfile(data) and data.lower().endswith(".csv"):
        if valid or held_out:
            raise UserError(f"{data}: --valid and --test_ratio 0 apply to class folders; "
                            "give --data as a folder")
        return convert.convert_csv(data, images or os.path.dirname(os.path.abspath(data)),
                                   dest, **kw)
    if not os.path.isdir(data):
        raise UserError(f"{data}: not a folder, a CSV file or an AutoDL dataset")
    refuse_split_parent(data)
    has_video = any(os.path.splitext(f)[1].lower() in convert.VIDEO_EXTENSIONS
                    for _, _, files in os.walk(data) for f in files)
    if has_video:
        if valid or held_out:
            raise UserError(f"{data}: --valid and --test_ratio 0 apply to image folders")
        return convert.convert_video(data, dest, **kw)
    if valid:
        if not os.path.isdir(valid):
            raise UserError(f"{valid}: --valid must be a folder of class folders")
        # The valid images open the training split too: the model holds out exactly those
        # (data.holdout_first, set by _fit_dataset) and the test split scores them again.
        return convert.convert_folders(data, valid, dest, overwrite=True, progress=progress,
                                       valid_first=True)
    return convert.convert_folder(data, dest, held_out=held_out, progress=progress, **kw)


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


def default_out(data, now=None):
    """A new folder in the current one, named after the data and the time."""
    stem = convert._dataset_name(os.path.basename(os.path.abspath(data)))
    return os.path.abspath(f"{stem}-fit-{time.strftime('%Y%m%d-%H%M%S', now or time.localtime())}")


def fit(args):
    """Run a fit as the options in `args` say; returns a dict: out, status (exit code),
    model (the model file, or None), scores (held-out, or None), report (text)."""
    check_budget(args.time_budget)
    check_test_ratio(args.test_ratio)
    if not os.path.isfile(os.path.join(REPO, "model.py")):
        raise UserError(f"{REPO}: no model.py here; fit runs from a checkout "
                        f"(pip install -e .)")
    if not os.path.exists(args.data):
        raise UserError(f"{args.data}: no such file or folder")
    refuse_split_parent(args.data)
    out = os.path.abspath(args.out or default_out(args.data))
    # OUT/dataset and OUT/run are replaced: OUT must keep clear of the data and of the code.
    guard.refuse_overlap("--out", out, [("data", args.data)], UserError)
    guard.refuse_overlap("--out", out, [("images folder", args.images), ("repository", REPO),
                                        ("validation folder", args.valid)],
                         UserError, allow_inside=True)
    converting = not _is_autodl_dir(args.data)
    overwrite = getattr(args, "overwrite", False)
    claim_out(out, overwrite, converting)  # before anything is created there
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    if not args.out:
        print(f"writing to {out}", file=sys.stderr)
    lock = lock_out(out)
    ok = False
    try:
        made = claim_out(out, overwrite, converting)  # again, now that no other fit runs
        _mark_out(out, made, converting)
        result = _fit(args, out, converting)
        ok = result["model"] is not None
        return result
    finally:
        lock.close()
        if created and not ok:  # a fit with no model leaves no half-written folder behind
            shutil.rmtree(out, ignore_errors=True)


def _fit(args, out, converting):
    keep = getattr(args, "keep_dataset", False) or not converting
    scratch = None if keep else tempfile.mkdtemp(prefix="autoclint-dataset-")
    try:
        dest = os.path.join(out, "dataset") if keep else os.path.join(scratch, "dataset")
        return _fit_dataset(args, out, dest)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


MIN_HELD_OUT = 5  # per class: fewer makes a held-out score a coin toss


def few_held_out(labels, counts, valid):
    """One warning line when a class has fewer than MIN_HELD_OUT held-out images (the
    --valid folder's, or the --test_ratio split's), else None."""
    few = [(c, int(n)) for c, n in zip(labels, counts) if n < MIN_HELD_OUT]
    if not few:
        return None
    shown = ", ".join(f"{c} ({n})" for c, n in few[:3]) + (", ..." if len(few) > 3 else "")
    if valid:
        return (f"warning: the --valid folder has fewer than {MIN_HELD_OUT} images of "
                f"{shown}; the model is chosen and scored on it, roughly (add images to it)")
    return (f"warning: the held-out split has fewer than {MIN_HELD_OUT} images of {shown}; "
            "its scores are rough (pass --valid DIR or a larger --test_ratio)")


def _fit_dataset(args, out, dest):
    from autodl.run_local_test import check_dataset, format_summary, run
    # TensorFlow, where the runner's hand-off loads it, opens with lines of C++ noise.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    progress = not args.quiet and sys.stderr.isatty()  # a bar in a file: a frame a line
    no_held_out = args.test_ratio == 0 and not args.valid  # --valid: the ratio is unused
    dataset = _prepare_dataset(args.data, args.images, dest, args.test_ratio, args.seed,
                               args.valid, progress=progress)
    name = os.path.basename(glob.glob(os.path.join(dataset, "*.data"))[0])[:-len(".data")]
    labels = _read_lines(os.path.join(dataset, f"{name}_label.name"))
    _, _, solution = check_dataset(dataset)  # one-line DatasetError for a malformed one
    if not labels or len(labels) != solution.shape[1]:  # absent, or names that broke lines
        labels = [str(i) for i in range(solution.shape[1])]
    if no_held_out:
        print("warning: --test_ratio 0: every image goes to the model, so no held-out score "
              "exists (the model still sets a few aside to choose its candidates; pass "
              "--valid DIR for a score)", file=sys.stderr)
    else:
        warning = few_held_out(labels, solution.sum(axis=0), bool(args.valid))
        if warning:
            print(warning, file=sys.stderr)
    model_path = os.path.join(out, "model.pt")
    if os.path.exists(model_path):
        os.unlink(model_path)  # never hand back a model from an earlier run
    os.environ["AUTOCLINT_SAVE_DIR"] = out  # inherited by ingestion: model.py saves there
    run_dir = os.path.join(out, "run")
    # --valid: the model's held-out set is the valid folder, the first records of the
    # training split (_prepare_dataset); the run, a subprocess, reads AUTOCLINT_CONFIG.
    holdout = {"data": {"holdout_first": int(solution.shape[0])}} if args.valid else None
    with _config_env(holdout):
        summary = run(dataset, REPO, args.time_budget,
                      output_dir=os.path.join(run_dir, "output"),
                      score_dir=os.path.join(run_dir, "scores"),
                      progress=progress or (not args.quiet and "lines"),
                      echo=bool(args.verbose))
    if not no_held_out and args.verbose:
        print(format_summary(summary), flush=True)  # the challenge's figures
    if os.path.exists(os.path.join(run_dir, "scores", "run.json")):
        shutil.copy(os.path.join(run_dir, "scores", "run.json"), os.path.join(out, "run.json"))
    curve = os.path.join(run_dir, "scores", f"learning-curve-{name}.png")
    if os.path.exists(curve):
        shutil.copy(curve, os.path.join(out, "learning-curve.png"))
    predictions = glob.glob(os.path.join(run_dir, "output", f"{name}.predict_*"))
    if not predictions:
        tail = _read_tail(os.path.join(run_dir, "output", "ingestion.log"))
        raise UserError(f"the model made no prediction in {args.time_budget:g} s"
                        + (f" (the log ends: {tail})" if tail else ""))
    last = max(predictions, key=lambda p: int(p.rsplit("_", 1)[1]))
    with open(last) as f:
        rows = [[float(v) for v in line.split()] for line in f if line.strip()]
    names = _read_lines(os.path.join(dataset, name + convert.TEST_FILES_SUFFIX))
    if names is None or len(names) != len(rows):
        names = [f"test record {i}" for i in range(len(rows))]
    saved = os.path.exists(model_path)
    if not saved:
        tail = _read_tail(os.path.join(run_dir, "output", "ingestion.log"))
        raise UserError(f"no model saved in {args.time_budget:g} s"
                        + (f" (the log ends: {tail})" if tail else ""))
    probs = as_probabilities(rows, model_path)
    scores = None if no_held_out else metrics.score(solution, probs, labels)
    write_predictions(os.path.join(out, "predictions.csv"), names, labels, probs)
    text = report.fit_report(args, out, model_path, summary, scores, solution.shape[0],
                             no_held_out)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text, flush=True)
    print(f"wrote {out}/: model.pt, predictions.csv, report.md, learning-curve.png, run.json",
          file=sys.stderr)
    status = 0 if summary["ingestion_success"] or summary["num_predictions"] else 1
    return {"out": out, "status": status, "model": model_path, "scores": scores,
            "report": text}


@contextlib.contextmanager
def _config_env(overrides):
    """AUTOCLINT_CONFIG with `overrides` merged over what it holds (the user's --config),
    for as long as the block runs; restored after (the API may fit again in-process)."""
    if not overrides:
        yield
        return
    before = os.environ.get(flags.CONFIG_ENV)
    try:
        merged = json.loads(before) if before else {}
    except ValueError as e:
        raise UserError(f"{flags.CONFIG_ENV}: not JSON ({e})") from None
    if not isinstance(merged, dict):
        raise UserError(f"{flags.CONFIG_ENV}: must hold a JSON object of settings")
    for section, values in overrides.items():
        if not isinstance(merged.get(section), dict):
            merged[section] = {}
        merged[section].update(values)
    os.environ[flags.CONFIG_ENV] = json.dumps(merged)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(flags.CONFIG_ENV, None)
        else:
            os.environ[flags.CONFIG_ENV] = before


def _read_tail(path):
    lines = _read_lines(path) or []
    lines = [line for line in lines if line.strip()]
    return " ".join(lines[-1].split())[:200] if lines else ""


def find_model(path):
    """A model file, or a folder that holds model.pt (a fit's --out)."""
    if os.path.isdir(path):
        inside = os.path.join(path, "model.pt")
        if not os.path.isfile(inside):
            raise UserError(f"{path}: a folder without model.pt (give fit's --out or the "
                            "model file)")
        return inside
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such model file or folder")
    return path


def load_predictor(path):
    from skeleton import persist
    path = find_model(path)
    try:
        return path, persist.load(path)
    except persist.ModelFileError as e:
        raise UserError(str(e)) from None


def image_files(items):
    """[(path, name shown)] of image files: files as given, folders searched recursively
    (names relative to the folder)."""
    if isinstance(items, (str, os.PathLike)):
        items = [items]
    items = [os.fspath(item) for item in items]
    found = []
    for item in items:
        if os.path.isdir(item):
            # One folder: names relative to it; several: paths, which cannot collide.
            base = item if len(items) == 1 else None
            found += sorted((os.path.join(d, f), os.path.relpath(os.path.join(d, f), base)
                             if base else os.path.join(d, f))
                            for d, _, files in os.walk(item) for f in files
                            if os.path.splitext(f)[1].lower() in convert.IMAGE_EXTENSIONS)
        elif os.path.isfile(item):
            found.append((item, item))
        else:
            raise UserError(f"{item}: no such image file or folder")
    return found


def predict_files(predictor, found, where):
    """(names, probabilities [N, C]) of the readable files; unreadable ones are reported."""
    readable = [(p, n) for p, n in found if convert._probe_image(p) is not None]
    if not readable:
        raise UserError(f"{where}: no readable images")
    probs = predictor.predict_files([p for p, _ in readable])
    return [n for _, n in readable], np.asarray(probs), [p for p, _ in readable]


def labelled_files(folder, label_names):
    """[(path, name)] and the [N, C] 0/1 truth of a folder of class folders."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: not a folder (evaluate needs FOLDER/CLASS/*.jpg)")
    refuse_split_parent(folder)
    classes = sorted(d for d in os.listdir(folder)
                     if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    if not classes:
        raise UserError(f"{folder}: no class folders (evaluate needs {folder}/CLASS/*.jpg)")
    unknown = [c for c in classes if c not in label_names]
    if unknown:
        raise UserError(f"{os.path.join(folder, unknown[0])}: a class the model does not know "
                        f"(it knows {', '.join(label_names)})")
    found, truth = [], []
    for c in classes:
        files = image_files(os.path.join(folder, c))
        found += [(p, os.path.join(c, n)) for p, n in files]
        truth += [label_names.index(c)] * len(files)
    return found, truth
