"""The ingestion program: runs a submission's Model under the time budget.

It checks the dataset, builds the tf.data datasets, starts the clock, imports the
submission's model.py, and loops train() / test() until done_training, writing each
prediction as NAME.predict_k (atomically) and its time in start.txt.

    python -m autodl.ingestion --dataset_dir D --output_dir O --code_dir C --time_budget T

Clock rules (--clock_rule): 2019-05 (default) starts the clock right before model.py is
imported, so the submission's imports and construction count; 2019-08 starts it right before
Model(metadata); 2019-12 starts it after construction, which may take at most 20 minutes.
"""
import argparse
import importlib
import os
import sys
import tempfile
import threading
import time
import traceback
import zipfile

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `autodl` package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autodl import layout, runfiles  # noqa: E402
from autodl.flags import add_flag  # noqa: E402
from autodl.tfdata import TensorFlowMissing  # noqa: E402  (no TensorFlow import)
from autodl.reader import check_splits  # noqa: E402

CLOCK_RULES = ("2019-05", "2019-08", "2019-12")
CONSTRUCTION_CAP_S = 20 * 60  # 2019-12 rule: construction outside the budget, at most this
WATCHDOG_GRACE_S = 3.0  # ingestion stops itself this long after T if nobody else has
# A submission zip may unpack to at most this much and this many entries (the platform takes
# zips up to 300 MB; a zip bomb must not fill the disk).
ZIP_MAX_BYTES = 2 * 2 ** 30
ZIP_MAX_ENTRIES = 20000


class SubmissionError(Exception):
    """The submission broke the protocol or raised; the message says how."""


def _log(message):
    print(f"[ingestion] {message}", file=sys.stderr, flush=True)


def resolve_code_dir(code_dir, scratch):
    """The folder holding model.py: code_dir itself, or a submission zip unpacked."""
    code_dir = source = os.path.abspath(code_dir)
    if os.path.isfile(code_dir) and zipfile.is_zipfile(code_dir):
        target = tempfile.mkdtemp(prefix="submission-", dir=scratch)
        extract_zip(code_dir, target)
        code_dir = target
    elif not os.path.isdir(code_dir):
        raise SubmissionError(f"{code_dir}: code_dir is neither a folder nor a zip file")
    if not os.path.isfile(os.path.join(code_dir, "model.py")):
        # Named after what the user gave: the unpack folder is temporary.
        raise SubmissionError(f"{source}: no model.py at the root of the submission")
    return code_dir


def extract_zip(path, target, max_bytes=None, max_entries=None):
    """Unpack a submission zip into target, refusing one over the size or entry limits.

    The sizes are counted as the bytes come out, not taken from the zip's own directory,
    which a crafted zip can fill with anything.
    """
    max_bytes = ZIP_MAX_BYTES if max_bytes is None else max_bytes
    max_entries = ZIP_MAX_ENTRIES if max_entries is None else max_entries
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > max_entries:
                raise SubmissionError(f"{path}: {len(members)} entries, over the limit of "
                                      f"{max_entries}")
            total = 0
            for info in members:
                if info.is_dir():
                    archive.extract(info, target)
                    continue
                # Absolute names and .. parts are dropped: every file lands inside target.
                dest = os.path.join(target, *[p for p in info.filename.split("/")
                                              if p not in ("", ".", "..")])
                if not dest.startswith(os.path.join(target, "")):
                    raise SubmissionError(f"{path}: entry {info.filename!r} leaves the folder")
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with archive.open(info) as src, open(dest, "wb") as out:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > max_bytes:
                            raise SubmissionError(f"{path}: unpacks to more than "
                                                  f"{max_bytes / 2 ** 20:.0f} MB, over the "
                                                  "limit")
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError) as e:
        raise SubmissionError(f"{path}: cannot unpack the submission zip ({e})") from None


def block_triton():
    """Importing tensorflow and then anything that loads triton segfaults the interpreter.

    Marking triton as absent makes torch skip it (it is only needed for GPU kernels that
    torch.compile generates); AUTODL_ALLOW_TRITON=1 opts out.
    """
    if os.environ.get("AUTODL_ALLOW_TRITON") != "1" and "triton" not in sys.modules:
        sys.modules["triton"] = None


