# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: linear_outcome
short_description: Linear, with host_outcome results and add_hosts hosts made in the controller (no worker per host)
version_added: 0.1.0
description:
  - The same as P(ansible.builtin.linear#strategy) for every task but C(cms.patching.host_outcome) tasks without a C(loop),
    C(when), C(failed_when), C(changed_when), C(register), C(notify), C(until) or C(delegate_to), and
    C(cms.patching.add_hosts) tasks without any of them but C(register).
  - For C(cms.patching.host_outcome), the controller computes each host's result from the task's templated arguments and
    hands it to Ansible's own result processing, as if a worker had returned it. Stats (PLAY RECAP, AWX's job host
    summary), callbacks and the exit status are the same as through a worker; only the worker process per host (about
    20 ms of CPU on a 2-core controller) is saved.
  - For C(cms.patching.add_hosts), the controller adds every host of the task's templated C(hosts) to the inventory as an
    M(ansible.builtin.add_host) result would be added (C(InventoryManager.add_dynamic_host)), reconciling the inventory
    once after the last host rather than after each, and hands the task's one result (C(added), C(pending=[])) to the
    result processing. An M(ansible.builtin.add_host) loop costs a worker's templating per host and a pass over the whole
    inventory per host.
  - The end of every role (an implicit C(role_complete) meta task for every host) and an implicit C(flush_handlers) without
    C(when) are run without computing each host's variables, which they do not read (the linear loop computes them for
    every host and task; about 0.3 ms per host and role end at 1,000 hosts).
  - The arguments of those two tasks are templated without C(ansible_current_hosts) and C(ansible_failed_hosts), which the
    linear loop computes for every host with a pass over the play's hosts (so for every task, a cost growing with the
    square of the host count).
  - For those two tasks, ansible-core's magic variables (V(ansible_play_hosts_all), V(ansible_play_hosts), V(ansible_play_batch)
    and the others it builds from the play and the task, never from the host) are built once for all the task's hosts and
    built again when the play's hosts or failed hosts change, rather than once per host with three passes over the play's hosts.
  - The play's list of removed (failed) hosts answers membership in constant time. ansible-core tests every play host
    against it for every host and task, so a run where many hosts fail (the outcome play fails every held-back host) no
    longer grows with hosts x failed hosts per host.
  - Every other task's worker is forked with the controller's objects frozen out of Python's garbage collector
    (C(gc.freeze()), undone in the controller right after the fork), so the worker's collections do not copy the
    controller's memory.
  - On an ansible-core without the result interface this relies on (before 2.19), every task goes to a worker, as with
    P(ansible.builtin.linear#strategy).
  - ansible-core deprecates strategy plugins from collections (it warns when one is loaded, with no removal date set).
    The outcome play of C(cms.patching.site) (C(playbooks/hold_back.yml)) uses this one unless
    C(-e cms_patching_outcome_strategy=ansible.builtin.linear) is given.
author: CMS Platform Engineering (@cms-platform)
"""

import collections
import gc

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule
from ansible.template import Templar

from ansible_collections.cms.patching.plugins.plugin_utils._add_hosts import add_host_entries
from ansible_collections.cms.patching.plugins.plugin_utils._host_outcome import outcome_result

try:  # ansible-core 2.19+: the form in which a worker's result reaches the strategy
    from ansible.executor.task_result import _WireTaskResult
except ImportError:  # older: no fast path, every task forks
    _WireTaskResult = None

# By its resolved name: a short "host_outcome" resolves to it only when the play's collections say so.
ACTION = "cms.patching.host_outcome"
ADD_HOSTS = "cms.patching.add_hosts"
# Keywords whose meaning the worker implements; a task that uses any of them is left to the worker.
WORKER_KEYWORDS = ("loop", "loop_with", "when", "failed_when", "changed_when", "register", "notify", "delegate_to", "until")
# register is applied by the controller's result processing, which an add_hosts result goes through like a worker's.
ADD_HOSTS_WORKER_KEYWORDS = tuple(k for k in WORKER_KEYWORDS if k != "register")


# Implicit meta tasks the linear loop asks every host's variables for, only to hand them to code that reads none of them:
# role_complete (the end of every role, for every host of the play) and flush_handlers without a when.
NO_VARS_META = ("role_complete", "flush_handlers")


class _NoVars(dict):
    """The variables handed to the linear loop for a NO_VARS_META task: none (add_tqm_variables leaves them empty too)."""


def _needs_no_vars(task):
    if task is None or not getattr(task, "implicit", False) or getattr(task, "action", None) not in C._ACTION_META:
        return False
    meta = task._get_meta()  # pylint: disable=protected-access
    return meta == "role_complete" or (meta == "flush_handlers" and not task.when)


def _controller_action(task):
    """ACTION or ADD_HOSTS when the controller may run this task itself (no keyword that only a worker implements)."""
    if _WireTaskResult is None or task is None:
        return None
    action = getattr(task, "action", None)
    if not isinstance(action, str) or action.rpartition(".")[2] not in ("host_outcome", "add_hosts"):
        return None  # cheap, for the linear loop asks for every host and task; resolved_action resolves a short name
    names = (action, getattr(task, "resolved_action", None))
    if ACTION in names and not any(getattr(task, keyword, None) for keyword in WORKER_KEYWORDS):
        return ACTION
    if ADD_HOSTS in names and not any(getattr(task, keyword, None) for keyword in ADD_HOSTS_WORKER_KEYWORDS):
        return ADD_HOSTS
    return None


class _VariablesForMeta:
    """The strategy's variable manager, but get_vars for a NO_VARS_META task returns no variables.

    The linear loop computes each host's variables (a full variable computation, about 0.5 ms per host at 1,000 hosts)
    for every task, implicit meta tasks included, before it looks at the task; for role_complete (when: true, never
    evaluated) and flush_handlers without when, _execute_meta reads none of them. A play of 1,000 hosts through three
    roles, one run_once task each, took 2.3 s of controller CPU with them and 1.3 s without. Everything else goes to
    the manager itself."""

    def __init__(self, manager):
        object.__setattr__(self, "_manager", manager)
        # The variables last handed out for a task the controller runs itself (a plain dict: Jinja takes no subclass).
        object.__setattr__(self, "controller_vars", None)
        # (key, magic variables) of the last host of a task the controller runs itself: see _magic_once.
        object.__setattr__(self, "_magic", (None, None))

    def get_vars(self, *args, **kwargs):
        task = kwargs.get("task")
        if _needs_no_vars(task):
            return _NoVars()
        if _controller_action(task):
            # add_tqm_variables would add ansible_current_hosts and ansible_failed_hosts, two passes over the play's hosts
            # for each host (O(n^2) for the task: at 5,000 hosts a fifth of the outcome play's CPU); these arguments
            # never read them.
            variables = self._magic_once(task, kwargs) if not args else self._manager.get_vars(*args, **kwargs)
            object.__setattr__(self, "controller_vars", variables)
            return variables
        return self._manager.get_vars(*args, **kwargs)

    def _magic_once(self, task, kwargs):
        """get_vars, with the magic variables computed once for all the hosts of the task rather than once per host.

        ansible-core's magic variables are the same for every host of a task (VariableManager._get_magic_variables reads
        the play, the task and the play's host lists, never the host), yet it builds them per host, with three passes
        over the play's hosts (ansible_play_hosts_all, ansible_play_hosts, ansible_play_batch): O(hosts^2) for the task,
        about 2.5 ms per host at 20,000 hosts. Here the first host's are kept and each later host gets a copy of the
        dictionary sharing the same lists, until anything they are made from changes: another task, the play's host
        lists (an add_hosts task appends to them) or its failed hosts (the count of _HostNames' changes).
        """
        manager = self._manager
        play = kwargs.get("play")
        removed = getattr(play, "_removed_hosts", None)
        if not isinstance(removed, _HostNames) or "_get_magic_variables" in vars(manager):
            return manager.get_vars(**kwargs)
        hosts, hosts_all = kwargs.get("_hosts"), kwargs.get("_hosts_all")
        key = (task._uuid, id(play), id(hosts), len(hosts or ()), id(hosts_all), len(hosts_all or ()), removed.changes)
        compute = manager._get_magic_variables  # pylint: disable=protected-access

        def magic(**magic_kwargs):  # get_vars passes them by name
            this = key + (magic_kwargs.get("include_hostvars"),)
            known_key, known = self._magic
            if known_key != this:
                known = compute(**magic_kwargs)
                object.__setattr__(self, "_magic", (this, known))
            return dict(known)

        manager._get_magic_variables = magic  # pylint: disable=protected-access  # on this instance, for this call only
        try:
            return manager.get_vars(**kwargs)
        finally:
            del manager._get_magic_variables  # pylint: disable=protected-access

    def __getattr__(self, name):
        if name == "_manager":  # during unpickling, before __init__: no recursion
            raise AttributeError(name)
        return getattr(self._manager, name)

    def __setattr__(self, name, value):
        setattr(self._manager, name, value)


class _TaskTemplating:
    """One Templar for a task's hosts, compiling each of its templates once and rendering it with each host's variables.

    ansible-core compiles a template string into Jinja code every time it renders it (no cache, 2.19): through a worker
    that is once per host anyway; here, with one Templar per task, the compiled template is reused for the next host.
    About 1.5 ms of the 3.5 ms per host of an outcome task at 1,000 hosts. A compiled template holds no variables (they
    are passed to it on each render), so reusing it renders the same result; without the engine's private compile step
    to wrap (another ansible-core), every host gets a fresh Templar, as before.
    """

    def __init__(self, loader):
        self.loader = loader
        self.templar = Templar(loader=loader)
        self.fields = None  # the task's dump_attrs(): the same for every host of the task
        engine = getattr(self.templar, "_engine", None)
        compile_template = getattr(engine, "_compile_template", None)
        self.shared = compile_template is not None
        if self.shared:
            compiled = {}

            def compile_once(template, options):
                key = (str(template), options)
                try:
                    found = compiled.get(key)
                except TypeError:  # options that cannot be a key (another ansible-core): compiled as before
                    return compile_template(template, options)
                if found is None:
                    found = compiled[key] = compile_template(template, options)
                return found

            engine._compile_template = compile_once  # pylint: disable=protected-access

    def template(self, data, task_vars):
        if not self.shared:
            return Templar(loader=self.loader, variables=task_vars).template(data)
        self.templar.available_variables = task_vars
        return self.templar.template(data)


class _HostNames(list):
    """A play's list of removed hosts (``Play._removed_hosts``), with membership in constant time.

    ansible-core appends every host that fails to it and, for every host and task, computes ansible_play_hosts and
    ansible_play_batch as ``[h for h in <the play's hosts> if h not in play._removed_hosts]``: with a plain list that is
    O(hosts x failed hosts) per host. 5,000 hosts of which 1,000 fail in the outcome play: over 240 s of controller CPU
    for that one task instead of 11. The list itself (order, duplicates) is unchanged; only ``in`` uses a count.
    """

    def __init__(self, items=()):
        super().__init__(items)
        self._count = collections.Counter(self)
        self.changes = 0  # how many times the list changed (what is derived from it is out of date when this moves)

    def __contains__(self, item):
        return self._count.get(item, 0) > 0

    def _recount(self):
        self._count = collections.Counter(self)
        self.changes += 1

    def append(self, item):
        super().append(item)
        self._count[item] += 1
        self.changes += 1

    def remove(self, item):
        super().remove(item)
        self._count[item] -= 1
        self.changes += 1

    def extend(self, items):
        super().extend(items)
        self._recount()

    def insert(self, index, item):
        super().insert(index, item)
        self._count[item] += 1
        self.changes += 1

    def pop(self, *args):
        item = super().pop(*args)
        self._count[item] -= 1
        self.changes += 1
        return item

    def clear(self):
        super().clear()
        self._count.clear()
        self.changes += 1

    def __setitem__(self, index, value):
        super().__setitem__(index, value)
        self._recount()

    def __delitem__(self, index):
        super().__delitem__(index)
        self._recount()

    def __iadd__(self, items):
        result = super().__iadd__(items)
        self._recount()
        return result


class StrategyModule(LinearStrategyModule):
    """Ansible's linear strategy; host_outcome tasks get their per-host results from the controller, not a worker each."""

    def __init__(self, tqm):
        super().__init__(tqm)
        # Workers get the wrapper too (forked: ansible-core 2.19 starts them with multiprocessing's fork context), which
        # hands them the manager's own variables: they never run an implicit meta task.
        self._variable_manager = _VariablesForMeta(self._variable_manager)
        self._templating = (None, None)  # (task uuid, _TaskTemplating) of the task the controller runs now

    def run(self, iterator, play_context):
        play = getattr(iterator, "_play", None)
        if type(getattr(play, "_removed_hosts", None)) is list:  # pylint: disable=unidiomatic-typecheck  # not a subclass already
            play._removed_hosts = _HostNames(play._removed_hosts)  # pylint: disable=protected-access
        return super().run(iterator, play_context)

    def add_tqm_variables(self, vars, play):  # pylint: disable=redefined-builtin  # the base class's name
        # Its hosts lists cost a pass over the play's hosts, per host: not for the variables nothing reads them from.
        if isinstance(vars, _NoVars) or vars is getattr(self._variable_manager, "controller_vars", None):
            return
        super().add_tqm_variables(vars, play)

    def _in_controller(self, task):
        """The action the controller runs itself for this task (ACTION or ADD_HOSTS), or None: a worker runs it."""
        if not hasattr(self, "_convert_wire_task_result_to_raw"):
            return None
        action = _controller_action(task)
        # add_hosts also needs the inventory interface it registers the hosts through.
        interface = all(hasattr(self, name) for name in ("_inventory", "_hosts_cache_all")) and hasattr(self._inventory, "add_dynamic_host")
        if action == ADD_HOSTS and not interface:
            return None
        return action

    def _add_hosts(self, args):
        """Add every host of an add_hosts task to the inventory, as one ansible.builtin.add_host result per host would.

        Each host goes through InventoryManager.add_dynamic_host, the call the strategy makes for an add_host result (so
        the hosts are kept across meta: refresh_inventory, and a host added again only gets its variables and groups
        updated), then joins the play's host list when new, as _process_pending_results does. One difference, for
        scale: add_dynamic_host reconciles the whole inventory after each host (a pass over every host and group, so
        N hosts cost N^2); here the reconciliation runs once, after the last host, which leaves the same inventory
        (nothing between two hosts reads what it rebuilds)."""
        entries, error = add_host_entries(args)
        if error:
            return {"failed": True, "changed": False, "msg": error}
        inventory = self._inventory
        inventory.reconcile_inventory = lambda: None  # shadows the method on this instance, until the finally below
        try:
            in_play = set(self._hosts_cache_all)
            for entry in entries:
                item = {}
                inventory.add_dynamic_host(entry, item)
                if item.get("changed") and entry["host_name"] not in in_play:
                    self._hosts_cache_all.append(entry["host_name"])
                    in_play.add(entry["host_name"])
        finally:
            del inventory.reconcile_inventory
            inventory.reconcile_inventory()
        return {"changed": False, "added": len(entries), "pending": [], "msg": "%d host(s) added by the controller" % len(entries)}

    def _fork_worker(self, host, task, task_vars, play_context):
        """ansible-core's _queue_task (it forks the worker), with the controller's objects out of the worker's collector.

        A forked worker shares the controller's memory until it writes to a page, and Python's cyclic garbage collector
        writes to every object it scans: the first full collection in a worker that templates a large argument copies
        the controller's whole heap (at 20,000 instances the worker running the patch module held 565 MiB of its own,
        about as much as the controller). gc.freeze() moves every object that exists now to a generation the collector
        never scans, for the fork to inherit; the controller unfreezes right after it, so its own collection is as before.
        """
        gc.freeze()
        try:
            super()._queue_task(host, task, task_vars, play_context)
        finally:
            gc.unfreeze()

    def _queue_task(self, host, task, task_vars, play_context):
        """Called by the linear loop once per host with the host's variables; a worker is started only when needed."""
        action = self._in_controller(task)
        if action is None:
            self._fork_worker(host, task, task_vars, play_context)
            return
        short = action.rpartition(".")[2]
        if self._templating[0] != task._uuid:
            self._templating = (task._uuid, _TaskTemplating(self._loader))
        templating = self._templating[1]
        try:
            args = templating.template(task.args, task_vars)
            result = outcome_result(args) if action == ACTION else self._add_hosts(args)
        except AnsibleError as exc:  # what the worker would report: the host fails with the templating error
            result = {"failed": True, "changed": False, "msg": "%s: %s" % (short, exc)}
        result["_ansible_no_log"] = bool(task.no_log)
        # The same steps as a worker's result takes (results_thread_main): the task cache entry, then the raw result.
        self._queued_task_cache[(host.name, task._uuid)] = {"host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        self._tqm.send_callback("v2_runner_on_start", host, task)
        if templating.fields is None:
            templating.fields = task.dump_attrs()
        # Its own copy per host (the result processing may change it), made from the task's one dump (about 0.2 ms a host).
        wire = _WireTaskResult(host_name=host.name, task_uuid=task._uuid, return_data=result, task_fields=dict(templating.fields))
        raw = self._convert_wire_task_result_to_raw(wire)
        with self._results_lock:
            self._results.append(raw)
        self._pending_results += 1
