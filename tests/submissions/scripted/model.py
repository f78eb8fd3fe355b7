"""A test submission whose behaviour the environment variable SCRIPTED_BEHAVIOUR selects.

good: three random predictions, then done. never_done: predicts forever, ignoring the budget.
raise_init / raise_train / raise_test: raise there (after one good prediction for train/test).
wrong_shape / nan: a bad prediction after one good one. sleep: one good prediction, then
sleeps far past the budget. torch_after_tf: imports torchvision (the TF-then-torch crash).
metadata_only: like good, but never touches the tf.data datasets (the test set's size comes
from its metadata), so it runs where TensorFlow is absent.

Hostile ones (SCRIPTED_PROBE: a file where they note what they did or found):
forge_pid / forge_clock: rewrite start.txt (another process's pid from SCRIPTED_VICTIM; a clock
start an hour later and prediction files of their own), then predict forever. peek_solution: looks for the
.solution above get_dataset_name() and predicts it if found. hang_import / hang_init: never
return from the import or from Model(). orphans: starts children (same group, a new session,
an orphaned grandchild) that outlive it and keep writing, then ends normally. stubborn:
ignores SIGTERM, starts a child in a new session that ignores it too, and predicts forever.
fake_score: SIGKILLs any sibling whose command line shows -score_dir and writes a perfect
scores.json into the runner's score folder. stop_scorer: SIGSTOPs such a sibling, then floods
predictions. daemon: starts a child in a new session that forks and exits in a loop (its pid
keeps changing), appending to SCRIPTED_PROBE. flood: test() returns one cached array at once,
forever. link_start: replaces start.txt with a link to SCRIPTED_VICTIM. delete_out: deletes
its output folder. bad_array / bad_done: an object whose __array__ raises, a done_training
property that raises. exit_early: os._exit(0) in the second train().
"""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np

BEHAVIOUR = os.environ.get("SCRIPTED_BEHAVIOUR", "good")
PROBE = os.environ.get("SCRIPTED_PROBE")
if BEHAVIOUR == "torch_after_tf":
    import torchvision  # noqa: F401  (segfaults after TensorFlow unless the harness guards)
if BEHAVIOUR == "hang_import":
    while True:
        time.sleep(1)


def _note(text):
    if PROBE:
        with open(PROBE, "a") as f:
            f.write(text + "\n")


def _output_dir():
    return sys.argv[sys.argv.index("-output_dir") + 1]


