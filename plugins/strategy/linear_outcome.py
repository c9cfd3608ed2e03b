# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: linear_outcome
short_description: Linear, with each host's cms.patching.host_outcome result made in the controller (no worker per host)
version_added: 0.1.0
description:
  - The same as P(ansible.builtin.linear#strategy) for every task but C(cms.patching.host_outcome) tasks without a C(loop),
    C(when), C(failed_when), C(changed_when), C(register), C(notify), C(until) or C(delegate_to).
  - For those, the controller computes each host's result from the task's templated arguments and hands it to Ansible's own
    result processing, as if a worker had returned it. Stats (PLAY RECAP, AWX's job host summary), callbacks and the exit
    status are the same as through a worker; only the worker process per host (about 20 ms of CPU on a 2-core controller)
    is saved.
  - On an ansible-core without the result interface this relies on (before 2.19), every task goes to a worker, as with
    P(ansible.builtin.linear#strategy).
  - ansible-core deprecates strategy plugins from collections (it warns when one is loaded, with no removal date set).
    The outcome play of C(cms.patching.site) (C(playbooks/hold_back.yml)) uses this one unless
    C(-e cms_patching_outcome_strategy=ansible.builtin.linear) is given.
author: CMS Platform Engineering (@cms-platform)
"""

from ansible.errors import AnsibleError
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule
from ansible.template import Templar

from ansible_collections.cms.patching.plugins.plugin_utils._host_outcome import outcome_result

try:  # ansible-core 2.19+: the form in which a worker's result reaches the strategy
    from ansible.executor.task_result import _WireTaskResult
except ImportError:  # older: no fast path, every task forks
    _WireTaskResult = None

# By its resolved name: a short "host_outcome" resolves to it only when the play's collections say so.
ACTION = "cms.patching.host_outcome"
# Keywords whose meaning the worker implements; a task that uses any of them is left to the worker.
WORKER_KEYWORDS = ("loop", "loop_with", "when", "failed_when", "changed_when", "register", "notify", "delegate_to", "until")


class StrategyModule(LinearStrategyModule):
    """Ansible's linear strategy; host_outcome tasks get their per-host results from the controller, not a worker each."""

    def _in_controller(self, task):
        if _WireTaskResult is None or not hasattr(self, "_convert_wire_task_result_to_raw"):
            return False
        if ACTION not in (task.action, getattr(task, "resolved_action", None)):
            return False
        return not any(getattr(task, keyword, None) for keyword in WORKER_KEYWORDS)

    def _queue_task(self, host, task, task_vars, play_context):
        """Called by the linear loop once per host with the host's variables; a worker is started only when needed."""
        if not self._in_controller(task):
            super()._queue_task(host, task, task_vars, play_context)
            return
        try:
            result = outcome_result(Templar(loader=self._loader, variables=task_vars).template(task.args))
        except AnsibleError as exc:  # what the worker would report: the host fails with the templating error
            result = {"failed": True, "changed": False, "msg": "host_outcome: %s" % exc}
        result["_ansible_no_log"] = bool(task.no_log)
        # The same steps as a worker's result takes (results_thread_main): the task cache entry, then the raw result.
        self._queued_task_cache[(host.name, task._uuid)] = {"host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        self._tqm.send_callback("v2_runner_on_start", host, task)
        wire = _WireTaskResult(host_name=host.name, task_uuid=task._uuid, return_data=result, task_fields=task.dump_attrs())
        raw = self._convert_wire_task_result_to_raw(wire)
        with self._results_lock:
            self._results.append(raw)
        self._pending_results += 1
