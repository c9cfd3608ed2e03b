# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters the roles use: patch wave planning and the run summary (the same numbers as the CSV report)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.cms.patching.plugins.module_utils._report import RunReport
from ansible_collections.cms.patching.plugins.module_utils._waves import plan_waves


def patch_waves(instances, waves):
    """Split instances into the landing zone's waves; see the module_utils docstring for the rules."""
    if not isinstance(instances, list) or not all(isinstance(i, dict) and "instance_id" in i for i in instances):
        raise AnsibleFilterError("patch_waves expects a list of instances (dicts with instance_id)")
    return plan_waves(instances, waves)


def report_summary(results, lz="", run_id=""):
    """The run summary from the phases' module results: {'scan': result, 'backup': result, 'patch': [wave results]}."""
    report = RunReport()
    report.set_run(lz, run_id)
    report.add_discovery((results.get("scan") or {}).get("instances") or [])
    report.add_backup((results.get("backup") or {}).get("instances") or [])
    for wave in results.get("patch") or []:
        report.add_patch((wave or {}).get("instances") or [])
    return report.summary()


def held_back(results, phase, check_mode=False):
    """[{instance_id, reason}] for every instance a phase did not clear: backups not verified, patches not successful or failing post-checks.

    In check mode nothing is created or sent, so "would do" (skipped) passes: the dry run then shows what the next phase would do.
    """
    items = [i for r in (results if isinstance(results, list) else [results]) for i in (r or {}).get("instances") or []]
    held = []
    for item in items:
        if phase == "backup":
            ok = ("verified", "skipped") if check_mode else ("verified",)
            if item.get("backup_status") not in ok:
                held.append(
                    {
                        "instance_id": item["instance_id"],
                        "reason": "no verified backup, so it is not patched: %s: %s" % (item.get("backup_status"), item.get("reason")),
                    }
                )
        elif phase == "patch":
            ok = ("success", "skipped") if check_mode else ("success",)
            checks = item.get("post_checks") or {}
            if item.get("patch_status") not in ok:
                held.append({"instance_id": item["instance_id"], "reason": "not patched: %s: %s" % (item.get("patch_status"), item.get("error"))})
            elif checks.get("status") == "failed":
                held.append({"instance_id": item["instance_id"], "reason": "patched, but the post-patch checks failed: %s" % checks.get("reason")})
        else:
            raise AnsibleFilterError("held_back: phase must be 'backup' or 'patch', not %r" % (phase,))
    return held


class FilterModule:
    def filters(self):
        return {"patch_waves": patch_waves, "report_summary": report_summary, "held_back": held_back}
