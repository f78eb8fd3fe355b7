"""The benchmark: every dataset of a suite through run_local_test, for each code dir.

    python -m autodl.bench --suite cpu --code_dir autodl/reference_submission --out bench_out

Writes OUT/report.md (a table per dataset, a row per code dir, ratios to the first),
OUT/curves-DATASET.png (every learning curve of a dataset overlaid) and OUT/results.json
(every prediction's time and NAUC, to compare later runs). Runs go one at a time locally;
with --ray ADDRESS each run is a task on an existing Ray cluster (or --ray local).
--subsample N [N ...] runs stratified subsets of N training records of each dataset instead
(DATASET-nN, cached beside the zoo data; add `full` to run the whole sets too).

results.json also records where the figures come from: the date, the command line, the
machine (CPU model, cores, a calibration figure measured before the runs), each code dir's
git commit, and each dataset's fingerprint and zoo builder version. From one or more bench
outputs,

    python -m autodl.bench report OUT [OUT ...] > docs/results.md

writes the markdown results file: per dataset, a row per run with that provenance.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass

from autodl import datasets, provenance, run_local_test
from autodl.datasets.subsample import SubsampleError, subsample
from autodl.report import step_curve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_DIR = os.path.join(REPO, "data", "zoo")
REFERENCE = os.path.join(REPO, "autodl", "reference_submission")


@dataclass(frozen=True)
class Suite:
    datasets: tuple
    time_budget: float
    small: bool = False  # build the few-dozen-record versions (tests)


SUITES = {
    "smoke": Suite(("digits",), 30.0),
    "tiny": Suite(("digits",), 15.0, small=True),
    # The 2-core CPU suite: one of each kind (dense, compressed, large, multi-label, video).
    "cpu": Suite(("munster", "animals", "solar", "mosaic", "moving"), 300.0),
}

# Environment of each run. Spinning OpenMP threads collapse when anything else is busy
# (measured on this 2-core machine: 771 -> 168 images/s); passive waiting degrades gracefully.
RUN_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_one(job):
    """One run (a dict job); returns run_local_test's summary plus the job's fields."""
    for key, value in RUN_ENV.items():
        os.environ.setdefault(key, value)
    saved = {key: os.environ.get(key) for key in job.get("env", {})}
    os.environ.update(job.get("env", {}))
    started = time.time()
    try:
        summary = run_local_test.run(job["dataset_path"], job["code_dir"], job["time_budget"],
                                     output_dir=os.path.join(job["run_dir"], "predictions"),
                                     score_dir=os.path.join(job["run_dir"], "scores"),
                                     clock_rule=job["clock_rule"], progress=False)
    except Exception as e:  # a broken dataset or harness fault: recorded, the suite goes on
        summary = {"alc": 0.0, "final_nauc": 0.0, "ingestion_success": False,
                   "error": f"{type(e).__name__}: {e}", "timestamps": [], "nauc_scores": []}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {**job, **summary, "wall_s": round(time.time() - started, 2)}


def switches(run):
    """(switches, down) of a run: every prediction within the budget after the first is a
    switch; down counts those whose test NAUC is below the previous prediction's."""
    budget = run.get("time_budget", float("inf"))
    naucs = [s for t, s in zip(run.get("timestamps", []), run.get("nauc_scores", []))
             if t <= budget]
    return max(len(naucs) - 1, 0), sum(b < a for a, b in zip(naucs, naucs[1:]))


def after_last_change(run):
    """Share of the budget the run spent after its predictions last changed (the best model's
    last held-out improvement, as the harness sees it): time that bought nothing. A run that
    ended early spent only up to its end. None without predictions."""
    budget = run.get("time_budget")
    times = run.get("timestamps", [])
    scores = run.get("nauc_scores", [])
    if not budget or not times:
        return None
    last = times[0]
    for t, before, after in zip(times[1:], scores, scores[1:]):
        if t <= budget and after != before:
            last = t
    end = budget + min(0.0, run.get("overrun_s") or 0.0)
    return max(0.0, min(end, budget) - min(last, budget)) / budget


def switches_cell(runs):
    """DOWN/SWITCHES summed over runs with the share, and each run's when repeated."""
    pairs = [switches(r) for r in runs]
    total, down = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    text = f"{down}/{total}" + (f" = {down / total:.2f}" if total else "")
    if len(pairs) > 1:
        text += " (" + ", ".join(f"{d}/{n}" for n, d in pairs) + ")"
    return text


def _is_crash(run):
    # Being stopped at the budget is the protocol working, not a crash.
    return not run["ingestion_success"] and "time budget" not in (run.get("error") or "")


def _median_spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" [{fmt.format(min(values))}, {fmt.format(max(values))}]"
    return text