def load_model_class(code_dir):
    sys.path.insert(0, code_dir)
    sys.modules.pop("model", None)
    module = call_submission("importing model.py", importlib.import_module, "model")
    # A module __getattr__ is submission code too.
    model_class = call_submission("reading model.Model", getattr, module, "Model", None)
    if model_class is None:
        raise SubmissionError(f"{module.__file__}: defines no class Model")
    return model_class


def check_prediction(prediction, shape, k):
    # Converting runs the submission's code (__array__, __len__, __getitem__, __float__).
    try:
        array = np.asarray(prediction, dtype=np.float64)
    except (Exception, SystemExit) as e:
        raise SubmissionError(f"test() call {k} returned something that is not a numeric "
                              f"array ({type(prediction).__name__}: {type(e).__name__}: "
                              f"{e})") from None
    if array.shape != shape:
        raise SubmissionError(f"test() call {k} returned shape {array.shape}, expected {shape} "
                              "(test records x classes)")
    if not np.isfinite(array).all():
        raise SubmissionError(f"test() call {k} returned NaN or infinite values")
    return array


def call_submission(what, function, *args, **kwargs):
    """Call submission code; whatever it raises (sys.exit too) becomes a SubmissionError."""
    try:
        return function(*args, **kwargs)
    except (Exception, SystemExit) as e:
        raise SubmissionError(f"{what} raised {type(e).__name__}: {e}") from e


class FolderOutbox:
    """Reports as files in output_dir (the platform's way: start.txt, NAME.predict_k, end.txt)."""

    def __init__(self, output_dir):
        self.output_dir = output_dir

    def clock(self, *, task_name, time_budget, start_time, clock_rule):
        runfiles.write_start(self.output_dir, pid=os.getpid(), task_name=task_name,
                             time_budget=time_budget, start_time=start_time,
                             clock_rule=clock_rule)

    def prediction(self, task_name, k, stamp, prediction):
        runfiles.append_timestamp(self.output_dir, k, stamp)
        runfiles.write_prediction(runfiles.prediction_path(self.output_dir, task_name, k),
                                  prediction)

    def end(self, *, duration, success, error=None):
        runfiles.write_end(self.output_dir, duration=duration, success=success,
                           end_time=time.time(), error=error)


class PipeOutbox:
    """Reports on the local runner's pipe; the runner stamps, writes and scores."""

    def __init__(self, fd):
        self.fd = fd
        self.lock = threading.Lock()

    def _send(self, header, matrix=None):
        try:
            with self.lock:
                runfiles.send_all(self.fd, runfiles.encode_message(header, matrix))
        except OSError:
            pass  # the runner is gone: nobody to report to

    def clock(self, **_):
        self._send("clock")

    def prediction(self, task_name, k, stamp, prediction):
        self._send("predict", prediction)

    def end(self, *, duration, success, error=None):
        self._send(f"end {int(success)} {error or ''}")


def start_watchdog(deadline, outbox, started):
    """Stop this process shortly after the budget if scoring has not stopped it already."""
    def watch():
        while time.time() < deadline + WATCHDOG_GRACE_S:
            time.sleep(0.2)
        _log("time budget exceeded: stopping")
        outbox.end(duration=time.time() - started, success=False,
                   error="time budget exceeded")
        os._exit(3)

    threading.Thread(target=watch, name="autodl-watchdog", daemon=True).start()


