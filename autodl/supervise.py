"""Process supervision for the runner: ingestion started in its own session, every process it
starts kept in our tree (the runner is their subreaper), stopped with SIGTERM then SIGKILL, and
swept until none is left. The runner's loop asks a Supervised child whether it is alive, and
tells it to stop and to clean up; the child keeps its exit status and peak memory.
"""
import os
import signal
import subprocess
import sys
import time

# Seconds between SIGTERM and SIGKILL when ingestion overruns.
KILL_GRACE_S = 2.0
# Killing the tree stops trying after this long (a process stuck in the kernel).
SWEEP_LIMIT_S = 5.0
# The time before the clock starts (imports under 2019-08, construction too under 2019-12)
# is capped: the 2019-12 rule's 20 minutes.
SETUP_CAP_S = 20 * 60.0


def log(message):
    print(f"[runner] {message}", file=sys.stderr, flush=True)


def reap(process, usage):
    """Non-blocking wait that keeps the child's resource usage (peak memory) in `usage`."""
    if process.returncode is not None:
        return True
    try:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere: its status is lost, not its end
        process.returncode = -1
        return True
    if pid == 0:
        return False
    process.returncode = os.waitstatus_to_exitcode(status)
    usage.append(rusage)
    return True


def reap_wait(process, usage, timeout):
    deadline = time.time() + timeout
    while not reap(process, usage) and time.time() < deadline:
        time.sleep(0.05)


def become_subreaper():
    """Orphaned descendants of ingestion become our children instead of init's, so that
    every process the submission starts stays in our tree (Linux; elsewhere the process group
    is what is stopped)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def process_table():
    """{pid: (ppid, state letter)} of every process, from /proc."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


class ProcessTree:
    """Everything ingestion started, whatever group, session or parent it moved to.

    The runner is the subreaper of its tree: a process whose parent ends is re-parented to
    the runner, never to init, so every process the submission starts stays our descendant
    through its parent links. A sweep kills every descendant; the sweeps go on until one finds
    no descendant at all, not even a zombie. A zombie is reaped only after the sweep that saw
    it, and its children were re-parented before it became one, so the next sweep sees them:
    a fork loop that keeps changing its pid cannot slip between two sweeps.
    """

    def __init__(self, process, preexisting):
        self.root = process.pid
        self.me = os.getpid()
        self.exclude = set(preexisting)  # our children from before ingestion: not its tree

    def members(self):
        """{pid: (ppid, state)} of our descendants, zombies included."""
        table = process_table()
        children = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        found, stack = {}, list(children.get(self.me, []))
        while stack:
            pid = stack.pop()
            if pid in found or pid in self.exclude or pid == self.me:
                continue
            found[pid] = table[pid]
            stack.extend(children.get(pid, []))
        return found

    def stop(self, ingestion, usage):
        """SIGTERM ingestion's group and give it KILL_GRACE_S to end."""
        signal_group(self.root, signal.SIGTERM)
        deadline = time.time() + KILL_GRACE_S
        while time.time() < deadline and not reap(ingestion, usage):
            time.sleep(0.05)

    def kill_all(self, ingestion, usage):
        """Kill and reap our whole tree; False (and a line) if it is not empty within
        SWEEP_LIMIT_S."""
        deadline = time.time() + SWEEP_LIMIT_S
        while True:
            signal_group(self.root, signal.SIGKILL)
            members = self.members()
            if not members:
                return True
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            for pid, (ppid, state) in members.items():
                if state != "Z" or ppid != self.me:
                    continue
                if pid == ingestion.pid:
                    reap(ingestion, usage)  # keeps its status and peak memory
                    continue
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            if time.time() > deadline:
                log(f"{len(members)} processes still alive after {SWEEP_LIMIT_S:g} s of "
                    "killing: " + " ".join(map(str, sorted(members)[:10])))
                return False
            time.sleep(0.005)


class Supervised:
    """One supervised child (ingestion): started in its own session with its output on a
    pipe, with everything it starts kept in our tree; `setup_cap` seconds for it to start the
    clock. Use: alive(), setup_overdue(now), then stop() when it must end early, and always
    clean_up() (kills and reaps what is left)."""

    def __init__(self, argv, env, pass_fds=(), setup_cap=SETUP_CAP_S):
        become_subreaper()
        me = os.getpid()
        preexisting = {pid for pid, (ppid, _) in process_table().items() if ppid == me}
        self.setup_cap = setup_cap
        self.usage = []
        self.launched = time.time()
        self.process = subprocess.Popen(
            argv, pass_fds=pass_fds, env=env, start_new_session=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, errors="replace")
        self.tree = ProcessTree(self.process, preexisting)

    @property
    def pid(self):
        return self.process.pid

    @property
    def stdout(self):
        return self.process.stdout

    @property
    def returncode(self):
        return self.process.returncode

    def alive(self):
        return not reap(self.process, self.usage)

    def setup_overdue(self, now):
        """True once `setup_cap` seconds passed since the launch (for a clock not started)."""
        return now >= self.launched + self.setup_cap

    def stop(self):
        """SIGTERM, a grace, then whatever is left is for clean_up."""
        self.tree.stop(self.process, self.usage)

    def clean_up(self, wait_s=2.0):
        """Kill and reap the whole tree (whatever it left behind, wherever it moved), then
        wait up to wait_s for the child's own status."""
        self.tree.kill_all(self.process, self.usage)
        reap_wait(self.process, self.usage, wait_s)

    def force_end(self):
        """The last resort on any way out: nothing it started may outlive the run."""
        if self.process.poll() is None:
            self.process.kill()
        self.tree.kill_all(self.process, self.usage)

    def peak_rss_mb(self):
        return round(self.usage[0].ru_maxrss / 1024.0, 1) if self.usage else None
