"""Run a submission on a dataset the way the platform does, and report its score.

    python autodl/run_local_test.py -dataset_dir=DIR [-code_dir=DIR|ZIP] -time_budget=SECONDS
    (also `python -m autodl run ...`, or `autodl-run ...` once installed)

Without -code_dir it runs the submission at the repository root (our model.py); the
baseline is -code_dir=autodl/reference_submission.

Ingestion (the submission, in its own session, on a staged copy of NAME.data/ with no
.solution above it) and scoring run as two processes. Nothing the submission writes is read
back: ingestion reports on a pipe, this runner stamps each report on arrival, writes the
prediction files, feeds scoring on its standard input, stops ingestion at clock start + T and
then kills every process the submission started. Outputs: autodl/AutoDL_sample_result_submission/ (predictions, start.txt, end.txt)
and autodl/AutoDL_scoring_output/ (scores.txt, scores.json, learning-curve-NAME.png,
detailed_results.html, run.json).
"""
import argparse
import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make the `autodl` package importable
    sys.path.insert(0, os.path.dirname(HERE))

from autodl import guard, layout, runfiles  # noqa: E402
from autodl.flags import FlagError, add_flag, apply_submission_settings, str2bool  # noqa: E402
from autodl.ingestion import CLOCK_RULES  # noqa: E402
from autodl.reader import check_splits  # noqa: E402

REPO = os.path.dirname(HERE)
DEFAULT_CODE_DIR = REPO  # our model.py; the harness only runs it, it never imports it
REFERENCE_CODE_DIR = os.path.join(HERE, "reference_submission")
DEFAULT_OUTPUT_DIR = os.path.join(HERE, "AutoDL_sample_result_submission")
DEFAULT_SCORE_DIR = os.path.join(HERE, "AutoDL_scoring_output")
# Seconds between SIGTERM and SIGKILL when ingestion overruns.
KILL_GRACE_S = 2.0
# The time before the clock starts (imports under 2019-08, construction too under 2019-12)
# is capped: the 2019-12 rule's 20 minutes.
SETUP_CAP_S = 20 * 60.0
# After ingestion ends, scoring has this long to write its last results.
SCORING_WAIT_S = 5.0


def check_dataset(dataset_dir):
    """Fail before anything starts if the dataset is malformed; returns the task name."""
    data_dir = layout.find_data_dir(dataset_dir)
    name = layout.task_name(data_dir)
    check_splits(data_dir)
    test_spec = layout.read_metadata(layout.split_dir(data_dir, "test"))
    layout.read_solution(layout.solution_path(os.path.dirname(data_dir), name),
                         expected_rows=test_spec.sample_count,
                         expected_cols=test_spec.output_dim)
    return data_dir, name


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


def _reap(process, rusage_box):
    """Non-blocking wait that keeps the child's resource usage (peak memory)."""
    if process.returncode is not None:
        return True
    pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
    if pid == 0:
        return False
    process.returncode = os.waitstatus_to_exitcode(status)
    rusage_box.append(rusage)
    return True


class Progress:
    """A tqdm bar over the budget: elapsed time, predictions so far, latest NAUC.

    The two processes' output is relayed line by line above the bar (and kept in
    ingestion.log / scoring.log), so logs and bar never overwrite each other.
    """

    def __init__(self, enabled, budget):
        self.bar = None
        self.lock = threading.Lock()
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=budget, unit="s", desc="waiting for the clock",
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s"
                                       " {postfix}", file=sys.stderr, mininterval=0.5)

    def relay(self, stream, log_path):
        def pump():
            with open(log_path, "w") as log:
                for line in iter(stream.readline, ""):
                    log.write(line)
                    log.flush()
                    with self.lock:
                        if self.bar is not None:
                            self.bar.write(line.rstrip("\n"), file=sys.stderr)
                        else:
                            sys.stderr.write(line)
        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def update(self, start, score_dir):
        if self.bar is None or start is None:
            return
        elapsed = min(time.time() - start, self.bar.total)
        self.bar.set_description("running", refresh=False)
        self.bar.n = elapsed
        scores = _read_json(os.path.join(score_dir, "scores.json")) or {}
        naucs = scores.get("nauc_scores") or []
        self.bar.set_postfix_str(f"predictions {len(naucs)}" +
                                 (f", NAUC {naucs[-1]:.4f}" if naucs else ""), refresh=False)
        with self.lock:
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Report:
    """Reads ingestion's pipe in a thread; each message is stamped on arrival (runner clock)."""

    def __init__(self, fd, shape):
        self.stream = os.fdopen(fd, "rb")
        self.shape = shape
        self.messages = queue.Queue()
        self.problem = None
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        try:
            while True:
                message = runfiles.read_message(self.stream, self.shape)
                if message is None:
                    break
                self.messages.put((time.time(), *message))
        except ValueError as e:  # only the submission can garble it: the rest is ignored
            self.problem = f"ingestion's report channel garbled ({e}); later reports ignored"
        finally:
            self.stream.close()

    def pending(self):
        while True:
            try:
                yield self.messages.get_nowait()
            except queue.Empty:
                return


