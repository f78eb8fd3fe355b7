"""fit's closing report in plain words, from what can be read reliably: the saved model's
description, the runner's summary (run.json) and the held-out predictions."""
import os

from . import metrics

EARLY_S = 5.0  # ingestion ending this much before the budget: the model chose to stop


def _device():
    from skeleton.device import gpu_present
    return "a CUDA GPU (present on this machine)" if gpu_present() else "the CPU (no GPU here)"


def _description(model_path):
    from skeleton import persist
    try:
        return persist.read_description(model_path)
    except persist.ModelFileError:
        return None


def _model_words(state):
    if state is None:
        return "a model whose description could not be read"
    net = state.get("net")
    if net is None:  # numpy float32 throughout
        frames, height, width = state.get("shape", (1, 0, 0))
        return (f"the quick ridge model (no network beat it), reading images at "
                f"{height}x{width}, in fp32")
    frames, height, width = net["view"]
    clip = f", {frames} frames a clip" if frames > 1 else ""
    precision = f", in {net['precision']}" if net.get("precision") else ""  # older files: none
    return f"the network {net['name']}, reading images at {height}x{width}{clip}{precision}"


def _chosen_on(args, state):
    """Which images chose the model among its candidates (the held-out set of the run)."""
    count = (state or {}).get("held_out")
    if args.valid:
        shown = f" ({count} images)" if count is not None else ""
        return (f"- chosen on: your --valid folder{shown}, which the scores below also use "
                "(so they lean optimistic)")
    if count is None:
        return None
    return f"- chosen on: {count} training images the model set aside (never trained on)"


def _ending(summary):
    budget, overrun = summary.get("time_budget"), summary.get("overrun_s")
    if not summary.get("ingestion_success"):
        return f"the run failed ({summary.get('error') or 'see the log with --verbose'})"
    if overrun is not None and overrun < -EARLY_S:
        return (f"the model stopped on its own {-overrun:.0f} s before the {budget:g} s "
                "budget: it judged there was nothing more to gain")
    return f"the {budget:g} s budget was spent"


def _best(summary):
    times, scores = summary.get("timestamps") or [], summary.get("nauc_scores") or []
    if not times:
        return None
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return times[best], len(times)


def fit_report(args, out, model_path, summary, scores, test_images, no_held_out):
    state = _description(model_path)
    lines = ["# autoclint fit", "",
             f"- data: {os.path.abspath(args.data)}"
             + (f", validated on {os.path.abspath(args.valid)}" if args.valid else ""),
             f"- trained: {_model_words(state)}, on {_device()}, "
             f"under a {args.time_budget:g} s budget",
             f"- ended: {_ending(summary)}"]
    chosen = _chosen_on(args, state)
    if chosen:
        lines.append(chosen)
    if no_held_out:
        lines.append("- held-out score: none (--test_ratio 0 trained on every image)")
    else:
        best = _best(summary)
        if best:
            lines.append(f"- best held-out predictions came at {best[0]:.0f} s, "
                         f"of {best[1]} made")
        lines += ["", "```", metrics.format_scores(scores, "held-out"), "```"]
    scored = "training images, not held out" if no_held_out else "held-out images"
    lines += ["", f"Files: {out}/model.pt (load with autoclint.load), predictions.csv "
                  f"({test_images} {scored}), learning-curve.png, run.json."]
    return "\n".join(lines) + "\n"