def _forge(task, rows, classes):
    """What a submission can write to steer a harness that trusts its folder: forge_pid
    names another process in start.txt, forge_clock moves the clock an hour later and adds
    prediction files of its own with early timestamps."""
    out = _output_dir()
    path = os.path.join(out, "start.txt")
    header = open(path).read() if os.path.exists(path) else ""
    if BEHAVIOUR == "forge_pid":
        victim = os.environ.get("SCRIPTED_VICTIM", "1")
        lines = [f"ingestion_pid: {victim}" if line.startswith("ingestion_pid:") else line
                 for line in header.splitlines()]
        if not header:
            lines = [f"ingestion_pid: {victim}", f"task_name: {task}", "time_budget: 5",
                     f"start_time: {time.time()!r}"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return
    with open(path, "w") as f:
        f.write(f"ingestion_pid: {os.getpid()}\ntask_name: {task}\ntime_budget: 3600\n"
                f"start_time: {time.time() + 3600!r}\nclock_rule: 2019-05\n")
        for k in range(40, 45):
            f.write(f"{k}: {time.time() + 3600 + k / 100!r}\n")
    for k in range(40, 45):
        np.savetxt(os.path.join(out, f"{task}.predict_{k}"), np.ones((rows, classes)))


_SLEEPER = ("import os, sys, time\n"
            "out = sys.argv[1]\n"
            "while True:\n"
            "    open(os.path.join(out, 'orphan-%d' % os.getpid()), 'w').close()\n"
            "    time.sleep(0.2)\n")
_FORKER = ("import os, subprocess, sys\n"
           "p = subprocess.Popen([sys.executable, '-c', sys.argv[2], sys.argv[1]],"
           " start_new_session=True)\n"
           "open(sys.argv[3], 'a').write('pid %d\\n' % p.pid)\n")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _score_dir():
    """The score folder, from the runner's command line (the submission's grandparent view)."""
    args = _cmdline(os.getppid())
    return args[args.index("-score_dir") + 1] if "-score_dir" in args else None


def _signal_scorers(sig):
    runner = os.getppid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (os.getpid(), runner):
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == runner and "-score_dir" in _cmdline(entry):
            os.kill(int(entry), sig)
            _note(f"signalled {entry}")


def _fake_score():
    _signal_scorers(signal.SIGKILL)
    time.sleep(0.3)
    folder = _score_dir()
    fake = {"alc": 0.999, "final_nauc": 1.0, "accuracy": [1.0], "first_prediction_s": 0.01,
            "num_predictions": 1, "timestamps": [0.01], "nauc_scores": [1.0], "problems": []}
    import json
    with open(os.path.join(folder, "scores.json"), "w") as f:
        json.dump(fake, f)


_HOPPER = ("import os, sys, time\n"
           "os.setsid()\n"
           "while True:\n"
           "    if os.fork():\n"
           "        os._exit(0)\n"
           "    with open(sys.argv[1], 'a') as f:\n"
           "        f.write('%d\\n' % os.getpid())\n"
           "    time.sleep(0.005)\n")


class Unconvertible:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("scripted failure in __array__")


def _spawn_orphans():
    out = _output_dir()
    same = subprocess.Popen([sys.executable, "-c", _SLEEPER, out])
    session = subprocess.Popen([sys.executable, "-c", _SLEEPER, out], start_new_session=True)
    _note(f"pid {same.pid}")
    _note(f"pid {session.pid}")
    # A grandchild in its own session whose parent exits at once: re-parented, orphaned.
    subprocess.run([sys.executable, "-c", _FORKER, out, _SLEEPER, PROBE], check=True)


class Model:
    def __init__(self, metadata):
        if BEHAVIOUR == "raise_init":
            raise RuntimeError("scripted failure in __init__")
        if BEHAVIOUR == "hang_init":
            while True:
                time.sleep(1)
        self.split_dir = metadata.get_dataset_name()
        if BEHAVIOUR == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.classes = metadata.get_output_size()
        self.train_dir = metadata.get_dataset_name()
        self._done = False
        self.calls = 0
        self.cached = None
        self.test_size = None

    @property
    def done_training(self):
        if BEHAVIOUR == "bad_done" and self.calls >= 1:
            raise RuntimeError("scripted failure in done_training")
        return self._done

    @done_training.setter
    def done_training(self, value):
        self._done = value

    def train(self, dataset, remaining_time_budget=None):
        self.calls += 1
        if BEHAVIOUR == "exit_early" and self.calls == 2:
            os._exit(0)
        if BEHAVIOUR == "fake_score" and self.calls == 2:
            _fake_score()
        if BEHAVIOUR == "stop_scorer" and self.calls == 1:
            _signal_scorers(signal.SIGSTOP)
        if BEHAVIOUR == "daemon" and self.calls == 1:
            subprocess.Popen([sys.executable, "-c", _HOPPER, PROBE])
            time.sleep(0.5)
        if BEHAVIOUR == "link_start" and self.calls == 2:
            start = os.path.join(_output_dir(), "start.txt")
            for _ in range(100):  # the runner writes it when it takes the clock report
                if os.path.exists(start):
                    break
                time.sleep(0.05)
            os.remove(start)
            os.symlink(os.environ["SCRIPTED_VICTIM"], start)
        if BEHAVIOUR == "delete_out" and self.calls == 2:
            import shutil
            shutil.rmtree(_output_dir())
        if BEHAVIOUR == "raise_train" and self.calls == 2:
            raise ValueError("scripted failure in train")
        if BEHAVIOUR == "sleep" and self.calls == 2:
            time.sleep(3600)
        if BEHAVIOUR == "orphans" and self.calls == 1:
            _spawn_orphans()
        if BEHAVIOUR == "stubborn" and self.calls == 1:
            child = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                      "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                      "time.sleep(600)"], start_new_session=True)
            _note(f"pid {child.pid}")
        if BEHAVIOUR in ("never_done", "forge_pid", "forge_clock", "stubborn", "delete_out"):
            time.sleep(0.5)
        elif BEHAVIOUR in ("stop_scorer", "flood"):
            pass
        elif self.calls >= 3:
            self.done_training = True

    def test(self, dataset, remaining_time_budget=None):
        if self.test_size is None and BEHAVIOUR == "metadata_only":
            from autodl.tfdata import AutoDLMetadata  # the harness's package: no TensorFlow
            test_dir = os.path.join(os.path.dirname(self.train_dir), "test")
            self.test_size = AutoDLMetadata(test_dir).size()
        if self.test_size is None:
            self.test_size = sum(1 for _ in dataset)
        if BEHAVIOUR in ("stop_scorer", "flood"):
            if self.cached is None:
                self.cached = np.random.default_rng(0).random((self.test_size, self.classes))
            return self.cached
        if self.calls == 2 and BEHAVIOUR == "bad_array":
            return Unconvertible()
        if BEHAVIOUR in ("forge_pid", "forge_clock") and self.calls == 2:
            task = os.path.basename(os.path.dirname(self.split_dir))[:-len(".data")]
            _forge(task, self.test_size, self.classes)
        if BEHAVIOUR == "peek_solution":
            found = glob.glob(os.path.join(self.split_dir, "..", "..", "*.solution"))
            _note(f"solution {'found' if found else 'not found'}")
            if found:
                return np.loadtxt(found[0], ndmin=2)
        if self.calls == 2 and BEHAVIOUR == "raise_test":
            raise KeyError("scripted failure in test")
        if self.calls == 2 and BEHAVIOUR == "wrong_shape":
            return np.zeros((self.test_size, self.classes + 1))
        if self.calls == 2 and BEHAVIOUR == "nan":
            return np.full((self.test_size, self.classes), np.nan)
        return np.random.default_rng(self.calls).random((self.test_size, self.classes))
