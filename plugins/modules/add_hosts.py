#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin of the same name (plugins/action/add_hosts.py), or, under
# the cms.patching.linear_outcome strategy, by the controller without a worker.

DOCUMENTATION = r"""
---
module: add_hosts
short_description: Add many hosts to the in-memory inventory in one task (under cms.patching.linear_outcome)
version_added: 0.1.0
description:
  - Under the C(cms.patching.linear_outcome) strategy the controller adds every host of O(hosts) to the in-memory inventory
    itself, exactly as one M(ansible.builtin.add_host) per host would (the same names, groups and variables, kept across
    a C(refresh_inventory) meta task), and reports C(added). No worker templates each host, which an M(ansible.builtin.add_host)
    loop does (about 3 to 5 ms of controller CPU per host at 1,000 hosts). The task must then have no C(loop), C(when),
    C(failed_when), C(changed_when), C(notify), C(until) or C(delegate_to).
  - A worker cannot change the controller's inventory, and ansible-core takes one M(ansible.builtin.add_host) result per
    task result or loop item. So under any other strategy, or with any of those keywords, this task adds nothing - it checks
    O(hosts) and returns them in RV(pending), for an M(ansible.builtin.add_host) loop over RV(pending) to add one by one
    (C(roles/discovery/tasks/add_hosts.yml) in this collection does both).
  - The task is never changed; a bad O(hosts) fails it, saying what was wrong.
author:
  - CMS Platform Engineering (@cms-platform)
options:
  hosts:
    description:
      - The hosts, each the arguments M(ansible.builtin.add_host) takes for one host - C(name) (or C(hostname), C(host)),
        C(groups) (or C(groupname), C(group); a list or a comma-separated string), and every other key a host variable.
    type: list
    elements: dict
    required: true
extends_documentation_fragment:
  - cms.patching.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Like M(ansible.builtin.add_host), it runs in check mode too, so that later plays see the hosts.
"""

EXAMPLES = r"""
# Under the cms.patching.linear_outcome strategy the controller adds them all; otherwise the loop below does.
- name: Add the targets
  cms.patching.add_hosts:
    hosts: "{{ scan.instances | cms.patching.inventory_hosts }}"
  run_once: true
  register: added

- name: Add the targets the strategy left to a loop
  ansible.builtin.add_host: "{{ item }}"
  loop: "{{ added.pending }}"
  loop_control:
    label: "{{ item.name }}"
  run_once: true
  changed_when: false
"""

RETURN = r"""
added:
  description: How many hosts the controller added or updated (0 when they were left in RV(pending)).
  returned: success
  type: int
  sample: 900
pending:
  description: The hosts (O(hosts)) left for an M(ansible.builtin.add_host) loop to add; empty when the controller added them.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "i-0123456789abcdef0", "groups": ["cms_patching_targets"], "region": "eu-west-1"}]
msg:
  description: What was done, or what was wrong with O(hosts).
  returned: always
  type: str
  sample: 900 host(s) added by the controller
"""
