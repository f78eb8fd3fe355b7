"""autodl.supervise on its own: a child whose descendants hide (new session, SIGTERM ignored)
is stopped and swept with everything it started."""
import os
import signal
import sys

import pytest

from autodl import supervise

# A child that starts a grandchild in its own session ignoring SIGTERM, prints its pid, then
# waits to be stopped, ignoring SIGTERM itself.
HIDING = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
    start_new_session=True)
print(grandchild.pid, flush=True)
time.sleep(600)
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the sweep reads /proc")
def test_stop_and_clean_up_end_the_child_and_what_it_started(monkeypatch):
    monkeypatch.setattr(supervise, "KILL_GRACE_S", 0.2)
    child = supervise.Supervised([sys.executable, "-c", HIDING], dict(os.environ),
                                 setup_cap=600.0)
    try:
        grandchild = int(child.stdout.readline())
        assert child.alive() and not _gone(grandchild)
        assert grandchild in child.tree.members()
        assert not child.setup_overdue(child.launched) and child.setup_overdue(
            child.launched + 600.0)
        child.stop()
        assert child.alive()  # SIGTERM ignored: only the sweep ends it
        child.clean_up()
        assert not child.alive() and child.returncode == -signal.SIGKILL
        assert _gone(grandchild) and child.tree.members() == {}
        assert child.peak_rss_mb() > 0
    finally:
        child.force_end()
        child.stdout.close()
