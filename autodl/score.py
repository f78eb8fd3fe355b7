"""The scoring program: scores each prediction as it arrives against NAME.solution.

The platform's way: it waits for ingestion's start.txt, reads its header once, polls the
prediction folder every second and stops at start_time + time_budget. It never signals any
process. The local runner does not use this program: it scores in its own process, from the
predictions it received (`Scores`), so that nothing the submission can reach takes part.

    python -m autodl.score --dataset_dir D --prediction_dir P --score_dir S
"""
import argparse
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `autodl` package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autodl import layout, nauc, report, runfiles  # noqa: E402
from autodl.flags import add_flag  # noqa: E402


def _log(message):
    print(f"[score] {message}", file=sys.stderr, flush=True)


def degenerate_warning(solution, name):
    """A line naming a test set on which every submission scores NAUC 0, else None."""
    solution = np.asarray(solution)
    rows = solution.shape[0]
    if rows < 2:
        return (f"{name}: the test set holds {rows} example; NAUC needs positives and "
                "negatives in a class, so every submission scores 0")
    if np.isnan(nauc.column_aucs(solution, np.zeros(solution.shape))).all():
        return (f"{name}: no class has both positive and negative test examples (one class "
                "only?), so every submission scores NAUC 0")
    return None


class Scores:
    """The scores of a run, in memory: NAUC (and accuracy when one-hot) per prediction."""

    def __init__(self, task_name, solution, source=None):
        self.task_name = task_name
        self.solution = solution
        self.one_hot = nauc.is_one_hot(solution)
        self.scored = {}  # k -> (time since start, nauc, accuracy or None)
        self.problems = []
        warning = degenerate_warning(solution, source or f"{task_name}.solution")
        if warning:
            _log(f"warning: {warning}")
            self.problems.append(warning)

    def add(self, k, elapsed, read, name):
        """Score prediction k made `elapsed` s after the clock start; read() gives it."""
        try:
            prediction = read()
            if prediction.shape != self.solution.shape:
                raise ValueError(f"shape {prediction.shape}, expected {self.solution.shape}")
            if not np.isfinite(prediction).all():
                raise ValueError("holds NaN or infinite values")
            score = nauc.nauc(self.solution, prediction)
            acc = nauc.accuracy(self.solution, prediction) if self.one_hot else None
        except (OSError, ValueError) as e:
            self.problems.append(f"{name}: {e}; scored 0")
            score, acc = 0.0, 0.0 if self.one_hot else None
        self.scored[k] = (elapsed, score, acc)
        return score

    def result(self, status, time_budget, clock_rule=None):
        budget = time_budget or 0.0
        entries = [self.scored[k] for k in sorted(self.scored)]
        counted = [e for e in entries if e[0] <= budget]
        timestamps = [e[0] for e in entries]
        naucs = [e[1] for e in entries]
        return {
            "task_name": self.task_name, "time_budget": budget, "status": status,
            "alc": nauc.alc(timestamps, naucs, budget) if budget else 0.0,
            "duration": timestamps[-1] if timestamps else 0.0,
            "timestamps": timestamps, "nauc_scores": naucs,
            "accuracy": [e[2] for e in entries] if self.one_hot else None,
            "final_nauc": counted[-1][1] if counted else 0.0,
            "first_prediction_s": timestamps[0] if timestamps else None,
            "num_predictions": len(counted),
            "clock_rule": clock_rule,
            "problems": list(self.problems),
        }


class Scorer:
    """The platform's way: scores what ingestion writes in its prediction folder."""

    def __init__(self, dataset_dir, prediction_dir, score_dir, poll_s=1.0):
        self.prediction_dir = os.path.abspath(prediction_dir)
        self.score_dir = os.path.abspath(score_dir)
        data_dir = layout.find_data_dir(dataset_dir)
        self.task_name = layout.task_name(data_dir)
        test_spec = layout.read_metadata(layout.split_dir(data_dir, "test"))
        solution_path = layout.solution_path(os.path.dirname(data_dir), self.task_name)
        self.solution = layout.read_solution(solution_path,
                                             expected_rows=test_spec.sample_count,
                                             expected_cols=test_spec.output_dim)
        self.scores = Scores(self.task_name, self.solution, solution_path)
        self.problems = self.scores.problems
        self.scored = self.scores.scored
        self.poll_s = poll_s
        self.start = None

    def wait_for_start(self, max_wait_s):
        deadline = time.time() + max_wait_s
        path = os.path.join(self.prediction_dir, runfiles.START_FILE)
        while time.time() < deadline:
            if os.path.exists(path):
                try:  # read once: the clock and the budget never move afterwards
                    self.start = runfiles.read_start(self.prediction_dir)
                except (OSError, KeyError, ValueError) as e:
                    self.problems.append(f"{path}: unreadable ({e})")
                    return False
                return True
            end = runfiles.read_end(self.prediction_dir)
            if end is not None:
                self.problems.append(f"ingestion ended before starting the clock: "
                                     f"{end.get('error') or 'no reason given'}")
                return False
            time.sleep(0.2)
        self.problems.append(f"no {runfiles.START_FILE} after {max_wait_s:g} s")
        return False

    def add(self, k, elapsed, read, name):
        score = self.scores.add(k, elapsed, read, name)
        _log(f"prediction {k} at {elapsed:.2f} s: NAUC {score:.4f}")

    def score_new(self):
        """Score prediction files not scored yet; returns how many were added."""
        try:
            timestamps = runfiles.read_start(self.prediction_dir)["timestamps"]
        except (OSError, KeyError, ValueError):
            return 0
        added = 0
        for k, path in runfiles.list_predictions(self.prediction_dir, self.task_name):
            if k in self.scored or k not in timestamps:
                continue
            self.add(k, timestamps[k] - self.start["start_time"],
                     lambda: runfiles.read_prediction(path), os.path.basename(path))
            added += 1
        return added

    def result(self, status):
        return self.scores.result(status, self.start["time_budget"] if self.start else 0.0,
                                  self.start.get("clock_rule") if self.start else None)

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
        """Folder mode: poll the prediction folder until ingestion ends or the budget does."""
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
                status = "time budget reached"
                _log(status)
                break
            time.sleep(min(self.poll_s, max(0.0, deadline - time.time())))
        self.score_new()
        return self.finish(status)

    def finish(self, status):
        if status != "finished":
            self.problems.append(status)
        result = self.write(status, final=True)
        _log(f"ALC {result['alc']:.4f}, final NAUC {result['final_nauc']:.4f}, "
             f"{result['num_predictions']} predictions ({status})")
        return result


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
