# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Benchmark helper (not part of the collection): the controller CPU time of every task, written as JSON at the end.

cpu = this process (the controller) plus every child it has reaped (the forked workers, and through them the modules),
between one task's start and the next one's, so each task carries its own worker forks and result processing;
controller_cpu = the controller process alone (queueing, variables, results, callbacks);
controller_after_results = the part of controller_cpu after the task's last result: what the controller does between
tasks (a role's or play's end for every host, the next play's start, other callbacks' work at the next task's start).
Only the controller's part is split there: a worker's CPU is counted when it is reaped, which may come after its result.
Enabled by benchmarks/bench_hosts.py with ANSIBLE_CALLBACK_PLUGINS / ANSIBLE_CALLBACKS_ENABLED; output to
$CMS_BENCH_TASK_CPU.
"""

DOCUMENTATION = r"""
name: task_cpu
type: aggregate
short_description: Controller CPU time per task (benchmarks only)
description: Writes [{play, task, cpu, controller_cpu, controller_after_results, wall}] to the file named by E(CMS_BENCH_TASK_CPU) when the playbook ends.
requirements: [enabled in callbacks_enabled]
"""

import json
import os
import resource
import time

from ansible.plugins.callback import CallbackBase


def _cpu(which=None):
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if which == "self":
        return own.ru_utime + own.ru_stime
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_cpu"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._rows = []
        self._current = None
        self._play = ""
        self._start_cpu = _cpu()
        self._start_wall = time.monotonic()

    def _close(self):
        if self._current is not None:
            self._current["cpu"] = round(_cpu() - self._current["cpu"], 4)
            now = _cpu("self")
            self._current["controller_after_results"] = round(now - self._current.pop("last_result", now), 4)
            self._current["controller_cpu"] = round(now - self._current["controller_cpu"], 4)
            self._current["wall"] = round(time.monotonic() - self._current["wall"], 4)
            self._rows.append(self._current)
            self._current = None

    def v2_playbook_on_play_start(self, play):
        self._close()
        self._play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self._current = {"play": self._play, "task": task.get_name(), "cpu": _cpu(), "controller_cpu": _cpu("self"), "wall": time.monotonic()}

    def _result(self, *_args, **_kwargs):
        if self._current is not None:
            self._current["last_result"] = _cpu("self")

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _result
    v2_runner_item_on_ok = v2_runner_item_on_failed = v2_runner_item_on_skipped = _result

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("CMS_BENCH_TASK_CPU")
        if path:
            total = {"cpu": round(_cpu() - self._start_cpu, 4), "wall": round(time.monotonic() - self._start_wall, 4)}
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"tasks": self._rows, "total": total, "hosts": len(stats.processed)}, handle)
