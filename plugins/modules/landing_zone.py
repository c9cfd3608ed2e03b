#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: landing_zone
short_description: Load and validate a landing zone's configuration, and name the run
version_added: 0.1.0
description:
  - Finds C(<search path>/<name>/group_vars/all/landing_zone.yml), validates it against the collection's schema and returns it with
    every default filled in.
  - Runs before any AWS call; it makes none itself. An unknown landing zone fails naming the known ones; a malformed file fails naming
    the file, every bad key and what was expected.
  - A landing-zone name is a plain directory name (letters, digits, C(-) and C(_)); any other name (C(..), a path separator, a leading
    dot) is refused before any file is read.
  - Waves that can never get an instance (percentages or a catch-all wave before them take everything) are reported as warnings, not
    errors; an instance listed twice in the waves is an error naming both places.
  - Also returns the run ID that tags this run's AMIs and commands; give O(run_id) to resume an earlier run.
author:
  - CMS Platform Engineering (@cms-platform)
options:
  name:
    description:
      - The landing zone, e.g. C(prod) (the C(lz) extra variable of the playbooks).
      - Letters, digits, C(-) and C(_) only.
    type: str
    required: true
  search_paths:
    description: Directories holding one directory per landing zone; the first that has O(name) wins.
    type: list
    elements: path
    required: true
  run_id:
    description:
      - The run ID to use. Omit it to start a new run (a UTC timestamp plus a random suffix).
      - Pass the ID of an interrupted run to resume it; AMIs and commands already made for that run are found and reused.
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
- name: Load the prod landing zone
  cms.patching.landing_zone:
    name: prod
    search_paths:
      - "{{ playbook_dir }}/inventories"
  register: lz

- name: Resume an interrupted run
  cms.patching.landing_zone:
    name: prod
    search_paths: ["{{ playbook_dir }}/inventories"]
    run_id: 20261127T180400Z-3f9a1c
"""

RETURN = r"""
lz:
  description: The landing zone's name.
  returned: success
  type: str
  sample: prod
file:
  description: The configuration file that was loaded.
  returned: success
  type: str
  sample: /srv/patching/inventories/prod/group_vars/all/landing_zone.yml
config:
  description: The validated configuration with every default filled in (see the collection README for the schema).
  returned: success
  type: dict
redacted_config:
  description: RV(config) with secrets-to-be (external IDs) masked, for printing.
  returned: success
  type: dict
run_id:
  description: The run ID; it tags this run's AMIs and SSM commands.
  returned: success
  type: str
  sample: 20261127T180400Z-3f9a1c
config_warnings:
  description: Warnings about the configuration (e.g. a wave that gets no instance), each naming the file and the key; also shown as warnings.
  returned: success
  type: list
  elements: str
known:
  description: Every landing zone found under O(search_paths).
  returned: always
  type: list
  elements: str
  sample: [demo, example, prod]
problems:
  description: Every problem found in the file, one per entry, each naming the file and the key.
  returned: failure
  type: list
  elements: str
"""

import datetime
import secrets

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cms.patching.plugins.module_utils import _lz_config
from ansible_collections.cms.patching.plugins.module_utils._validate import run_id_error


def new_run_id():
    now = datetime.datetime.now(datetime.timezone.utc)
    return "%s-%s" % (now.strftime("%Y%m%dT%H%M%SZ"), secrets.token_hex(3))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            search_paths=dict(type="list", elements="path", required=True),
            run_id=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    if not _lz_config.HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    paths = module.params["search_paths"]
    known = _lz_config.known_landing_zones(paths)
    # The name becomes a path: refuse '..', separators and the like before it is joined to any search path.
    name_error = _lz_config.lz_name_error(module.params["name"]) if module.params["name"] else None
    if name_error:
        module.fail_json(msg="%s (known landing zones: %s)" % (name_error, ", ".join(known) or "none"), problems=[name_error], known=known)
    run_id = module.params["run_id"]
    if run_id is not None and run_id_error(run_id):
        module.fail_json(msg="run_id: %s" % run_id_error(run_id), known=known)
    try:
        path, config = _lz_config.load(module.params["name"], paths)
    except _lz_config.ConfigError as exc:
        count = len(exc.problems)
        msg = exc.problems[0] if count == 1 else "%d problems in the landing zone configuration:\n%s" % (count, "\n".join(exc.problems))
        module.fail_json(msg=msg, problems=exc.problems, known=known)
    config_warnings = _lz_config.wave_warnings(config, path)
    for warning in config_warnings:
        module.warn(warning)
    module.exit_json(
        changed=False,
        lz=module.params["name"],
        file=path,
        config=config,
        redacted_config=_lz_config.redacted(config),
        run_id=run_id or new_run_id(),
        known=known,
        config_warnings=config_warnings,
    )


if __name__ == "__main__":
    main()
