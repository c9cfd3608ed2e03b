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
  - Finds C(<search path>/<name>/.landing_zone.yml), validates it against the collection's schema and returns it with
    every default filled in. The leading dot keeps Ansible's inventory loader away from it, so C(<search path>/<name>/) also works
    as the landing zone's inventory (an AWX inventory source) without the configuration becoming host variables.
  - The old place, C(<search path>/<name>/group_vars/all/landing_zone.yml), is still read, with a deprecation warning.
  - External IDs are masked (C(********)) in RV(config) unless O(reveal_external_ids) is set; a task that sets it must have
    C(no_log) set to true, as the C(cms.patching.config) role does.
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
  reveal_external_ids:
    description:
      - Return the accounts' external IDs in RV(config) instead of masking them.
      - Only for a task with C(no_log) set to true that hands the configuration to the other modules; never print its result.
    type: bool
    default: false
  report_overrides:
    description:
      - The report destination given as extra vars, by their names (C(cms_patching_report_dir), C(cms_patching_report_file_name),
        C(cms_patching_report_s3_bucket), C(cms_patching_report_s3_prefix), C(cms_patching_report_s3_sse),
        C(cms_patching_report_s3_kms_key_id), C(cms_patching_report_s3_account_id), C(cms_patching_report_s3_region)).
      - They win over the environment (C(CMS_PATCHING_REPORT_DIR), C(CMS_PATCHING_REPORT_FILE), C(CMS_PATCHING_REPORT_S3_BUCKET), ...),
        which wins over the landing zone's C(report) section, which wins over O(report_defaults).
      - Every value is checked here, before any AWS call; a bad one fails naming the extra var, environment variable or file and key.
    type: dict
    default: {}
  report_defaults:
    description: The report callback's own C(dir) and C(file_name) (ansible.cfg or built-in defaults), the lowest tier.
    type: dict
    default: {}
  slice_number:
    description:
      - In a sliced job, which slice this job is (1 to O(slice_count)); the C(cms.patching.config) role passes the extra var
        C(cms_patching_slice_number).
      - With O(slice_count) above 1 and no O(job_id), the report's name says the slice (C({slice}) in C(report.file_name) and
        C(report.s3.prefix); a name without C({slice}), the default one included, gains C(-slice<N>) before its extension).
      - AWX / AAP does not give a sliced job's slice number to the playbook (it is a field of the job, not an extra var), see the README;
        there O(job_id) names the report. Nothing else depends on the slice (retention is claimed once per run, whatever the slicing).
    type: int
  job_id:
    description:
      - The AWX / AAP job ID (the extra var C(awx_job_id), which AWX gives every job and every slice of a sliced job template); the
        C(cms.patching.config) role passes it. Omit it outside AWX.
      - When given, the report's name carries it (C({job}) in C(report.file_name) and C(report.s3.prefix); a name without C({job}), the
        default one included, gains C(-job<id>) before its extension), so the jobs of one run (slices, workflow nodes) each keep their
        own report under the run's directory or S3 prefix.
    type: str
  slice_count:
    description: How many slices the job has; 1 (the default) is not sliced and O(slice_number) is then ignored.
    type: int
    default: 1
  report_callback_enabled:
    description:
      - Whether the C(cms.patching.patch_report) callback is enabled; when not, a warning (once per run) names the line to add to
        ansible.cfg, since no CSV would be written.
    type: bool
    default: true
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

- name: The same, with the external IDs, for the other modules (never printed)
  cms.patching.landing_zone:
    name: prod
    search_paths: ["{{ playbook_dir }}/inventories"]
    run_id: "{{ lz.run_id }}"
    reveal_external_ids: true
  no_log: true
  register: lz_with_secrets

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
  sample: /srv/patching/inventories/prod/.landing_zone.yml
