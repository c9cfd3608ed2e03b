# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""cms.patching.add_hosts: many hosts for the in-memory inventory in one task; no module, no connection.

A worker cannot change the controller's inventory, and ansible-core takes at most one ansible.builtin.add_host result per
task result (or per loop item). So in a worker (any strategy but cms.patching.linear_outcome) this action registers
nothing: it checks the hosts and hands them back in ``pending``, for an ``ansible.builtin.add_host`` loop to add
(roles/discovery/tasks/add_hosts.yml). Under cms.patching.linear_outcome the controller adds them all itself and this
plugin is not run (plugins/strategy/linear_outcome.py)."""

from ansible.plugins.action import ActionBase

from ansible_collections.cms.patching.plugins.plugin_utils._add_hosts import add_host_entries


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        entries, error = add_host_entries(self._task.args)
        if error:
            return {"failed": True, "changed": False, "msg": error}
        hosts = self._task.args.get("hosts") or []
        return {"changed": False, "added": 0, "pending": hosts, "msg": "%d host(s) left to an add_host loop" % len(entries)}
