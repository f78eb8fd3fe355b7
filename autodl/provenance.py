"""What a benchmark figure was measured on: the machine (CPU model, cores and a calibration
figure measured here), the code (its git commit) and the data (a fingerprint of the dataset's
files and the zoo builder's version). The bench records these in results.json so that a
results table can say, row by row, where its numbers come from.
"""
import hashlib
import os
import platform
import subprocess
import time

import numpy as np

from .datasets import BUILD_INFO_FILE, built_version

CALIBRATION_S = 2.0
# The build record holds no data, only how it was made; the builder version is kept apart.
_NOT_DATA = {BUILD_INFO_FILE}


def cpu_model():
    """The CPU's model name as the kernel reports it, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def calibrate(seconds=None):
    """Steps per second of a fixed small numpy training loop (logistic regression, SGD), run
    for about `seconds`: a figure of this machine's speed at the time of the bench."""
    seconds = CALIBRATION_S if seconds is None else seconds
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 512)).astype(np.float32)
    y = (x[:, :8].sum(axis=1) > 0).astype(np.float32)
    w = np.zeros((512, 1), np.float32)
    steps, start = 0, time.perf_counter()
    while True:
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= 0.1 * (x.T @ (p - y[:, None])) / len(x)
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return round(steps / elapsed, 1)


def code_commit(path):
    """{"commit", "dirty"} of the git checkout holding `path`, or None outside one."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))

    def git(*args):
        return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                              timeout=30, check=False)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def dataset_fingerprint(path):
    """sha256 over the dataset folder's files (relative path and bytes, in path order),
    the build record left out."""
    digest = hashlib.sha256()
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files += [os.path.join(root, n) for n in names if n not in _NOT_DATA]
    for file in sorted(files, key=lambda p: os.path.relpath(p, path)):
        # Path and size first: no two different folders feed the hash the same bytes.
        digest.update(f"{os.path.relpath(file, path)}\0{os.path.getsize(file)}\0".encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def dataset_provenance(path):
    """{"fingerprint", "builder_version"} of a dataset folder (builder version None when it
    was not built by the zoo)."""
    return {"fingerprint": dataset_fingerprint(path), "builder_version": built_version(path)}


def machine(calibration_s=None):
    return {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "calibration_steps_per_s": calibrate(calibration_s)}
