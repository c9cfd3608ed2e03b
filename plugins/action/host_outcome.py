# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""cms.patching.host_outcome: give the host its status (failed with a reason, changed or skipped); no module, no connection.

Under the cms.patching.linear_outcome strategy the controller computes the same result without starting a worker
(plugins/strategy/linear_outcome.py); under any other strategy this action runs in the host's worker like any task."""

from ansible.plugins.action import ActionBase

from ansible_collections.cms.patching.plugins.plugin_utils._host_outcome import outcome_result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        return outcome_result(self._task.args)