def run(dataset_dir, output_dir, code_dir, time_budget, clock_rule="2019-05", outbox=None):
    """Run the submission; returns the number of predictions made."""
    started = time.time()
    outbox = outbox or FolderOutbox(output_dir)
    data_dir = layout.find_data_dir(dataset_dir)
    name = layout.task_name(data_dir)
    train_dir = layout.split_dir(data_dir, "train")
    test_dir = layout.split_dir(data_dir, "test")
    check_splits(data_dir)
    # Under the runner, TMPDIR is a folder it removes after the run.
    scratch = output_dir if isinstance(outbox, FolderOutbox) else tempfile.gettempdir()
    code_dir = resolve_code_dir(code_dir, scratch)

    # Built here, before the clock, when TensorFlow imports; without it, on first use.
    from autodl.tfdata import AutoDLDataset
    train_set, test_set = AutoDLDataset(train_dir), AutoDLDataset(test_dir)
    train_data, test_data = train_set.get_dataset(), test_set.get_dataset()
    shape = (test_set.get_metadata().size(), test_set.get_metadata().get_output_size())
    block_triton()

    clock = {}

    def start_clock():
        clock["start"] = time.time()
        outbox.clock(task_name=name, time_budget=time_budget, start_time=clock["start"],
                     clock_rule=clock_rule)
        start_watchdog(clock["start"] + time_budget, outbox, started)
        _log(f"clock started ({clock_rule} rule), budget {time_budget:g} s")

    if clock_rule == "2019-05":
        start_clock()
    model_class = load_model_class(code_dir)
    if clock_rule == "2019-08":
        start_clock()
    constructing = time.time()
    model = call_submission("Model(metadata)", model_class, train_set.get_metadata())
    if clock_rule == "2019-12":
        if time.time() - constructing > CONSTRUCTION_CAP_S:
            raise SubmissionError(f"Model(metadata) took over {CONSTRUCTION_CAP_S} s")
        start_clock()

    def remaining():
        return time_budget - (time.time() - clock["start"])

    def done_training():  # a property is submission code: what it raises is the submission's
        return call_submission("reading done_training",
                               lambda: bool(getattr(model, "done_training", False)))

    k = 0
    while not done_training() and remaining() > 0:
        call_submission(f"train() call {k}", model.train, train_data,
                        remaining_time_budget=remaining())
        if remaining() <= 0:
            break
        prediction = call_submission(f"test() call {k}", model.test, test_data,
                                     remaining_time_budget=remaining())
        if prediction is None:
            _log(f"test() call {k} returned None: training ends")
            break
        stamp = time.time()
        prediction = check_prediction(prediction, shape, k)
        outbox.prediction(name, k, stamp, prediction)
        _log(f"prediction {k} written at {stamp - clock['start']:.2f} s")
        k += 1
    return k


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_flag(parser, "dataset_dir", required=True, help="folder with NAME.data/")
    add_flag(parser, "output_dir", required=True, help="where predictions are written")
    add_flag(parser, "code_dir", required=True, help="submission folder or zip with model.py")
    add_flag(parser, "time_budget", type=float, default=1200.0, help="seconds (default 1200)")
    add_flag(parser, "clock_rule", choices=CLOCK_RULES, default="2019-05",
             help="when the clock starts (default 2019-05: before model.py is imported)")
    # Accepted for compatibility with the platform's command line; not needed here.
    add_flag(parser, "ingestion_program_dir", default=None, help=argparse.SUPPRESS)
    add_flag(parser, "score_dir", default=None, help=argparse.SUPPRESS)
    # The local runner's pipe: report there instead of writing files (see runfiles).
    add_flag(parser, "report_fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    started = time.time()
    if args.report_fd is not None:
        outbox = PipeOutbox(args.report_fd)
    else:
        os.makedirs(args.output_dir, exist_ok=True)
        outbox = FolderOutbox(args.output_dir)
    error, code = None, 0
    try:
        count = run(args.dataset_dir, args.output_dir, args.code_dir, args.time_budget,
                    args.clock_rule, outbox)
        _log(f"done: {count} predictions in {time.time() - started:.1f} s")
    except layout.DatasetError as e:
        error, code = f"bad dataset: {e}", 2
    except SubmissionError as e:
        error, code = str(e), 1
        # The submission's own traceback helps its author; a missing TensorFlow is one line.
        if e.__cause__ is not None and not isinstance(e.__cause__, TensorFlowMissing):
            traceback.print_exception(e.__cause__, file=sys.stderr)
    if error:
        _log(f"error: {error}")
    outbox.end(duration=time.time() - started, success=code == 0, error=error)
    return code


if __name__ == "__main__":
    sys.exit(main())
