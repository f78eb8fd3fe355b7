"""The files that ingestion writes and scoring reads: start.txt, end.txt, NAME.predict_k.

start.txt and end.txt are YAML-style `key: value` lines. Timestamps are appended to
start.txt as `k: <time>` right after test() returns and before NAME.predict_k appears, so a
prediction file found by scoring always has its time already recorded.
"""
import glob
import os
import re
import secrets
import stat
import tempfile

import numpy as np

START_FILE = "start.txt"
END_FILE = "end.txt"


def _write_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _parse_lines(path):
    """key -> value from `key: value` lines; a half-written last line is ignored."""
    values = {}
    with open(path) as f:
        for line in f:
            if not line.endswith("\n") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            values[key.strip()] = value.strip()
    return values


def write_start(output_dir, *, pid, task_name, time_budget, start_time, clock_rule):
    _write_atomic(os.path.join(output_dir, START_FILE),
                  start_text(pid=pid, task_name=task_name, time_budget=time_budget,
                             start_time=start_time, clock_rule=clock_rule))


def append_timestamp(output_dir, k, timestamp):
    # O_NOFOLLOW: a link put in start.txt's place fails here instead of being written through.
    fd = os.open(os.path.join(output_dir, START_FILE),
                 os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "w") as f:
        f.write(f"{k}: {timestamp!r}\n")


class FolderGone(OSError):
    """A folder the runner writes into was deleted or replaced while it ran."""


class OwnFolder:
    """A folder the runner writes into through a descriptor it opened itself.

    Each file is created new (O_EXCL | O_NOFOLLOW) under a random name and renamed into place,
    so a link planted under the final name is replaced, never followed. A folder that is no
    longer the one opened (deleted, renamed, replaced by a link) raises FolderGone.
    """

    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, path, role="folder"):
        self.path = os.path.abspath(path)
        self.role = role
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        info = os.fstat(self.fd)
        self.identity = (info.st_dev, info.st_ino)

    def intact(self):
        try:
            info = os.stat(self.path, follow_symlinks=False)
            # A deleted folder keeps its inode while we hold it open, but has no links left.
            return (stat.S_ISDIR(info.st_mode) and os.fstat(self.fd).st_nlink > 0
                    and (info.st_dev, info.st_ino) == self.identity)
        except (OSError, TypeError):
            return False

    def check(self):
        if self.fd is None or not self.intact():
            raise FolderGone(f"{self.path}: the {self.role} was deleted or replaced during the "
                             "run")

    def _create(self, name, extra=0):
        return os.open(name, self._FLAGS | extra, 0o644, dir_fd=self.fd)

    def write(self, name, data):
        """Replace `name` with data (bytes or text) atomically."""
        self.check()
        if isinstance(data, str):
            data = data.encode("utf-8")
        tmp = f".tmp-{secrets.token_hex(8)}-{name}"
        fd = self._create(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=self.fd)
            except OSError:
                pass
            raise

    def open_new(self, name, mode="w"):
        """A fresh file `name` (whatever was there is unlinked), open for appending; only
        this descriptor writes it, wherever the name is pointed later."""
        self.check()
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise FolderGone(f"{os.path.join(self.path, name)}: a folder stands there") from None
        fd = self._create(name, os.O_APPEND)
        return os.fdopen(fd, mode, buffering=1) if "b" not in mode else os.fdopen(fd, mode)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def start_text(*, pid, task_name, time_budget, start_time, clock_rule):
    return (f"ingestion_pid: {pid}\ntask_name: {task_name}\ntime_budget: {time_budget}\n"
            f"start_time: {start_time!r}\nclock_rule: {clock_rule}\n")


def end_text(*, duration, success, end_time, error=None):
    text = (f"ingestion_duration: {duration:.3f}\ningestion_success: {int(success)}\n"
            f"end_time: {end_time!r}\n")
    if error:
        text += f"error: {one_line(error)}\n"
    return text


def prediction_text(prediction):
    # 9 significant digits keep float32 rankings intact (no ties added by rounding).
    return "\n".join(" ".join(f"{v:.9g}" for v in row) for row in prediction.tolist()) + "\n"


def read_start(output_dir):
    """The start header as a dict, plus 'timestamps': {k: time} of predictions so far."""
    raw = _parse_lines(os.path.join(output_dir, START_FILE))
    info = {"ingestion_pid": int(raw["ingestion_pid"]), "task_name": raw["task_name"],
            "time_budget": float(raw["time_budget"]), "start_time": float(raw["start_time"]),
            "clock_rule": raw.get("clock_rule", "")}
    info["timestamps"] = {int(k): float(v) for k, v in raw.items() if k.isdigit()}
    return info


def write_end(output_dir, *, duration, success, end_time, error=None):
    _write_atomic(os.path.join(output_dir, END_FILE),
                  end_text(duration=duration, success=success, end_time=end_time, error=error))


def read_end(output_dir):
    """end.txt as a dict, or None while ingestion is still running."""
    path = os.path.join(output_dir, END_FILE)
    if not os.path.exists(path):
        return None
    raw = _parse_lines(path)
    return {"ingestion_duration": float(raw.get("ingestion_duration", "nan")),
            "ingestion_success": raw.get("ingestion_success") == "1",
            "end_time": float(raw.get("end_time", "nan")), "error": raw.get("error")}


def prediction_path(output_dir, task_name, k):
    return os.path.join(output_dir, f"{task_name}.predict_{k}")


def list_predictions(output_dir, task_name):
    """[(k, path)] of the prediction files present, in k order."""
    found = []
    pattern = re.compile(re.escape(task_name) + r"\.predict_(\d+)$")
    for path in glob.glob(os.path.join(glob.escape(output_dir), f"{glob.escape(task_name)}"
                                       ".predict_*")):
        match = pattern.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def write_prediction(path, prediction: np.ndarray):
    _write_atomic(path, prediction_text(prediction))


def read_prediction(path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.float64, ndmin=2)


# -- the report channel ---------------------------------------------------------------------
# Under the local runner, ingestion writes nothing the harness later trusts: it reports on a
# pipe (`clock`, `predict` + the matrix as little-endian float64, `error TEXT`), the runner
# stamps each message with its own clock when it arrives, writes the prediction files itself
# and feeds the scorer on another pipe (`start`, `predict K ELAPSED` + matrix, `end`).
MAX_HEADER = 4096


def one_line(text):
    return " ".join(str(text).split())


def encode_message(header, matrix=None):
    data = (one_line(header) + "\n").encode("utf-8", "replace")
    if matrix is not None:
        data += np.ascontiguousarray(matrix, dtype="<f8").tobytes()
    return data


def send_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_message(stream, shape):
    """(header words, matrix or None) from a binary stream; None at the end of the stream.

    Raises ValueError on anything that does not follow the protocol.
    """
    line = stream.readline(MAX_HEADER)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ValueError("header line too long or cut off")
    words = line.decode("utf-8", "replace").split()
    if not words:
        raise ValueError("empty header line")
    matrix = None
    if words[0] == "predict":
        size = int(np.prod(shape)) * 8
        payload = stream.read(size)
        if len(payload) != size:
            raise ValueError(f"prediction cut off ({len(payload)} of {size} bytes)")
        matrix = np.frombuffer(payload, dtype="<f8").reshape(shape).astype(np.float64)
    return words, matrix
