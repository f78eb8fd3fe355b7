"""The scoring program: scores each prediction as it appears and enforces the time budget.

It waits for ingestion's start.txt, polls the prediction folder every second, scores every
new NAME.predict_k against NAME.solution, and at start_time + time_budget terminates the
ingestion process (its whole process group) if it still runs. Predictions made by then count.

    python -m autodl.score --dataset_dir D --prediction_dir P --score_dir S
"""
import argparse
import os
import signal
import sys
import time

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `autodl` package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autodl import layout, metrics, report, runfiles  # noqa: E402
from autodl.cli import add_flag  # noqa: E402

# Seconds between SIGTERM and SIGKILL when ingestion overruns.
KILL_GRACE_S = 2.0


def _log(message):
    print(f"[score] {message}", file=sys.stderr, flush=True)


class Scorer:
    def __init__(self, dataset_dir, prediction_dir, score_dir, poll_s=1.0):
        self.prediction_dir = os.path.abspath(prediction_dir)
        self.score_dir = os.path.abspath(score_dir)
        data_dir = layout.find_data_dir(dataset_dir)
        self.task_name = layout.task_name(data_dir)
        test_spec = layout.read_metadata(layout.split_dir(data_dir, "test"))
        self.solution = layout.read_solution(
            layout.solution_path(os.path.dirname(data_dir), self.task_name),
            expected_rows=test_spec.sample_count, expected_cols=test_spec.output_dim)
        self.one_hot = metrics.is_one_hot(self.solution)
        self.poll_s = poll_s
        self.scored = {}  # k -> (time since start, nauc, accuracy or None)
        self.problems = []
        self.start = None

    def wait_for_start(self, max_wait_s):
        deadline = time.time() + max_wait_s
        path = os.path.join(self.prediction_dir, runfiles.START_FILE)
        while time.time() < deadline:
            if os.path.exists(path):
                self.start = runfiles.read_start(self.prediction_dir)
                return True
            end = runfiles.read_end(self.prediction_dir)
            if end is not None:
                self.problems.append(f"ingestion ended before starting the clock: "
                                     f"{end.get('error') or 'no reason given'}")
                return False
            time.sleep(0.2)
        self.problems.append(f"no {runfiles.START_FILE} after {max_wait_s:g} s")
        return False

    def score_new(self):
        """Score prediction files not scored yet; returns how many were added."""
        self.start = runfiles.read_start(self.prediction_dir)
        added = 0
        for k, path in runfiles.list_predictions(self.prediction_dir, self.task_name):
            if k in self.scored or k not in self.start["timestamps"]:
                continue
            elapsed = self.start["timestamps"][k] - self.start["start_time"]
            try:
                prediction = runfiles.read_prediction(path)
                if prediction.shape != self.solution.shape:
                    raise ValueError(f"shape {prediction.shape}, expected {self.solution.shape}")
                if not np.isfinite(prediction).all():
                    raise ValueError("holds NaN or infinite values")
                score = metrics.nauc(self.solution, prediction)
                acc = metrics.accuracy(self.solution, prediction) if self.one_hot else None
            except ValueError as e:
                self.problems.append(f"{os.path.basename(path)}: {e}; scored 0")
                score, acc = 0.0, 0.0 if self.one_hot else None
            self.scored[k] = (elapsed, score, acc)
            added += 1
            _log(f"prediction {k} at {elapsed:.2f} s: NAUC {score:.4f}")
        return added

    def result(self, status):
        budget = self.start["time_budget"] if self.start else 0.0
        entries = [self.scored[k] for k in sorted(self.scored)]
        counted = [e for e in entries if e[0] <= budget]
        timestamps = [e[0] for e in entries]
        naucs = [e[1] for e in entries]
        return {
            "task_name": self.task_name, "time_budget": budget, "status": status,
            "alc": metrics.alc(timestamps, naucs, budget) if budget else 0.0,
            "duration": timestamps[-1] if timestamps else 0.0,
            "timestamps": timestamps, "nauc_scores": naucs,
            "accuracy": [e[2] for e in entries] if self.one_hot else None,
            "final_nauc": counted[-1][1] if counted else 0.0,
            "first_prediction_s": timestamps[0] if timestamps else None,
            "num_predictions": len(counted),
            "clock_rule": self.start.get("clock_rule") if self.start else None,
            "problems": self.problems,
        }

    def write(self, status, final=False):
        os.makedirs(self.score_dir, exist_ok=True)
        result = self.result(status)
        report.write_scores_txt(self.score_dir, result)
        png = os.path.join(self.score_dir, f"learning-curve-{self.task_name}.png")
        if final:
            report.learning_curve_png(png, result)
        report.detailed_html(os.path.join(self.score_dir, "detailed_results.html"), result,
                             png_path=png if final else None, running=not final)
        return result

    def run(self, max_wait_s):
        os.makedirs(self.score_dir, exist_ok=True)
        if not self.wait_for_start(max_wait_s):
            return self.write("ingestion did not start", final=True)
        deadline = self.start["start_time"] + self.start["time_budget"]
        self.write("running")
        status = "finished"
        while True:
            end = runfiles.read_end(self.prediction_dir)
            if self.score_new():
                self.write("running")
            if end is not None:
                if not end["ingestion_success"]:
                    status = f"ingestion failed: {end.get('error') or 'no reason given'}"
                break
            if time.time() >= deadline:
                self.score_new()
                status = "time budget reached: ingestion terminated"
                _log(status)
                terminate(self.start["ingestion_pid"])
                break
            time.sleep(min(self.poll_s, max(0.0, deadline - time.time())))
        self.score_new()
        if status != "finished":
            self.problems.append(status)
        result = self.write(status, final=True)
        _log(f"ALC {result['alc']:.4f}, final NAUC {result['final_nauc']:.4f}, "
             f"{result['num_predictions']} predictions ({status})")
        return result


def terminate(pid):
    """SIGTERM the ingestion process group (the submission's children too), then SIGKILL."""
    def send(sig):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    if not send(signal.SIGTERM):
        return
    deadline = time.time() + KILL_GRACE_S
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _is_zombie(pid):
            return
        time.sleep(0.05)
    send(signal.SIGKILL)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_flag(parser, "dataset_dir", required=True, help="folder holding NAME.data/ and "
             "NAME.solution")
    add_flag(parser, "prediction_dir", required=True, help="ingestion's output folder")
    add_flag(parser, "score_dir", required=True, help="where scores and curves are written")
    add_flag(parser, "max_wait", type=float, default=1500.0,
             help="seconds to wait for ingestion to start the clock (default 1500)")
    args = parser.parse_args(argv)
    try:
        scorer = Scorer(args.dataset_dir, args.prediction_dir, args.score_dir)
    except layout.DatasetError as e:
        _log(f"error: {e}")
        return 2
    result = scorer.run(args.max_wait)
    return 0 if result["status"] != "ingestion did not start" else 1


if __name__ == "__main__":
    sys.exit(main())
