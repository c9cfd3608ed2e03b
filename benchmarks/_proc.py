"""Peak memory of a process tree, sampled from /proc (no psutil in the virtualenv).

ansible-playbook forks a worker per task and host, and each module runs as its own Python process under
that worker: the controller's footprint is the sum over the whole tree, sampled every `interval` seconds.
RSS counts pages shared between a parent and its forks once per process, so the sum is an upper bound; PSS (Linux's
proportional set size, /proc/<pid>/smaps_rollup) divides each shared page among the processes sharing it, so the sum of
PSS is the tree's real share of memory (pages shared with processes outside the tree are partly counted).
"""

import os
import subprocess
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children():
    """{ppid: [pid, ...]} of every process now."""
    tree = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(name))
    return tree


def _rss(pid):
    try:
        with open("/proc/%d/statm" % pid, encoding="ascii") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _command(pid):
    """What a process is, in a few words: the module an AnsiballZ wrapper runs, else its program's name."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return "?"
    for arg in argv:
        name = os.path.basename(arg)
        if name.startswith("AnsiballZ_"):
            return name[len("AnsiballZ_") :].rsplit(".", 1)[0]
    words = [os.path.basename(a) for a in argv[:3]]
    return " ".join(w for w in words if w and not w.startswith("-"))[:60] or "?"


def tree_pids(root):
    """`root` and all its descendants."""
    tree = _children()
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(tree.get(pid, []))
    return seen


def tree_rss(root):
    """(sum of RSS in bytes, number of processes) of `root` and all its descendants."""
    tree = _children()
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(tree.get(pid, []))
    return sum(_rss(pid) for pid in seen), len(seen)


class PeakRss:
    """Samples tree_rss(pid) in a thread until stop(); `peak` (bytes) and `processes` at that peak; `peak_pss` (bytes)."""

    def __init__(self, pid, interval=0.5):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.processes = 0
        self.samples = 0
        self.peak_pss = 0
        self.peak_pss_by_process = []  # [(what, PSS bytes)] at the sample of peak_pss, largest first
        # {what: the largest PSS of one process of that kind, at any sample}: each kind's own peak. The processes' shares
        # at the moment of the tree's peak depend on what each held at that moment; this does not.
        self.peak_pss_by_kind = {}
        self.exclude_root = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self):
        while not self._stop.is_set():
            pids = tree_pids(self.pid)
            if self.exclude_root:
                pids = pids[1:]
            total = sum(_rss(pid) for pid in pids)
            shares = [(pid, _pss(pid)) for pid in pids]
            pss = sum(share for _pid, share in shares)
            kinds = [(_command(pid), share) for pid, share in shares]
            for what, share in kinds:
                if share > self.peak_pss_by_kind.get(what, 0):
                    self.peak_pss_by_kind[what] = share
            if pss > self.peak_pss:
                self.peak_pss = pss
                self.peak_pss_by_process = sorted(kinds, key=lambda item: -item[1])
            self.samples += 1
            if total > self.peak:
                self.peak, self.processes = total, len(pids)
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


def run_sampled(command, cwd, env, log_path):
    """Run `command` with its output written to `log_path` as it runs (tail -f it), sampling its tree's peak memory.

    Returns (return code, wall seconds, the stopped PeakRss sampler)."""
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log_file, subprocess.Popen(  # pylint: disable=consider-using-with
        command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT
    ) as process:
        sampler = PeakRss(process.pid).start()
        process.wait()
        sampler.stop()
    return process.returncode, time.monotonic() - started, sampler
