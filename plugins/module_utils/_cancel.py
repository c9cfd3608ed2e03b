# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Cancel means stop: notice that the run was cancelled and stop between AWS calls.

ansible-core starts each worker in its own session (``setsid``), so the SIGINT of a Ctrl-C, or the signal
ansible-runner sends the playbook's process group when AWX cancels a job, never reaches a module: the
playbook exits and the module would go on creating AMIs and sending commands.  Two things tell a module
that its run is over:

* a SIGINT / SIGTERM / SIGHUP sent to the module's own process (handlers set a flag);
* the controller is gone: at start the module records its process ancestry (pid -> ppid from ``/proc``)
  up to the topmost Ansible controller process (``ansible-playbook``, whose forked workers carry the same
  command line); when any of them has exited (or is a zombie), or a link of the chain was re-parented, the
  controller exited.  Without an Ansible process in the chain only the direct parent is watched.  The
  chain stops at the controller on purpose: the shell that started a ``nohup``'d playbook may exit and the
  run must go on.

``check()`` raises :class:`Cancelled` once either happened; the retry layer calls it before every AWS call,
so every thread stops between calls.  ``sleep()`` waits in short steps and checks, so a poll interval never
delays the stop.  ``watching()`` installs the watch for the duration of a module's work and restores the
previous signal handlers afterwards (modules also run in-process in tests).
"""

import contextlib
import os
import signal
import threading
import time

from ansible_collections.cms.patching.plugins.module_utils._errors import FleetError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How often sleep() looks at the flag and the process ancestry: well inside the 2 s a cancel must take.
STEP = 0.25
# Command names of Ansible controller processes (argv[0] or, for "python3 /usr/bin/ansible-playbook", argv[1]).
CONTROLLERS = frozenset(["ansible-playbook", "ansible", "ansible-console", "ansible-pull"])
PROC = "/proc"


class Cancelled(FleetError):
    """The run was cancelled (a signal, or the controller exited): stop, make no further AWS call."""

    def __init__(self, reason):
        super().__init__("cancelled: %s" % reason)
        self.reason = reason


class _Ancestor:
    __slots__ = ("pid", "start", "ppid", "name")

    def __init__(self, pid, start, ppid, name):
        self.pid = pid
        self.start = start  # start time in clock ticks since boot: a reused pid has another one
        self.ppid = ppid
        self.name = name


_lock = threading.Lock()
_event = threading.Event()
_state = {"reason": None, "watched": None, "self_ppid": None, "previous": {}}


def _stat(pid):
    """(state, ppid, start time) of a process from /proc/<pid>/stat, or None when it does not exist."""
    try:
        with open(os.path.join(PROC, str(pid), "stat"), encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # "pid (comm) state ppid ... starttime": comm may hold spaces and parentheses, so split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _name(pid):
    try:
        with open(os.path.join(PROC, str(pid), "cmdline"), "rb") as handle:
            argv = [os.path.basename(a.decode("utf-8", "replace")) for a in handle.read().split(b"\0")[:2]]
    except OSError:
        return ""
    for arg in argv:
        if arg in CONTROLLERS:
            return arg
    return argv[0] if argv else ""


def ancestry(pid=None):
    """The ancestors to watch for process pid (default: this one), nearest first."""
    pid = os.getpid() if pid is None else pid
    chain = []
    stat = _stat(pid)
    while stat is not None and stat[1] > 1:
        parent = stat[1]
        parent_stat = _stat(parent)
        if parent_stat is None:
            break
        chain.append(_Ancestor(parent, parent_stat[2], parent_stat[1], _name(parent)))
        stat = parent_stat
    controllers = [i for i, a in enumerate(chain) if a.name in CONTROLLERS]
    if not controllers:
        return chain[:1]
    top = controllers[0]
    while top + 1 < len(chain) and chain[top + 1].name in CONTROLLERS:
        top += 1
    return chain[: top + 1]


def _gone(ancestors, self_ppid):
    """Why the controller is considered gone, or None."""
    if self_ppid is not None and os.getppid() != self_ppid:
        return "the parent process %d exited (the controller is gone)" % self_ppid
    for i, ancestor in enumerate(ancestors):
        stat = _stat(ancestor.pid)
        label = "%s (pid %d)" % (ancestor.name or "process", ancestor.pid)
        if stat is None or stat[2] != ancestor.start or stat[0] in ("Z", "X"):
            return "%s exited (the controller is gone)" % label
        # The topmost watched process may be re-parented (a nohup'd playbook whose shell exited); the links below it may not.
        if i + 1 < len(ancestors) and stat[1] != ancestor.ppid:
            return "%s was re-parented (the controller is gone)" % label
    return None


def _on_signal(signum, _frame):
    cancel("received %s" % signal.Signals(signum).name)


def cancel(reason):
    """Mark the run cancelled (the first reason is kept) and wake every sleeper."""
    with _lock:
        if _state["reason"] is None:
            _state["reason"] = reason
    _event.set()


def cancelled():
    """The reason the run was cancelled, or None."""
    return _state["reason"]


def check():
    """Raise Cancelled when a signal arrived or the controller exited; cheap enough for every AWS call."""
    reason = _state["reason"]
    if reason is None and _state["watched"] is not None:
        reason = _gone(_state["watched"], _state["self_ppid"])
        if reason is not None:
            cancel(reason)
            reason = _state["reason"]
    if reason is not None:
        raise Cancelled(reason)


def sleep(seconds):
    """time.sleep that stops with Cancelled within STEP seconds of a cancel."""
    deadline = time.monotonic() + max(0.0, float(seconds))
    while True:
        check()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        _event.wait(min(STEP, remaining))


def install():
    """Start watching: record the ancestry and catch SIGINT/SIGTERM/SIGHUP (from the main thread only)."""
    with _lock:
        _state["reason"] = None
        _event.clear()
        if os.path.isdir(PROC):
            _state["watched"] = ancestry()
            _state["self_ppid"] = os.getppid()
        else:  # no /proc (a macOS controller): the parent alone tells that the controller is gone
            _state["watched"] = []
            _state["self_ppid"] = os.getppid()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                previous[signum] = signal.signal(signum, _on_signal)
        _state["previous"] = previous


def uninstall():
    """Stop watching and give the signals back to their previous handlers."""
    with _lock:
        for signum, handler in _state["previous"].items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _state.update(reason=None, watched=None, self_ppid=None, previous={})
        _event.clear()


@contextlib.contextmanager
def watching():
    """Watch for a cancel while the block runs."""
    install()
    try:
        yield
    finally:
        uninstall()
