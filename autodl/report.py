"""What scoring leaves in the score folder: scores.txt, scores.json, the learning-curve PNG
and detailed_results.html.

While a run goes on, the HTML carries a light SVG curve and reloads itself; matplotlib (slow to
import, and the submission is using the CPU) draws the PNG once, at the end.
"""
import base64
import html
import io
import json
import os
import tempfile

from .nauc import transform_time

# Real seconds marked on the top axis of the curve, as on the platform.
TIME_TICKS = (10, 60, 300, 600, 1200)


def _write_atomic(path, data, mode="w"):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, mode) as f:
        f.write(data)
    os.replace(tmp, path)


def step_curve(timestamps, scores, time_budget, t0=60.0):
    """(x, y) vertices of the step curve: from (0, 0), each score held to x = 1."""
    xs, ys = [0.0], [0.0]
    for t, s in sorted(zip(timestamps, scores)):
        if 0 <= t <= time_budget:
            x = float(transform_time(t, time_budget, t0))
            xs += [x, x]
            ys += [ys[-1], s]
    xs.append(1.0)
    ys.append(ys[-1])
    return xs, ys


def scores_txt(result):
    lines = [f"score: {result['alc']:.6f}", f"Duration: {result['duration']:.2f}",
             f"timestamps: {[round(t, 3) for t in result['timestamps']]}",
             f"nauc_scores: {[round(s, 6) for s in result['nauc_scores']]}"]
    if result.get("accuracy") is not None:
        lines.append(f"accuracy: {[round(a, 6) for a in result['accuracy']]}")
    return "\n".join(lines) + "\n"


def write_scores_txt(score_dir, result):
    _write_atomic(os.path.join(score_dir, "scores.txt"), scores_txt(result))
    _write_atomic(os.path.join(score_dir, "scores.json"), json.dumps(result, indent=1))


def score_files(result, final):
    """{file name: content} of the score folder; the PNG (slow: matplotlib) only when final."""
    files = {"scores.txt": scores_txt(result), "scores.json": json.dumps(result, indent=1)}
    png = learning_curve_bytes(result) if final else None
    if png is not None:
        files[f"learning-curve-{result['task_name']}.png"] = png
    files["detailed_results.html"] = html_page(result, png, running=not final)
    return files


def learning_curve_png(path, result):
    with open(path, "wb") as f:
        f.write(learning_curve_bytes(result))


def learning_curve_bytes(result):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = result["time_budget"]
    xs, ys = step_curve(result["timestamps"], result["nauc_scores"], budget)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ax.fill_between(xs, ys, step=None, alpha=0.3, color="tab:blue")
    ax.plot(xs, ys, color="tab:blue", label=f"ALC = {result['alc']:.4f}")
    ax.scatter([float(transform_time(t, budget)) for t in result["timestamps"] if t <= budget],
               [s for t, s in zip(result["timestamps"], result["nauc_scores"]) if t <= budget],
               s=12, color="tab:blue", zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("transformed time: ln(1 + t/60) / ln(1 + T/60)")
    ax.set_ylabel("score (2 * AUC - 1)")
    top = ax.secondary_xaxis("top")
    ticks = [t for t in TIME_TICKS if t <= budget]
    top.set_xticks([float(transform_time(t, budget)) for t in ticks])
    top.set_xticklabels([f"{t}s" for t in ticks])
    ax.set_title(f"{result['task_name']}  (T = {budget:g} s)", pad=22)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _svg_curve(result, width=560, height=300):
    xs, ys = step_curve(result["timestamps"], result["nauc_scores"], result["time_budget"])
    points = " ".join(f"{x * width:.1f},{(1 - y) * height:.1f}" for x, y in zip(xs, ys))
    return (f'<svg width="{width}" height="{height}" style="border:1px solid #999">'
            f'<polygon points="0,{height} {points} {width},{height}" fill="#9cf" />'
            f'<polyline points="{points}" fill="none" stroke="#06c" stroke-width="2" /></svg>')


def detailed_html(path, result, png_path=None, running=False):
    png = None
    if png_path and os.path.exists(png_path):
        with open(png_path, "rb") as f:
            png = f.read()
    _write_atomic(path, html_page(result, png, running))


def html_page(result, png=None, running=False):
    refresh = '<meta http-equiv="refresh" content="5">' if running else ""
    if png:
        encoded = base64.b64encode(png).decode()
        figure = f'<img src="data:image/png;base64,{encoded}" alt="learning curve">'
    else:
        figure = _svg_curve(result)
    rows = "".join(
        f"<tr><td>{k}</td><td>{t:.2f}</td><td>{s:.4f}</td></tr>"
        for k, (t, s) in enumerate(zip(result["timestamps"], result["nauc_scores"])))
    status = "running" if running else html.escape(result.get("status", "finished"))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{refresh}"
            f"<title>{html.escape(result['task_name'])}: ALC {result['alc']:.4f}</title></head>"
            f"<body><h2>{html.escape(result['task_name'])}: ALC {result['alc']:.4f}</h2>"
            f"<p>status: {status}; time budget {result['time_budget']:g} s</p>{figure}"
            "<table border=1 cellpadding=3><tr><th>prediction</th><th>time (s)</th>"
            f"<th>NAUC</th></tr>{rows}</table></body></html>")
    return page