config:
  description:
    - The validated configuration with every default filled in (see the collection README for the schema).
    - External IDs are masked unless O(reveal_external_ids) is set.
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
report:
  description: Where the report of this run goes, resolved by precedence (the report callback computes the same).
  returned: success
  type: dict
  contains:
    csv:
      description: The CSV's absolute path on the controller.
      type: str
      sample: /srv/patching/reports/prod-20261127T180400Z-3f9a1c.csv
    json:
      description: The per-instance JSON file, beside the CSV.
      type: str
      sample: /srv/patching/reports/prod-20261127T180400Z-3f9a1c.json
    s3_csv:
      description: The CSV's S3 URI, when an S3 bucket is set.
      type: str
      returned: with an S3 bucket
      sample: s3://patching-reports/prod/20261127T180400Z-3f9a1c/prod-20261127T180400Z-3f9a1c.csv
    s3_json:
      description: The JSON's S3 URI, when an S3 bucket is set.
      type: str
      returned: with an S3 bucket
    slice:
      description: The job slice's number when the job is sliced (O(slice_count) above 1), else null.
      type: int
      sample: 2
    job:
      description: The AWX job ID that names the report (O(job_id)), else null.
      type: str
      sample: "812"
    settings:
      description: The resolved settings (dir, file_name, s3_bucket, s3_prefix, s3_sse, s3_kms_key_id, s3_account_id, s3_region).
      type: dict
    origin:
      description: Where each setting came from (extra var, environment variable, landing-zone file and key, default).
      type: dict
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

import os

from ansible_collections.cms.patching.plugins.module_utils import _lz_config
from ansible_collections.cms.patching.plugins.module_utils import _report_dest
from ansible_collections.cms.patching.plugins.module_utils._validate import run_id_error


def new_run_id():
    now = datetime.datetime.now(datetime.timezone.utc)
    return "%s-%s" % (now.strftime("%Y%m%dT%H%M%SZ"), secrets.token_hex(3))


CALLBACK_WARNING = (
    "the cms.patching.patch_report callback is not enabled, so this run writes no CSV report (it would be %s): add the line "
    "'callbacks_enabled = cms.patching.patch_report' to the [defaults] section of your ansible.cfg "
    "(or set ANSIBLE_CALLBACKS_ENABLED=cms.patching.patch_report)"
)


def job_slice(params):
    """The slice number in a sliced job, None when not sliced; DestinationError when it is not a slice of the count."""
    count, number = params["slice_count"], params["slice_number"]
    if count is None or count == 1:
        return None
    error = _report_dest.slice_error(1 if number is None else number, count)
    if error:
        raise _report_dest.DestinationError(["slice_number/slice_count (cms_patching_slice_number/cms_patching_slice_count): %s" % error])
    return 1 if number is None else number


def report_destination(params, config, path, run_id):
    """The report's destinations by precedence: extra vars > environment > landing zone > the callback's defaults."""
    defaults = {k: v for k, v in (params["report_defaults"] or {}).items() if k in ("dir", "file_name") and v}
    settings, origin = _report_dest.resolve(
        extra=params["report_overrides"], environ=os.environ, lz=_report_dest.flatten_lz(config.get("report")), defaults=defaults, lz_source=path
    )
    number, job_id = job_slice(params), params["job_id"] or None
    return dict(_report_dest.describe(settings, config["name"], run_id, number, job_id), slice=number, job=job_id, settings=settings, origin=origin)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            search_paths=dict(type="list", elements="path", required=True),
            run_id=dict(type="str"),
            reveal_external_ids=dict(type="bool", default=False),
            report_overrides=dict(type="dict", default={}),
            report_defaults=dict(type="dict", default={}),
            report_callback_enabled=dict(type="bool", default=True),
            slice_number=dict(type="int"),
            slice_count=dict(type="int", default=1),
            job_id=dict(type="str"),
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
    run_id = run_id or new_run_id()
    try:
        report = report_destination(module.params, config, path, run_id)
    except _report_dest.DestinationError as exc:
        msg = exc.problems[0] if len(exc.problems) == 1 else "%d problems in the report settings:\n%s" % (len(exc.problems), "\n".join(exc.problems))
        module.fail_json(msg=msg, problems=exc.problems, known=known)
    config_warnings = _lz_config.wave_warnings(config, path)
    if not module.params["report_callback_enabled"]:
        config_warnings.append(CALLBACK_WARNING % report["csv"])
    # The task that reveals the external IDs reads the same file right after the one that warned: say nothing twice.
    note = _lz_config.deprecation(path)
    if not module.params["reveal_external_ids"]:
        for warning in config_warnings:
            module.warn(warning)
        if note:
            module.deprecate(note, version="2.0.0", collection_name="cms.patching")
    module.exit_json(
        changed=False,
        lz=module.params["name"],
        file=path,
        config=config if module.params["reveal_external_ids"] else _lz_config.redacted(config),
        redacted_config=_lz_config.redacted(config),
        run_id=run_id,
        report=report,
        known=known,
        config_warnings=config_warnings,
    )


if __name__ == "__main__":
    main()
