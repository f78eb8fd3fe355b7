"""Scores a user reads: top-1 accuracy, balanced accuracy, per-class precision and recall, a
confusion matrix, and the challenge's AUC/NAUC for those who want them. Pure numpy."""
import numpy as np

from autodl import nauc as kit


def score(truth, probabilities, label_names):
    """truth: [N, C] 0/1 labels; probabilities: [N, C]. Top-1 counts a row right when its top
    class is one of the row's true classes."""
    truth = np.asarray(truth, np.float64) > 0.5
    probs = np.asarray(probabilities, np.float64)
    n, c = truth.shape
    top = probs.argmax(axis=1)
    right = truth[np.arange(n), top]
    true_class = truth.argmax(axis=1)  # the first true class: the confusion matrix's row
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (true_class, top), 1)
    per_class = {}
    for k, name in enumerate(label_names):
        support = int(truth[:, k].sum())
        predicted = int((top == k).sum())
        hits = int((right & (top == k)).sum())
        per_class[name] = {"precision": hits / predicted if predicted else None,
                           "recall": hits / support if support else None,
                           "support": support}
    recalls = [v["recall"] for v in per_class.values() if v["recall"] is not None]
    aucs = kit.column_aucs(truth, probs)
    valid = aucs[~np.isnan(aucs)]
    return {"images": int(n), "accuracy": float(right.mean()) if n else None,
            "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
            "per_class": per_class, "labels": list(label_names),
            "confusion": confusion.tolist(),
            "auc": float(valid.mean()) if valid.size else None,
            "nauc": kit.nauc(truth, probs) if n else None}


def _pct(value):
    return "-" if value is None else f"{value:.3f}"


def format_scores(result, title="held-out"):
    """The scores as text: headline, per class, confusion matrix (rows true, columns
    predicted)."""
    lines = [f"{title}: {result['images']} images, top-1 accuracy {_pct(result['accuracy'])}, "
             f"balanced accuracy {_pct(result['balanced_accuracy'])} "
             f"(AUC {_pct(result['auc'])}, NAUC {_pct(result['nauc'])})"]
    width = max(8, *(len(name) for name in result["labels"]))
    lines.append(f"  {'class':<{width}}  precision  recall  images")
    for name, v in result["per_class"].items():
        lines.append(f"  {name:<{width}}  {_pct(v['precision']):>9}  {_pct(v['recall']):>6}"
                     f"  {v['support']:>6}")
    lines.append("  confusion matrix (rows: true class, columns: predicted class)")
    cell = max(5, *(len(str(v)) for row in result["confusion"] for v in row))
    short = [name[:cell] for name in result["labels"]]
    lines.append(f"  {'':<{width}}  " + " ".join(f"{s:>{cell}}" for s in short))
    for name, row in zip(result["labels"], result["confusion"]):
        lines.append(f"  {name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def plot_confusion(result, path):
    """The confusion matrix as a PNG (counts in the cells)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    matrix = np.asarray(result["confusion"])
    labels = result["labels"]
    size = 2.5 + 0.5 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    peak = matrix.max() if matrix.size else 0
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > peak / 2 else "black")
    ax.set_title(f"top-1 accuracy {_pct(result['accuracy'])}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
