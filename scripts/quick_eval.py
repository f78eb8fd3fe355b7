"""The quick model's first prediction on each zoo dataset: test NAUC and seconds, old vs new.

    python scripts/quick_eval.py [--zoo /tmp/zoo] [--datasets mosaic,moving] [--repeats 2]

Each run is what the learner does before its first prediction, through its own code
(skeleton/learner.py's first train() and test(): the profile scan, the ExampleStore filled
with the first quick.train_records records or as many as quick.read_seconds allow, the
held-out split, the quick model's fit and validation, the test set read and predicted).
"old" is the same model with the new feature blocks switched off (pixels averaged over
frames only); "new" is the configs as they are. Seconds: from the learner's creation to the
test predictions in hand (read + fit + predict), and the quick model's own fit + predict.
The box is shared, so compare the two columns of one run (ratios), not absolute seconds.
Test labels come from the dataset's .solution file, read here for scoring only.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import skeleton.learner as learner_module  # noqa: E402
from autodl.tfdata import AutoDLDataset  # noqa: E402
from skeleton.metrics import nauc  # noqa: E402
from skeleton.quick import QuickModel  # noqa: E402

VARIANTS = {"old": {"quick": {"time_segments": 0, "local": {"filters": 0}}}, "new": {}}


class TimedQuickModel(QuickModel):
    """The quick model, counting the seconds it spends fitting and predicting."""
    seconds = 0.0

    def fit(self, x, y):
        start = time.time()
        try:
            return super().fit(x, y)
        finally:
            TimedQuickModel.seconds += time.time() - start

    def predict(self, x):
        start = time.time()
        try:
            return super().predict(x)
        finally:
            TimedQuickModel.seconds += time.time() - start


def first_prediction(folder, name, overrides):
    """(test NAUC, seconds to the first prediction, quick model seconds, train records)."""
    train = AutoDLDataset(os.path.join(folder, f"{name}.data", "train"))
    test = AutoDLDataset(os.path.join(folder, f"{name}.data", "test"))
    TimedQuickModel.seconds = 0.0
    gc.collect()  # the previous run's arrays are freed here, not inside the timed run
    start = time.time()
    learner = learner_module.Learner(train.get_metadata(), start, overrides)
    learner.train(train.get_dataset(), None)
    prediction = learner.test(test.get_dataset(), None)
    seconds = time.time() - start
    solution = np.loadtxt(os.path.join(folder, f"{name}.solution"), ndmin=2)
    return (nauc(solution, prediction), seconds, TimedQuickModel.seconds,
            len(learner.feed.train_idx))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="/tmp/zoo")
    parser.add_argument("--datasets", default=None, help="comma-separated (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="medians over this many runs")
    parser.add_argument("--new", default="{}", help="JSON overrides of the new variant (tuning)")
    args = parser.parse_args()
    VARIANTS["new"] = json.loads(args.new)
    learner_module.QuickModel = TimedQuickModel
    names = args.datasets.split(",") if args.datasets else sorted(os.listdir(args.zoo))
    print("| dataset | train records | NAUC old | NAUC new | s old (quick) | s new (quick) "
          "| new/old s |")
    print("|---|---|---|---|---|---|---|")
    first_prediction(os.path.join(args.zoo, names[0]), names[0], {})  # imports, file cache
    for name in names:
        folder = os.path.join(args.zoo, name)
        runs = {variant: [] for variant in VARIANTS}
        for repeat in range(args.repeats):
            order = list(VARIANTS) if repeat % 2 == 0 else list(VARIANTS)[::-1]
            for variant in order:  # alternated: load, caches and second-run effects hit both
                runs[variant].append(first_prediction(folder, name, VARIANTS[variant]))
        med = {v: [statistics.median(r[i] for r in runs[v]) for i in range(4)] for v in runs}
        old, new = med["old"], med["new"]
        print(f"| {name} | {int(new[3])} | {old[0]:.3f} | {new[0]:.3f} | {old[1]:.2f} "
              f"({old[2]:.2f}) | {new[1]:.2f} ({new[2]:.2f}) | {new[1] / old[1]:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