class Scoring:
    """The scoring process, fed on its standard input; writes to it never raise."""

    def __init__(self, process, fd):
        self.process = process
        self.fd = fd

    def send(self, header, matrix=None):
        if self.fd is None:
            return
        try:
            runfiles.send_all(self.fd, runfiles.encode_message(header, matrix))
        except OSError:  # scoring died: the summary says what it wrote
            self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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
        setup_cap=SETUP_CAP_S):
    """Run ingestion and scoring; returns the run summary (also written to run.json)."""
    data_dir, name = check_dataset(dataset_dir)
    output_dir, score_dir = os.path.abspath(output_dir), os.path.abspath(score_dir)
    check_output_dirs(os.path.dirname(data_dir), code_dir, output_dir, score_dir)
    test_spec = layout.read_metadata(layout.split_dir(data_dir, "test"))
    shape = (test_spec.sample_count, test_spec.output_dim)
    _fresh_dir(output_dir)
    _fresh_dir(score_dir)
    staging = tempfile.mkdtemp(prefix="autodl-run-")
    try:
        stage_dataset(data_dir, staging)
        os.makedirs(os.path.join(staging, "tmp"))
        return _run(data_dir, staging, name, shape, code_dir, time_budget, output_dir,
                    score_dir, clock_rule, progress, setup_cap)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run(data_dir, staging, name, shape, code_dir, time_budget, output_dir, score_dir,
         clock_rule, progress, setup_cap):
    _become_subreaper()
    report_r, report_w = os.pipe()
    piped = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                 errors="replace")
    # The submission's temporary files go to the staging folder, removed after the run.
    ingestion_env = dict(os.environ, TMPDIR=os.path.join(staging, "tmp"))
    me = os.getpid()
    preexisting = [pid for pid, ppid in _process_table().items() if ppid == me]
    launched = time.time()
    ingestion = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "ingestion.py"), "-dataset_dir", staging,
         "-output_dir", output_dir, "-code_dir", os.path.abspath(code_dir),
         "-time_budget", str(time_budget), "-clock_rule", clock_rule,
         "-report_fd", str(report_w)],
        pass_fds=(report_w,), env=ingestion_env, start_new_session=True, **piped)
    os.close(report_w)
    tree = ProcessTree(ingestion, preexisting)
    report = Report(report_r, shape)
    # Scoring is light, but keep its numpy to one thread: the submission owns the CPU.
    scoring_env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       MKL_NUM_THREADS="1")
    feed_r, feed_w = os.pipe()
    scoring_process = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "score.py"), "-dataset_dir",
         os.path.dirname(data_dir), "-score_dir", score_dir, "-stream"],
        stdin=feed_r, env=scoring_env, **piped)
    os.close(feed_r)
    scoring = Scoring(scoring_process, feed_w)
    tree.exclude.add(scoring_process.pid)
    bar = Progress(progress, time_budget)
    relays = [bar.relay(ingestion.stdout, os.path.join(output_dir, "ingestion.log")),
              bar.relay(scoring_process.stdout, os.path.join(score_dir, "scoring.log"))]
    usage = []
    state = {"start": None, "k": 0, "error": None, "stopped": None, "pid": ingestion.pid}
    try:
        while True:
            alive = not _reap(ingestion, usage)
            now = time.time()
            for stamp, words, matrix in report.pending():
                _handle(words, matrix, stamp, state, name, output_dir, time_budget,
                        clock_rule, scoring)
            if not alive:
                break
            tree.track()
            start = state["start"]
            if start is not None and now >= start + time_budget:
                state["stopped"] = "time budget reached: ingestion stopped"
                break
            if start is None and now >= launched + setup_cap:
                state["stopped"] = (f"the clock did not start within {setup_cap:g} s "
                                    f"({clock_rule} rule): ingestion stopped")
                break
            bar.update(start, score_dir)
            time.sleep(0.1)
        decided = time.time()  # ingestion ended, or we stop it: later reports do not count
        if state["stopped"]:
            _log(state["stopped"])
            tree.stop(ingestion, usage)
        tree.kill_all()  # whatever it left behind, in its group, a new session or orphaned
        _reap_wait(ingestion, usage, 2.0)
        ingestion_ended = time.time()
        report.thread.join(timeout=1.0)
        for stamp, words, matrix in report.pending():  # sent before it ended
            if stamp <= decided:
                _handle(words, matrix, stamp, state, name, output_dir, time_budget,
                        clock_rule, scoring)
        error = state["stopped"] or state["error"] or report.problem
        if error is None and ingestion.returncode != 0:
            error = f"ingestion died (exit status {ingestion.returncode})"
        if state["start"] is None and error is None:
            error = "ingestion ended before starting the clock"
        success = ingestion.returncode == 0 and state["stopped"] is None and \
            state["error"] is None
        state["success"] = success
        runfiles.write_end(output_dir, duration=ingestion_ended - launched, success=success,
                           end_time=ingestion_ended, error=error)
        scoring.send(f"end {'finished' if success else 'ingestion failed: ' + error}")
        scoring.close()
        try:
            scoring_process.wait(timeout=SCORING_WAIT_S)
        except subprocess.TimeoutExpired:
            _log("scoring did not finish in time: stopped")
    finally:
        scoring.close()
        for process in (ingestion, scoring_process):
            if process.poll() is None:
                process.kill()
        tree.kill_all()
        for relay in relays:
            relay.join(timeout=2.0)
        bar.close()
    return _summarise(output_dir, score_dir, name, time_budget, usage, ingestion_ended,
                      state, error)