def table(runs, labels):
    """Markdown table of one dataset: a row per code dir, medians (min-max) over repeats."""
    header = ("| code | ALC | ALC ratio | final NAUC | final acc. | first pred. (s) | "
              "predictions | switches down | after last change | peak MB | crashes | runs |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    base = None
    for label in labels:
        mine = [r for r in runs if r["label"] == label]
        if not mine:
            continue
        alc = statistics.median(r["alc"] for r in mine)
        base = alc if base is None else base
        ratio = f"{alc / base:.3f}" if base else "-"
        peaks = [r.get("peak_rss_mb") for r in mine if r.get("peak_rss_mb") is not None]
        lines.append(" | ".join([
            f"| {label}", _median_spread([r["alc"] for r in mine], "{:.4f}"), ratio,
            _median_spread([r["final_nauc"] for r in mine], "{:.4f}"),
            _median_spread([r.get("final_accuracy") for r in mine], "{:.4f}"),
            _median_spread([r.get("first_prediction_s") for r in mine], "{:.1f}"),
            _median_spread([r.get("num_predictions") for r in mine], "{:.0f}"),
            switches_cell(mine),
            _median_spread([after_last_change(r) for r in mine], "{:.0%}"),
            f"{max(peaks):.0f}" if peaks else "-",
            str(sum(_is_crash(r) for r in mine)), f"{len(mine)} |"]))
    return "\n".join(lines)


def curves_png(path, dataset, runs, labels):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, label in enumerate(labels):
        for n, run in enumerate(r for r in runs if r["label"] == label):
            xs, ys = step_curve(run["timestamps"], run["nauc_scores"], run["time_budget"])
            ax.plot(xs, ys, color=colours[index % len(colours)], alpha=0.8,
                    label=f"{label} (ALC {run['alc']:.4f})" if n == 0 else None)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("transformed time")
    ax.set_ylabel("score (2 * AUC - 1)")
    ax.set_title(f"{dataset}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _labels(code_dirs, names):
    if names:
        if len(names) != len(code_dirs):
            raise SystemExit("--label must be given once per --code_dir")
        return names
    labels = [os.path.basename(os.path.normpath(c)) for c in code_dirs]
    return [f"{label}#{i}" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]


def parse_env(items, labels):
    """--env LABEL:VAR=VALUE -> {label: {VAR: VALUE}}: settings for one code dir's runs."""
    envs = {label: {} for label in labels}
    for item in items or ():
        label, sep, assignment = item.partition(":")
        var, eq, value = assignment.partition("=")
        if not sep or not eq or label not in envs:
            raise SystemExit(f"--env {item!r}: expected LABEL:VAR=VALUE with LABEL one of "
                             f"{labels}")
        envs[label][var] = value
    return envs


def parse_subsample(values):
    """--subsample values: training sizes (whole numbers >= 1) and optionally `full`."""
    sizes = []
    for value in values or ():
        if value == "full":
            sizes.append(value)
        elif value.isdigit() and int(value) >= 1:
            sizes.append(int(value))
        else:
            raise SystemExit(f"--subsample {value}: expected a number of training records "
                             "(1 or more) or 'full'")
    return list(dict.fromkeys(sizes))


def _variants(name, path, data_dir, sizes, seed):
    """(dataset name, path) to run for one zoo set: the set itself without sizes, else its
    subsets (built or refreshed beside it in data_dir) and the set itself for 'full'."""
    if not sizes:
        return [(name, path)]
    found = []
    for n in sizes:
        if n == "full":
            found.append((name, path))
            continue
        try:
            sub_path, built = subsample(path, n, data_dir, seed=seed)
        except SubsampleError as e:
            raise datasets.ZooError(f"--subsample {n}: {name}: {e}") from None
        sub_name = os.path.basename(sub_path)
        print(f"dataset {sub_name}: {'built' if built else 'ready'} at {sub_path}",
              file=sys.stderr)
        found.append((sub_name, sub_path))
    return found


def plan(suite, code_dirs, labels, out_dir, data_dir, time_budget, repeat, clock_rule,
         envs=None, subsample_sizes=(), subsample_seed=0):
    """Build what is missing and list the runs: dataset-major, so repeats interleave codes.
    Each job carries its data's fingerprint and builder version and its code's commit."""
    jobs = []
    commits = {label: provenance.code_commit(code_dir)
               for code_dir, label in zip(code_dirs, labels)}
    for zoo_name in suite.datasets:
        result = datasets.build(zoo_name, data_dir, small=suite.small, progress=True)
        print(f"dataset {zoo_name}: {'ready' if result.skipped else 'built'} at {result.path}",
              file=sys.stderr)
        variants = _variants(zoo_name, result.path, data_dir, subsample_sizes, subsample_seed)
        for name, path in variants:
            data = provenance.dataset_provenance(path)
            for rep in range(repeat):
                for code_dir, label in zip(code_dirs, labels):
                    jobs.append({"dataset": name, "dataset_path": path,
                                 "code_dir": os.path.abspath(code_dir), "label": label,
                                 "repeat": rep, "time_budget": time_budget,
                                 "dataset_fingerprint": data["fingerprint"],
                                 "builder_version": data["builder_version"],
                                 "code_commit": commits[label],
                                 "clock_rule": clock_rule, "env": (envs or {}).get(label, {}),
                                 "run_dir": os.path.join(out_dir, "runs", name, label,
                                                         str(rep))})
    return jobs


def run_local(jobs):
    results = []
    for n, job in enumerate(jobs, 1):
        print(f"[bench] run {n}/{len(jobs)}: {job['dataset']} x {job['label']} "
              f"(repeat {job['repeat']})", file=sys.stderr, flush=True)
        results.append(run_one(job))
        print(f"[bench]   {run_local_test.format_summary(results[-1])}", file=sys.stderr,
              flush=True)
    return results


def run_ray(jobs, address, cpus_per_run, gpus_per_run):
    """Each run a Ray task; nodes must see the repo and the datasets at the same paths."""
    import ray
    ray.init(address=None if address == "local" else address,
             runtime_env={"env_vars": {"PYTHONPATH": REPO, **RUN_ENV}},
             include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(run_one)
        return ray.get([task.remote(job) for job in jobs])
    finally:
        ray.shutdown()


def write_outputs(out_dir, suite_name, results, labels, context=None):
    """OUT/report.md, the curves and OUT/results.json. context: {"date", "command",
    "machine"} recorded with the runs (run_context's)."""
    context = context or run_context([], calibration_s=0.0)
    machine = context["machine"]
    os.makedirs(out_dir, exist_ok=True)
    sections = [f"# Benchmark `{suite_name}`", "",
                f"Machine: {machine['cpu_model']}, {machine['cpus']} cores, calibration "
                f"{machine['calibration_steps_per_s']:g} steps/s, Python {machine['python']}; "
                f"{context['date']}.", f"Command: `{context['command']}`.",
                "Medians over repeats, [min, max] when repeated; ALC ratio is to the first "
                "code dir.", ""]
    for run in results:
        run["switches"], run["switches_down"] = switches(run)
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        runs = [r for r in results if r["dataset"] == dataset]
        budget = runs[0]["time_budget"]
        sections += [f"## {dataset} (T = {budget:g} s)", "", table(runs, labels), ""]
        errors = sorted({f"{r['label']}: {r['error']}" for r in runs if _is_crash(r)})
        sections += [f"- crash: {e}" for e in errors] + ([""] if errors else [])
        curves_png(os.path.join(out_dir, f"curves-{dataset}.png"), dataset, runs, labels)
    sections += ["## Prediction switches that lowered test NAUC, all datasets", "",
                 "Each prediction after the first is a switch; down: its test NAUC is below "
                 "the previous one's (issue 15's target: at most one in ten).", ""]
    sections += [f"- {label}: {switches_cell([r for r in results if r['label'] == label])}"
                 for label in labels if any(r["label"] == label for r in results)] + [""]
    report = "\n".join(sections)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"suite": suite_name, "labels": labels, **context, "runs": results}, f,
                  indent=1)
    return report


def run_context(argv, calibration_s=None):
    """When, how and on what the bench runs: {"date", "command", "machine"}."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": shlex.join(["python", "-m", "autodl.bench", *argv]),
            "machine": provenance.machine(calibration_s)}


def _cell(value, fmt="{}"):
    return "-" if value is None else fmt.format(value)


def _short(text, n=12):
    return "-" if not text else text[:n]


RESULTS_HEADER = ("| code | ALC | final NAUC | first pred. (s) | peak MB | commit | date | "
                  "data (builder, fingerprint) | machine (CPU, cores, calibration) | command |")


def results_markdown(run_dirs, labels=None):
    """The results file from bench outputs (each a folder with results.json, or the file):
    per dataset, a row per run naming its code, data, machine and command; only the runs of
    `labels` when given (the current defaults of a before/after comparison)."""
    loaded = []
    for path in run_dirs:
        file = os.path.join(path, "results.json") if os.path.isdir(path) else path
        with open(file, encoding="utf-8") as f:
            loaded.append(json.load(f))
    rows = {}
    for result in loaded:
        machine = result.get("machine", {})
        where = (f"{machine.get('cpu_model', '?')}, {_cell(machine.get('cpus'))} cores, "
                 f"{_cell(machine.get('calibration_steps_per_s'), '{:g}')} steps/s")
        for run in result.get("runs", []):
            if labels and run["label"] not in labels:
                continue
            commit = run.get("code_commit") or {}
            version = _short(commit.get("commit"), 10) + ("+dirty" if commit.get("dirty") else "")
            data = (f"v{_cell(run.get('builder_version'))}, "
                    f"`{_short(run.get('dataset_fingerprint'))}`")
            command = result.get("command")
            rows.setdefault((run["dataset"], run.get("time_budget")), []).append(" | ".join([
                f"| {run['label']}", _cell(run.get("alc"), "{:.4f}"),
                _cell(run.get("final_nauc"), "{:.4f}"),
                _cell(run.get("first_prediction_s"), "{:.1f}"),
                _cell(run.get("peak_rss_mb"), "{:.0f}"), version,
                _cell(result.get("date")), data, where,
                f"`{command}` |" if command else "- |"]))
    lines = ["# Results", "",
             "Generated by `python -m autodl.bench report` from bench outputs (results.json); "
             "do not edit by hand. Each row is one run: the data is named by the zoo builder's "
             "version and a sha256 of the dataset's files (first 12 hex digits), the machine by "
             "its CPU, cores and the bench's calibration (steps per second of a fixed numpy "
             "loop, measured before the runs).", ""]
    for (dataset, budget), table_rows in rows.items():
        lines += [f"## {dataset} (T = {_cell(budget, '{:g}')} s)", "", RESULTS_HEADER,
                  "|" + "---|" * (RESULTS_HEADER.count("|") - 1), *table_rows, ""]
    return "\n".join(lines)


def report_main(argv):
    parser = argparse.ArgumentParser(prog="python -m autodl.bench report",
                                     description="Markdown results from bench outputs.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="a bench --out folder (or its results.json)")
    parser.add_argument("--label", action="append",
                        help="keep only the runs of this code label (repeatable)")
    args = parser.parse_args(argv)
    try:
        text = results_markdown(args.run_dirs, args.label)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="python -m autodl.bench report OUT [OUT ...] prints the markdown results "
               "file of bench outputs (see docs/results.md).")
    parser.add_argument("--suite", choices=sorted(SUITES), default="smoke")
    parser.add_argument("--code_dir", action="append",
                        help="submission folder or zip; repeat to compare (default: the "
                             "reference submission)")
    parser.add_argument("--label", action="append", help="a name per --code_dir")
    parser.add_argument("--env", action="append", metavar="LABEL:VAR=VALUE",
                        help="an environment variable for one code dir's runs (repeatable): "
                             "compare settings of one submission")
    parser.add_argument("--time_budget", type=float, help="seconds (default: the suite's)")
    parser.add_argument("--datasets", nargs="+", help="override the suite's datasets")
    parser.add_argument("--subsample", nargs="+", metavar="N",
                        help="run stratified subsets of N training records of each dataset "
                             "(test split whole) instead, as DATASET-nN; 'full' adds the "
                             "whole set")
    parser.add_argument("--subsample_seed", type=int, default=0,
                        help="seed of the subsets (0; others are named DATASET-nN-sS)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per dataset and code dir")
    parser.add_argument("--out", default="bench_out", help="output folder")
    parser.add_argument("--data", default=DEFAULT_DATA_DIR, help="where datasets are built")
    parser.add_argument("--clock_rule", default="2019-05", help="see run_local_test")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('local' to "
                        "start one here)")
    parser.add_argument("--cpus_per_run", type=float, default=2.0)
    parser.add_argument("--gpus_per_run", type=float, default=0.0)
    args = parser.parse_args(argv)

    suite = SUITES[args.suite]
    if args.datasets:
        suite = Suite(tuple(args.datasets), suite.time_budget, suite.small)
    code_dirs = args.code_dir or [REFERENCE]
    labels = _labels(code_dirs, args.label)
    sizes = parse_subsample(args.subsample)
    if args.subsample_seed < 0:
        raise SystemExit("--subsample_seed must be a non-negative integer")
    out_dir = os.path.abspath(args.out)
    try:
        jobs = plan(suite, code_dirs, labels, out_dir, args.data,
                    args.time_budget or suite.time_budget, max(1, args.repeat), args.clock_rule,
                    parse_env(args.env, labels), sizes, args.subsample_seed)
    except datasets.ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    context = run_context(argv)  # calibrated before the runs, on a quiet machine
    results = (run_ray(jobs, args.ray, args.cpus_per_run, args.gpus_per_run) if args.ray
               else run_local(jobs))
    print(write_outputs(out_dir, args.suite, results, labels, context))
    return 0 if not any(_is_crash(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
