"""Run a submission on a dataset the way the platform does, and report its score.

    python autodl/run_local_test.py -dataset_dir=DIR [-code_dir=DIR|ZIP] -time_budget=SECONDS
    (also `python -m autodl run ...`, or `autodl-run ...` once installed)

Without -code_dir it runs the submission at the repository root (our model.py); the
baseline is -code_dir=autodl/reference_submission.

Ingestion (the submission, in its own session, on a staged copy of NAME.data/ with no
.solution above it) runs as a process; scoring runs here, in the runner. Nothing the
submission writes is read back: ingestion reports on a pipe, this runner stamps each report on
arrival, scores it from memory against the solution it read itself, writes the prediction
files, stops ingestion at clock start + T and then kills every process the submission
started. Outputs: autodl/AutoDL_sample_result_submission/ (predictions, start.txt, end.txt,
ingestion.log) and autodl/AutoDL_scoring_output/ (scores.txt, scores.json,
learning-curve-NAME.png, detailed_results.html, run.json).

This module is the command line and the run itself (reports, scores, the progress bar and
the summary); autodl.supervise starts ingestion and keeps, stops and sweeps its process tree.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make the `autodl` package importable
    sys.path.insert(0, os.path.dirname(HERE))

from autodl import guard, layout, report, runfiles, score, supervise  # noqa: E402
from autodl.flags import FlagError, add_flag, apply_submission_settings, str2bool  # noqa: E402
from autodl.ingestion import CLOCK_RULES  # noqa: E402
from autodl.reader import check_splits  # noqa: E402

REPO = os.path.dirname(HERE)
DEFAULT_CODE_DIR = REPO  # our model.py; the harness only runs it, it never imports it
REFERENCE_CODE_DIR = os.path.join(HERE, "reference_submission")
DEFAULT_OUTPUT_DIR = os.path.join(HERE, "AutoDL_sample_result_submission")
DEFAULT_SCORE_DIR = os.path.join(HERE, "AutoDL_scoring_output")
# The time allowed before the clock starts (see autodl.supervise).
SETUP_CAP_S = supervise.SETUP_CAP_S
# The runner's loop period: predictions arriving faster are superseded (see Report).
TICK_S = 0.1
# Predictions waiting for the runner; more that arrive within one tick supersede the newest.
MAX_PENDING = 4
# While the run goes on, the score folder's live page is rewritten at most this often.
LIVE_PAGE_S = 2.0


def check_dataset(dataset_dir):
    """Fail before anything starts if the dataset is malformed; returns the data folder, the
    task name and the solution (the runner scores from this copy)."""
    data_dir = layout.find_data_dir(dataset_dir)
    name = layout.task_name(data_dir)
    check_splits(data_dir)
    test_spec = layout.read_metadata(layout.split_dir(data_dir, "test"))
    solution = layout.read_solution(layout.solution_path(os.path.dirname(data_dir), name),
                                    expected_rows=test_spec.sample_count,
                                    expected_cols=test_spec.output_dim)
    return data_dir, name, solution


def check_output_dirs(dataset_dir, code_dir, output_dir, score_dir):
    """Both output folders are emptied: neither may hold the dataset, the submission or the
    harness, nor lie inside the dataset."""
    protected = [("dataset", dataset_dir), ("submission", code_dir),
                 ("harness", os.path.dirname(HERE))]
    for flag, path in (("-output_dir", output_dir), ("-score_dir", score_dir)):
        # Inside the repository (the default folders are) is fine; inside the dataset is not.
        guard.refuse_overlap(flag, path, protected[:1], layout.DatasetError)
        guard.refuse_overlap(flag, path, protected[1:], layout.DatasetError,
                             allow_inside=True)


def _fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


class Progress:
    """A tqdm bar over the budget: elapsed time, predictions so far, latest NAUC.

    Ingestion's output is relayed line by line above the bar (and kept in ingestion.log), so
    logs and bar never overwrite each other.
    """

    def __init__(self, enabled, budget, echo=True):
        self.bar = None
        self.echo = echo  # False: ingestion's lines go to ingestion.log only
        # enabled="lines": no bar (stderr is a file), one line per new prediction instead.
        self.lines, self.shown, self.budget = enabled == "lines", 0, budget
        enabled = enabled and not self.lines
        self.lock = threading.Lock()
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=budget, unit="s", desc="waiting for the clock",
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s"
                                       " {postfix}", file=sys.stderr, mininterval=0.5)

    def relay(self, stream, log):
        def pump():
            with log:
                for line in iter(stream.readline, ""):
                    try:
                        log.write(line)
                    except (OSError, ValueError):
                        pass  # the log is only a copy: the terminal still gets the line
                    if not self.echo:
                        continue
                    with self.lock:
                        if self.bar is not None:
                            self.bar.write(line.rstrip("\n"), file=sys.stderr)
                        else:
                            sys.stderr.write(line)
        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def update(self, start, scores):
        if self.lines and start is not None and len(scores.scored) > self.shown:
            self.shown = len(scores.scored)
            print(f"prediction {self.shown} at {time.time() - start:.1f} s of "
                  f"{self.budget:g} s", file=sys.stderr, flush=True)
        if self.bar is None or start is None:
            return
        elapsed = min(time.time() - start, self.bar.total)
        self.bar.set_description("running", refresh=False)
        self.bar.n = elapsed
        naucs = [scores.scored[max(scores.scored)][1]] if scores.scored else []
        self.bar.set_postfix_str(f"predictions {len(scores.scored)}" +
                                 (f", NAUC {naucs[-1]:.4f}" if naucs else ""), refresh=False)
        with self.lock:
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Report:
    """Reads ingestion's pipe in a thread; each message is stamped on arrival (runner clock).

    At most MAX_PENDING predictions wait for the runner: one that arrives while they wait
    supersedes the newest of them (counted), so a flood costs neither memory nor time after
    T. Only the first clock and end messages are kept.
    """

    def __init__(self, fd, shape):
        self.stream = os.fdopen(fd, "rb")
        self.shape = shape
        self.lock = threading.Lock()
        self.waiting = []
        self.seen = set()
        self.superseded = 0
        self.problem = None
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        try:
            while True:
                message = runfiles.read_message(self.stream, self.shape)
                if message is None:
                    break
                self._keep((time.time(), *message))
        except ValueError as e:  # only the submission can garble it: the rest is ignored
            self.problem = f"ingestion's report channel garbled ({e}); later reports ignored"
        finally:
            self.stream.close()

    def _keep(self, item):
        kind = item[1][0]
        with self.lock:
            if kind == "predict":
                queued = [i for i, w in enumerate(self.waiting) if w[1][0] == "predict"]
                if len(queued) >= MAX_PENDING:
                    del self.waiting[queued[-1]]
                    self.superseded += 1
                self.waiting.append(item)
            elif kind in ("clock", "end") and kind not in self.seen:
                self.seen.add(kind)
                self.waiting.append(item)

    def pending(self):
        with self.lock:
            items, self.waiting = self.waiting, []
        return items


def stage_dataset(data_dir, staging):
    """A copy of NAME.data/ for the submission (hard links when possible), with no .solution
    anywhere above it: get_dataset_name() + ../.. leads to the staging folder only."""
    target = os.path.join(staging, os.path.basename(data_dir))
    for split in layout.SPLITS:
        source = layout.split_dir(data_dir, split)
        os.makedirs(os.path.join(target, split))
        for entry in os.listdir(source):
            path = os.path.join(source, entry)
            if os.path.isfile(path):
                dest = os.path.join(target, split, entry)
                try:
                    os.link(path, dest)
                except OSError:
                    shutil.copyfile(path, dest)
    return staging


def run(dataset_dir, code_dir, time_budget, output_dir=DEFAULT_OUTPUT_DIR,
        score_dir=DEFAULT_SCORE_DIR, clock_rule="2019-05", progress=True,
        setup_cap=SETUP_CAP_S, echo=True):
    """Run ingestion and score it; returns the run summary (also written to run.json).
    echo=False keeps ingestion's output in its log only (the tool's quiet default);
    progress="lines" prints one line per prediction instead of a bar (for a log file)."""
    data_dir, name, solution = check_dataset(dataset_dir)
    output_dir, score_dir = os.path.abspath(output_dir), os.path.abspath(score_dir)
    check_output_dirs(os.path.dirname(data_dir), code_dir, output_dir, score_dir)
    shape = solution.shape
    _fresh_dir(output_dir)
    _fresh_dir(score_dir)
    folders = {"out": runfiles.OwnFolder(output_dir, "output folder"),
               "scores": runfiles.OwnFolder(score_dir, "score folder")}
    staging = tempfile.mkdtemp(prefix="autodl-run-")
    try:
        stage_dataset(data_dir, staging)
        os.makedirs(os.path.join(staging, "tmp"))
        scores = score.Scores(name, solution,
                              layout.solution_path(os.path.dirname(data_dir), name))
        return _Run(staging, name, shape, code_dir, time_budget, clock_rule, folders, scores,
                    progress, setup_cap, echo).execute()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in folders.values():
            folder.close()


class _Run:
    """One run of ingestion: what it was given, and what the runner learnt while it ran (the
    clock's start, the predictions counted, how it ended). Supervision lives in
    autodl.supervise; this object reads ingestion's reports, scores and writes them."""

    def __init__(self, staging, name, shape, code_dir, time_budget, clock_rule, folders,
                 scores, progress, setup_cap, echo=True):
        self.staging, self.name, self.shape = staging, name, shape
        self.echo = echo  # False: ingestion's lines go to its log only
        self.code_dir, self.time_budget, self.clock_rule = code_dir, time_budget, clock_rule
        self.out, self.score_folder, self.scores = folders["out"], folders["scores"], scores
        self.progress, self.setup_cap = progress, setup_cap
        self.start = None  # the runner's stamp of ingestion's clock message
        self.k = 0  # predictions counted
        self.error = None  # the reason ingestion gave in its end message
        self.stopped = None  # why the runner stopped ingestion
        self.ended = False
        self.end_ok = False
        self.folder = None  # what went wrong with the output folder
        self.timestamps = None  # start.txt, opened once
        self.success = False
        self.pid = None

    def execute(self):
        out = self.out
        report_r, report_w = os.pipe()
        # The submission's temporary files go to the staging folder, removed after the run.
        env = dict(os.environ, TMPDIR=os.path.join(self.staging, "tmp"))
        log = out.open_new("ingestion.log")
        child = supervise.Supervised(
            [sys.executable, os.path.join(HERE, "ingestion.py"), "-dataset_dir", self.staging,
             "-output_dir", out.path, "-code_dir", os.path.abspath(self.code_dir),
             "-time_budget", str(self.time_budget), "-clock_rule", self.clock_rule,
             "-report_fd", str(report_w)],
            env, pass_fds=(report_w,), setup_cap=self.setup_cap)
        os.close(report_w)
        self.pid = child.pid
        reports = Report(report_r, self.shape)
        bar = Progress(self.progress, self.time_budget, self.echo)
        relay = bar.relay(child.stdout, log)
        shown, ingestion_ended = 0.0, None
        error = "the runner failed"
        try:
            while True:
                alive = child.alive()
                now = time.time()
                for stamp, words, matrix in reports.pending():
                    self.handle(words, matrix, stamp)
                if self.folder is None and not out.intact():
                    try:
                        out.check()
                    except OSError as e:
                        self.folder = str(e)
                if self.folder:
                    self.stopped = self.folder + ": ingestion stopped"
                    break
                if not alive:
                    break
                if self.start is not None and now >= self.start + self.time_budget:
                    self.stopped = "time budget reached: ingestion stopped"
                    break
                if self.start is None and child.setup_overdue(now):
                    self.stopped = (f"the clock did not start within {self.setup_cap:g} s "
                                    f"({self.clock_rule} rule): ingestion stopped")
                    break
                if self.start is not None and now - shown >= LIVE_PAGE_S:
                    shown = now  # the live page, rewritten at most every LIVE_PAGE_S seconds
                    _write_scores(self.score_folder, self.scores.result(
                        "running", self.time_budget, self.clock_rule), final=False)
                bar.update(self.start, self.scores)
                time.sleep(TICK_S)
            decided = time.time()  # ingestion ended, or we stop it: later reports do not count
            if self.stopped:
                _log(self.stopped)
                child.stop()
            child.clean_up()
            ingestion_ended = time.time()
            reports.thread.join(timeout=1.0)
            for stamp, words, matrix in reports.pending():  # sent before it ended
                if stamp <= decided:
                    self.handle(words, matrix, stamp)
            error = self.ingestion_error(reports, child)
            self.success = error is None
            try:
                out.write(runfiles.END_FILE, runfiles.end_text(
                    duration=ingestion_ended - child.launched, success=self.success,
                    end_time=ingestion_ended, error=error))
            except OSError as e:
                error = error or f"cannot write {runfiles.END_FILE}: {e}"
        finally:
            child.force_end()
            relay.join(timeout=2.0)
            bar.close()
            if self.timestamps is not None:
                self.timestamps.close()
        status = "finished" if self.success else f"ingestion failed: {error}"
        result = self.scores.result(status, self.time_budget, self.clock_rule)
        result["superseded_predictions"] = reports.superseded
        return self.summarise(result, child.peak_rss_mb(), ingestion_ended, error)

    def ingestion_error(self, report, child):
        """Why the run failed, in one line; None when it ran cleanly."""
        problem = self.stopped or self.folder or self.error or report.problem
        if problem:
            return problem
        if child.returncode != 0:
            return f"ingestion died (exit status {child.returncode})"
        if self.start is None:
            return "ingestion ended before starting the clock"
        if not self.ended:
            return ("exited early: ingestion ended (exit status 0) without its end message; "
                    "the submission left the process itself")
        if not self.end_ok:
            return "ingestion reported a failure without a reason"
        return None

    def handle(self, words, matrix, stamp):
        """One message from ingestion, stamped `stamp` by the runner."""
        kind = words[0]
        if kind == "clock" and self.start is None:
            self.start = stamp
            try:
                # Opened once, by the runner: a link put at start.txt later is never written
                # through.
                self.timestamps = self.out.open_new(runfiles.START_FILE)
                self.timestamps.write(runfiles.start_text(
                    pid=self.pid, task_name=self.name, time_budget=self.time_budget,
                    start_time=stamp, clock_rule=self.clock_rule))
            except OSError as e:
                self.folder = self.folder or runfiles.one_line(e)
        elif kind == "predict" and self.start is not None:
            elapsed = stamp - self.start
            if elapsed > self.time_budget:
                return  # too late to count
            k = self.k
            self.k += 1
            # Scored from memory first: whatever happens to the folder, the prediction counts.
            self.scores.add(k, elapsed, lambda: matrix, f"{self.name}.predict_{k}")
            try:
                if self.timestamps is not None:
                    self.timestamps.write(f"{k}: {stamp!r}\n")
                self.out.write(os.path.basename(runfiles.prediction_path("", self.name, k)),
                               runfiles.prediction_text(matrix))
            except OSError as e:
                self.folder = self.folder or runfiles.one_line(e)
        elif kind == "end":
            self.ended = True
            self.end_ok = len(words) > 1 and words[1] == "1"
            if len(words) > 2 and self.error is None:
                self.error = " ".join(words[2:])

    def summarise(self, result, peak_rss_mb, ingestion_ended, error):
        """The run summary, from what the runner holds; the score folder's files written
        last."""
        folder, start, time_budget = self.score_folder, self.start, self.time_budget
        problems = result.get("problems") or []
        written = _write_scores(folder, result, final=True)
        if not written:
            problems = problems + [f"{folder.path}: the score folder was deleted or replaced "
                                   "during the run; scores not written there"]
        summary = {
            "task_name": result["task_name"], "time_budget": time_budget,
            "alc": result["alc"], "final_nauc": result["final_nauc"],
            "final_accuracy": (result.get("accuracy") or [None])[-1],
            "first_prediction_s": result["first_prediction_s"],
            "num_predictions": result["num_predictions"],
            "superseded_predictions": result.get("superseded_predictions", 0),
            "ingestion_success": bool(self.success),
            "error": error or ("; ".join(problems) or None),
            "warnings": problems,
            "peak_rss_mb": peak_rss_mb,
            # How long ingestion outlived the budget (negative: it finished early).
            "overrun_s": round(ingestion_ended - start - time_budget, 3) if start else None,
            # How long the whole run (scoring and the clean-up included) outlived the budget.
            "run_overrun_s": round(time.time() - start - time_budget, 3) if start else None,
            "timestamps": result["timestamps"], "nauc_scores": result["nauc_scores"],
        }
        if written:
            try:
                folder.write("run.json", json.dumps(summary, indent=1))
            except OSError as e:
                _log(f"error: run.json not written: {runfiles.one_line(e)}")
        return summary


def _write_scores(folder, result, final):
    """The score folder's files; False (and a line) when the folder is no longer ours."""
    try:
        for file_name, content in report.score_files(result, final).items():
            folder.write(file_name, content)
        return True
    except OSError as e:
        if final:
            _log(f"error: scores not written: {runfiles.one_line(e)}")
        return False


_log = supervise.log


def format_summary(summary):
    first = summary["first_prediction_s"]
    parts = [f"ALC {summary['alc']:.4f}", f"final NAUC {summary['final_nauc']:.4f}"]
    if summary["final_accuracy"] is not None:
        parts.append(f"accuracy {summary['final_accuracy']:.4f}")
    parts += [f"first prediction {first:.2f} s" if first is not None else "no prediction",
              f"{summary['num_predictions']} predictions"]
    if summary["peak_rss_mb"] is not None:
        parts.append(f"peak memory {summary['peak_rss_mb']:.0f} MB")
    status = "ok" if summary["ingestion_success"] else f"FAILED: {summary['error']}"
    return f"[{summary['task_name']}] " + " | ".join(parts) + f" | ingestion {status}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="autodl-run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Both -flag=value and --flag value are accepted. Exit status: 0 the submission "
               "ran cleanly, 1 it failed, overran or was stopped, 2 bad dataset or arguments.")
    add_flag(parser, "dataset_dir", required=True, help="folder with NAME.data/ and "
             "NAME.solution")
    add_flag(parser, "code_dir", default=DEFAULT_CODE_DIR,
             help="submission folder or zip with model.py at its root (the default is the "
                  "repository root: our model; the baseline is autodl/reference_submission)")
    add_flag(parser, "time_budget", type=float, default=1200.0, help="seconds")
    add_flag(parser, "clock_rule", choices=CLOCK_RULES, default="2019-05",
             help="when the clock starts (2019-05: before model.py is imported; 2019-08: "
                  "before Model(metadata); 2019-12: after it)")
    add_flag(parser, "output_dir", default=DEFAULT_OUTPUT_DIR, help="predictions folder "
             "(emptied)")
    add_flag(parser, "score_dir", default=DEFAULT_SCORE_DIR, help="scores folder (emptied)")
    add_flag(parser, "quiet", action="store_true", help="no progress bar")
    add_flag(parser, "progress", type=str2bool, default=True, metavar="true|false",
             help="show a progress bar (the older spelling of -quiet: -progress=false)")
    add_flag(parser, "setup_cap", type=float, default=SETUP_CAP_S,
             help="seconds allowed before the clock starts")
    add_flag(parser, "config", metavar="FILE_OR_JSON",
             help="settings for the submission (ours: overrides of configs/*.yaml), a JSON "
                  "object or a JSON/YAML file; passed as AUTOCLINT_CONFIG (without it, that "
                  "variable passes as it is)")
    add_flag(parser, "verbose", action="store_true",
             help="ask the submission to log its decisions (AUTOCLINT_VERBOSE=1)")
    args = parser.parse_args(argv)
    for flag in ("time_budget", "setup_cap"):
        value = getattr(args, flag)
        if not (math.isfinite(value) and value > 0):
            print(f"error: -{flag} must be a positive number of seconds, got {value:g}",
                  file=sys.stderr)
            return 2
    if not (os.path.isdir(args.code_dir) or os.path.isfile(args.code_dir)):
        print(f"error: -code_dir {args.code_dir}: no such folder or zip file", file=sys.stderr)
        return 2
    try:
        apply_submission_settings(args.config, args.verbose, flag="-config")
        summary = run(args.dataset_dir, args.code_dir, args.time_budget, args.output_dir,
                      args.score_dir, args.clock_rule, args.progress and not args.quiet,
                      args.setup_cap)
    except (layout.DatasetError, FlagError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary), flush=True)
    return 0 if summary["ingestion_success"] else 1


if __name__ == "__main__":
    sys.exit(main())