def _handle(words, matrix, stamp, state, name, output_dir, time_budget, clock_rule, scoring):
    """One message from ingestion, stamped `stamp` by the runner."""
    kind = words[0]
    if kind == "clock" and state["start"] is None:
        state["start"] = stamp
        runfiles.write_start(output_dir, pid=state["pid"], task_name=name, time_budget=time_budget,
                             start_time=stamp, clock_rule=clock_rule)
        scoring.send(f"start {stamp!r} {time_budget!r} {clock_rule}")
    elif kind == "predict" and state["start"] is not None:
        elapsed = stamp - state["start"]
        if elapsed > time_budget:
            return  # too late to count
        k = state["k"]
        state["k"] += 1
        runfiles.append_timestamp(output_dir, k, stamp)
        runfiles.write_prediction(runfiles.prediction_path(output_dir, name, k), matrix)
        scoring.send(f"predict {k} {elapsed!r}", matrix)
    elif kind == "end" and len(words) > 2 and state["error"] is None:
        state["error"] = " ".join(words[2:])


def _log(message):
    print(f"[runner] {message}", file=sys.stderr, flush=True)


def _reap_wait(process, usage, timeout):
    deadline = time.time() + timeout
    while not _reap(process, usage) and time.time() < deadline:
        time.sleep(0.05)


def _become_subreaper():
    """Orphaned descendants of ingestion become our children instead of init's, so that
    ProcessTree still finds them (Linux; elsewhere the process group is what is stopped)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _process_table():
    """{pid: ppid} of every process, from /proc."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry)] = int(fields[1])
    return table


class ProcessTree:
    """Ingestion and everything it started, whatever group or session they moved to."""

    def __init__(self, process, preexisting):
        self.process = process
        self.root = process.pid
        self.me = os.getpid()
        self.exclude = set(preexisting)  # our children from before ingestion: not its tree
        self.known = {self.root}

    def members(self):
        table = _process_table()
        children = {}
        for pid, ppid in table.items():
            children.setdefault(ppid, []).append(pid)
        # Orphans re-parented to us (we are the subreaper): our children that we did not
        # start ourselves (before ingestion, or scoring).
        reaped = self.process.returncode is not None  # its pid may be anyone's now
        roots = [p for p in self.known if p in table and not (reaped and p == self.root)]
        roots += [p for p in children.get(self.me, []) if p not in self.exclude]
        found, stack = set(), roots
        while stack:
            pid = stack.pop()
            if pid in found or pid in self.exclude or pid == self.me:
                continue
            found.add(pid)
            stack.extend(children.get(pid, []))
        return found

    def track(self):
        # Recomputed, not accumulated: a pid that ended is forgotten before it can be reused.
        self.known = self.members() | {self.root}

    def stop(self, ingestion, usage):
        """SIGTERM ingestion's group, SIGKILL everything KILL_GRACE_S later."""
        self.track()
        _signal_group(self.root, signal.SIGTERM)
        deadline = time.time() + KILL_GRACE_S
        while time.time() < deadline:
            self.track()
            if _reap(ingestion, usage):
                break
            time.sleep(0.05)

    def kill_all(self):
        for _ in range(50):
            _signal_group(self.root, signal.SIGKILL)
            members = self.members()
            self.known = members | {self.root}
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            for pid in list(self.known):
                if pid == self.root:
                    continue  # its Popen reaps it
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            if not [p for p in members if p != self.root and not _is_zombie(p)]:
                return
            time.sleep(0.02)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _summarise(output_dir, score_dir, name, time_budget, usage, ingestion_ended, state,
               error):
    scores = _read_json(os.path.join(score_dir, "scores.json")) or {}
    start = state["start"]
    summary = {
        "task_name": name, "time_budget": time_budget,
        "alc": scores.get("alc", 0.0), "final_nauc": scores.get("final_nauc", 0.0),
        "final_accuracy": (scores.get("accuracy") or [None])[-1],
        "first_prediction_s": scores.get("first_prediction_s"),
        "num_predictions": scores.get("num_predictions", 0),
        "ingestion_success": bool(state.get("success")),
        "error": error or ("; ".join(scores.get("problems", [])) or None),
        "peak_rss_mb": round(usage[0].ru_maxrss / 1024.0, 1) if usage else None,
        # How long ingestion outlived the budget (negative: it finished early).
        "overrun_s": round(ingestion_ended - start - time_budget, 3) if start else None,
        # How long the whole run (scoring and the clean-up included) outlived the budget.
        "run_overrun_s": round(time.time() - start - time_budget, 3) if start else None,
        "timestamps": scores.get("timestamps", []), "nauc_scores": scores.get("nauc_scores", []),
    }
    with open(os.path.join(score_dir, "run.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


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
