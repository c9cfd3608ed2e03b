#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin of the same name (plugins/action/host_outcome.py), or, under
# the cms.patching.linear_outcome strategy, by the controller without a worker.

DOCUMENTATION = r"""
---
module: host_outcome
short_description: Give a host its status in the run's stats - failed with a reason, changed, or skipped
version_added: 0.1.0
description:
  - Ends with the host failed (with O(msg) as the reason) when O(failed) is true, else changed when O(changed) is true, else
    skipped. No module is sent anywhere and no connection is opened.
  - Ansible counts a host in its stats (PLAY RECAP, AWX's job host summary, the exit status) only from a task result of that
    host; this task gives every host of the play one.
  - Under the C(cms.patching.linear_outcome) strategy the controller computes each host's result itself, without starting a
    worker process per host (about 20 ms of CPU per host saved). The task must then have no C(loop), C(when), C(failed_when),
    C(changed_when), C(register), C(notify), C(until) or C(delegate_to); with any of them, or under another strategy, it runs
    in a worker like any other task, with the same result.
  - The outcome play of C(cms.patching.site) (C(playbooks/hold_back.yml)) uses it for every instance of the run.
author:
  - CMS Platform Engineering (@cms-platform)
options:
  failed:
    description: Fail the host, with O(msg) as the reason.
    type: bool
    default: false
  changed:
    description: When not O(failed), report the host as changed (else skipped).
    type: bool
    default: false
  msg:
    description: The reason (failed), or what happened (changed, skipped); shown in the task's output.
    type: str
extends_documentation_fragment:
  - cms.patching.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
"""

EXAMPLES = r"""
# In a play with "strategy: cms.patching.linear_outcome" the controller gives every host its result without a worker.
- name: Outcome - failed with the reason, patched, or skipped
  cms.patching.host_outcome:
    failed: "{{ 'cms_patching_failed' in group_names }}"
    changed: "{{ 'cms_patching_targets' in group_names }}"
    msg: "{{ cms_patching_failure | default('patched') if 'cms_patching_failed' in group_names else 'patched' }}"
"""

RETURN = r"""
msg:
  description: O(msg), or C(failed) / C(changed) / C(nothing to do for this host) when it is empty.
  returned: always
  type: str
  sample: "i-0123456789abcdef0: backup not verified: AMI ami-0abc failed"
skip_reason:
  description: Why the host was skipped (O(msg), or C(nothing to do for this host)).
  returned: when the host is skipped
  type: str
  sample: not a target
"""
