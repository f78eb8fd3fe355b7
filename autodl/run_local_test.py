"""Run a submission on a dataset the way the platform does, and report its score.

    python autodl/run_local_test.py -dataset_dir=DIR -code_dir=DIR -time_budget=SECONDS

Ingestion and scoring run as two processes side by side; scoring stops ingestion at the
budget. Outputs: autodl/AutoDL_sample_result_submission/ (predictions, start.txt, end.txt)
and autodl/AutoDL_scoring_output/ (scores.txt, scores.json, learning-curve-NAME.png,
detailed_results.html, run.json).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make the `autodl` package importable
    sys.path.insert(0, os.path.dirname(HERE))

from autodl import layout, runfiles  # noqa: E402
from autodl.cli import add_flag, str2bool  # noqa: E402
from autodl.ingestion import CLOCK_RULES  # noqa: E402
from autodl.reader import check_split  # noqa: E402

DEFAULT_OUTPUT_DIR = os.path.join(HERE, "AutoDL_sample_result_submission")
DEFAULT_SCORE_DIR = os.path.join(HERE, "AutoDL_scoring_output")
# Past the budget, scoring has this long to stop ingestion before the runner does it.
RUNNER_GRACE_S = 10.0


def check_dataset(dataset_dir):
    """Fail before anything starts if the dataset is malformed; returns the task name."""
    data_dir = layout.find_data_dir(dataset_dir)
    name = layout.task_name(data_dir)
    for split in layout.SPLITS:
        check_split(layout.split_dir(data_dir, split))
    test_spec = layout.read_metadata(layout.split_dir(data_dir, "test"))
    layout.read_solution(layout.solution_path(os.path.dirname(data_dir), name),
                         expected_rows=test_spec.sample_count,
                         expected_cols=test_spec.output_dim)
    return data_dir, name


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

    def update(self, output_dir, score_dir):
        if self.bar is None or not os.path.exists(os.path.join(output_dir,
                                                               runfiles.START_FILE)):
            return
        start = runfiles.read_start(output_dir)
        elapsed = min(time.time() - start["start_time"], self.bar.total)
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


def run(dataset_dir, code_dir, time_budget, output_dir=DEFAULT_OUTPUT_DIR,
        score_dir=DEFAULT_SCORE_DIR, clock_rule="2019-05", progress=True):
    """Run ingestion and scoring; returns the run summary (also written to run.json)."""
    _, name = check_dataset(dataset_dir)
    output_dir, score_dir = os.path.abspath(output_dir), os.path.abspath(score_dir)
    _fresh_dir(output_dir)
    _fresh_dir(score_dir)
    common = ["-dataset_dir", os.path.abspath(dataset_dir)]
    piped = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    ingestion = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "ingestion.py"), *common, "-output_dir",
         output_dir, "-code_dir", os.path.abspath(code_dir), "-time_budget", str(time_budget),
         "-clock_rule", clock_rule],
        start_new_session=True, **piped)  # its own process group, so scoring can stop all of it
    # Scoring is light, but keep its numpy to one thread: the submission owns the CPU.
    scoring_env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       MKL_NUM_THREADS="1")
    scoring = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "score.py"), *common, "-prediction_dir",
         output_dir, "-score_dir", score_dir], env=scoring_env, **piped)
    bar = Progress(progress, time_budget)
    relays = [bar.relay(ingestion.stdout, os.path.join(output_dir, "ingestion.log")),
              bar.relay(scoring.stdout, os.path.join(score_dir, "scoring.log"))]
    usage = []
    ingestion_ended = None
    try:
        while scoring.poll() is None or not _reap(ingestion, usage):
            if ingestion_ended is None and _reap(ingestion, usage):
                ingestion_ended = time.time()
                if runfiles.read_end(output_dir) is None:
                    # It ended without a word (stopped at the budget, or a crash): say so.
                    runfiles.write_end(output_dir, duration=float("nan"), success=False,
                                       end_time=time.time(),
                                       error=_why_ingestion_ended(output_dir, time_budget,
                                                                  ingestion.returncode))
            _enforce_budget(output_dir, time_budget, ingestion, scoring)
            bar.update(output_dir, score_dir)
            time.sleep(0.25)
        if ingestion_ended is None:
            ingestion_ended = time.time()
    finally:
        for process in (ingestion, scoring):
            if process.returncode is None and process.poll() is None:
                process.kill()
        for relay in relays:
            relay.join(timeout=2.0)
        bar.close()
    return _summarise(output_dir, score_dir, name, time_budget, usage, ingestion_ended)


def _why_ingestion_ended(output_dir, time_budget, returncode):
    if os.path.exists(os.path.join(output_dir, runfiles.START_FILE)):
        start = runfiles.read_start(output_dir)
        if time.time() >= start["start_time"] + time_budget:
            return "time budget reached: ingestion stopped"
    return f"ingestion died (exit status {returncode})"


def _enforce_budget(output_dir, time_budget, ingestion, scoring):
    """Backstop for a scoring program that died or hangs: stop ingestion ourselves."""
    if ingestion.returncode is not None:
        return
    if not os.path.exists(os.path.join(output_dir, runfiles.START_FILE)):
        return
    start = runfiles.read_start(output_dir)
    if time.time() > start["start_time"] + time_budget + RUNNER_GRACE_S:
        os.killpg(ingestion.pid, signal.SIGKILL)
        if scoring.poll() is None:
            scoring.terminate()


def _summarise(output_dir, score_dir, name, time_budget, usage, ingestion_ended):
    scores = _read_json(os.path.join(score_dir, "scores.json")) or {}
    end = runfiles.read_end(output_dir) or {}
    start_path = os.path.join(output_dir, runfiles.START_FILE)
    start = runfiles.read_start(output_dir) if os.path.exists(start_path) else None
    summary = {
        "task_name": name, "time_budget": time_budget,
        "alc": scores.get("alc", 0.0), "final_nauc": scores.get("final_nauc", 0.0),
        "final_accuracy": (scores.get("accuracy") or [None])[-1],
        "first_prediction_s": scores.get("first_prediction_s"),
        "num_predictions": scores.get("num_predictions", 0),
        "ingestion_success": bool(end.get("ingestion_success")),
        "error": end.get("error") or ("; ".join(scores.get("problems", [])) or None),
        "peak_rss_mb": round(usage[0].ru_maxrss / 1024.0, 1) if usage else None,
        # How long ingestion outlived the budget (negative: it finished early).
        "overrun_s": round(ingestion_ended - start["start_time"] - time_budget, 3)
        if start else None,
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_flag(parser, "dataset_dir", required=True, help="folder with NAME.data/ and "
             "NAME.solution")
    add_flag(parser, "code_dir", default=os.path.join(HERE, "reference_submission"),
             help="submission folder or zip with model.py (default: the reference "
                  "submission)")
    add_flag(parser, "time_budget", type=float, default=1200.0, help="seconds (default 1200)")
    add_flag(parser, "clock_rule", choices=CLOCK_RULES, default="2019-05",
             help="when the clock starts (default 2019-05: before model.py is imported)")
    add_flag(parser, "output_dir", default=DEFAULT_OUTPUT_DIR, help="predictions folder")
    add_flag(parser, "score_dir", default=DEFAULT_SCORE_DIR, help="scores folder")
    add_flag(parser, "progress", type=str2bool, default=True, help="show a progress bar")
    args = parser.parse_args(argv)
    try:
        summary = run(args.dataset_dir, args.code_dir, args.time_budget, args.output_dir,
                      args.score_dir, args.clock_rule, args.progress)
    except layout.DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary), flush=True)
    return 0 if summary["ingestion_success"] else 1


if __name__ == "__main__":
    sys.exit(main())
