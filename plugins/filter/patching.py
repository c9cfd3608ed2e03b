# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters the roles use: patch wave planning and the run summary (the same numbers as the CSV report)."""

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.cms.patching.plugins.module_utils._report import RunReport
from ansible_collections.cms.patching.plugins.module_utils._waves import check_waves, plan_lines, plan_waves


def patch_waves(instances, waves, targets_only=False):
    """Split instances into the landing zone's waves; see the module_utils docstring for the rules.

    ``targets_only``: each wave's instances reduced to COMMAND_TARGET_KEYS, all that the patch and rollback modules read
    of them. The plan is kept on the controller for the whole patch phase; whole records (tags, volumes, SSM details)
    held about three times the memory, and the worker that templates a wave's arguments touched all of it.
    """
    if not isinstance(instances, list) or not all(isinstance(i, dict) and "instance_id" in i for i in instances):
        raise AnsibleFilterError("patch_waves expects a list of instances (dicts with instance_id)")
    plan = plan_waves(instances, waves)
    if targets_only:
        plan = [dict(wave, instances=_reduced(wave["instances"], COMMAND_TARGET_KEYS, "patch_waves")) for wave in plan]
    return plan


def wave_plan(scan, waves):
    """The planning step after discovery: {plan, lines, problems, warnings} for the discovered targets and the waves.

    ``problems`` (a wave naming an instance that is not a target, one instance in two waves) must stop the run before
    anything is backed up; ``lines`` is the plan, one line per wave, for the log and --check.
    """
    if not isinstance(scan, dict) or not isinstance(scan.get("instances"), list):
        raise AnsibleFilterError("wave_plan expects the discovery result (a dict with instances); run discovery first")
    instances = scan["instances"]
    problems, warnings = check_waves(instances, waves)
    plan = plan_waves([i for i in instances if i.get("target")], waves)
    return {"plan": plan, "lines": plan_lines(plan) or ["no target: nothing to patch"], "problems": problems, "warnings": warnings}


def report_summary(results, lz="", run_id=""):
    """The run summary from the phases' module results: {'scan': result, 'backup': result, 'patch': [wave results]}."""
    report = RunReport()
    report.set_run(lz, run_id)
    scan = results.get("scan") or {}
    report.add_discovery(
        scan.get("instances") or [],
        errors=scan.get("errors") or [],
        skipped_accounts=scan.get("skipped_accounts") or [],
        empty_accounts=scan.get("empty_accounts") or [],
    )
    report.add_backup((results.get("backup") or {}).get("instances") or [])
    for wave in results.get("patch") or []:
        report.add_patch((wave or {}).get("instances") or [])
    rollbacks = results.get("rollback") or []
    for rollback in rollbacks if isinstance(rollbacks, list) else [rollbacks]:
        report.add_rollback((rollback or {}).get("instances") or [])
    return report.summary()


def held_back(results, phase, check_mode=False, hosts=None):
    """[{instance_id, host, reason}] for every instance a phase did not clear: backups not verified, patches not successful or failing post-checks.

    ``hosts`` maps instance IDs to inventory host names (default: the ID). In check mode nothing is created or sent, so
    "would do" (skipped) passes: the dry run then shows what the next phase would do.
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
    for entry in held:
        entry["host"] = (hosts or {}).get(entry["instance_id"], entry["instance_id"])
    return held


def not_started(plan, results, hosts=None):
    """[{instance_id, host}] of the planned waves' instances that no wave result mentions (the run stopped before their wave)."""
    done = {i["instance_id"] for r in results or [] for i in (r or {}).get("instances") or []}
    return [
        {"instance_id": i["instance_id"], "host": (hosts or {}).get(i["instance_id"], i["instance_id"])}
        for wave in plan or []
        for i in wave["instances"]
        if i["instance_id"] not in done
    ]


# What a Run Command module reads of an instance (ssm_patch_run, its pre- and post-checks): where it is and what it runs.
COMMAND_TARGET_KEYS = ("instance_id", "account_id", "region", "name", "platform")


# What ami_backup_verified reads of an instance: the same, and the volumes it checks the AMI against.
BACKUP_TARGET_KEYS = COMMAND_TARGET_KEYS + ("volumes",)


def _reduced(instances, keys, name):
    if not isinstance(instances, list) or not all(isinstance(i, dict) and "instance_id" in i for i in instances):
        raise AnsibleFilterError("%s expects a list of instances (dicts with instance_id), as discovery returns them" % name)
    return [{key: item[key] for key in keys if key in item} for item in instances]


def command_targets(instances):
    """The discovery records reduced to COMMAND_TARGET_KEYS: the batch ssm_patch_run is given.

    A whole record (tags, volumes, SSM details) is about five times larger: a wave of 18,000 whole records made the
    module's arguments 34 MB, copied by the worker that templates them and parsed again by every progress call.
    """
    return _reduced(instances, COMMAND_TARGET_KEYS, "command_targets")


def backup_targets(instances):
    """The discovery records reduced to BACKUP_TARGET_KEYS: the batch ami_backup_verified is given (see command_targets)."""
    return _reduced(instances, BACKUP_TARGET_KEYS, "backup_targets")


def failed_hosts(entries, reason=None):
    """The cms.patching.add_hosts / add_host arguments that hold back each entry of held_back or not_started.

    Each host joins ``cms_patching_failed`` with ``cms_patching_failure`` "<instance ID>: <entry's reason>", or, when
    ``reason`` is given (not_started entries have none), "<instance ID> <reason>". One pass here, so that the gates
    template nothing per host.
    """
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "instance_id" in e for e in entries):
        raise AnsibleFilterError("failed_hosts expects the list held_back or not_started returns (dicts with instance_id)")
    hosts = []
    for entry in entries:
        if reason is None and "reason" not in entry:
            raise AnsibleFilterError("failed_hosts: %s has no reason; pass one (failed_hosts('was not patched: ...'))" % entry["instance_id"])
        failure = "%s: %s" % (entry["instance_id"], entry["reason"]) if reason is None else "%s %s" % (entry["instance_id"], reason)
        hosts.append({"name": entry.get("host") or entry["instance_id"], "groups": ["cms_patching_failed"], "cms_patching_failure": failure})
    return hosts


INSTANCE_HOST = re.compile(r"^i-([0-9a-f]{8}|[0-9a-f]{17})$")


def inventory_candidates(hosts, hostvars):
    """Instance ID -> host name for the inventory hosts that are EC2 instances (e.g. from the aws_ec2 inventory).

    A host named by its instance ID (the inventories here use ``hostnames: [instance-id]``) needs no variable lookup;
    any other host is asked for its ``instance_id`` variable, which costs a full variable computation per host.
    """
    candidates = {}
    for name in hosts:
        if INSTANCE_HOST.match(name):
            candidates[name] = name
        elif name not in ("localhost", "127.0.0.1"):
            instance_id = hostvars[name].get("instance_id")
            if instance_id:
                candidates[str(instance_id)] = name
    return candidates


def _group_name(prefix, value):
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", str(value))


def inventory_hosts(instances, names=None, skipped=False):
    """The add_host arguments for each target: its host name (the inventory's name for it, else its ID) and groups.

    With ``skipped=True``, the same for the instances that are NOT targets, in the group ``cms_patching_skipped``
    instead of ``cms_patching_targets``: the playbook adds them too so the host summary shows every instance seen.
    Computed in one pass here rather than templated per loop item: add_host runs once per target, and at fleet
    size each item's templating is what the loop costs.
    """
    names = names or {}
    hosts = []
    for item in instances:
        if bool(item.get("target")) == bool(skipped):
            continue
        groups = [
            "cms_patching_skipped" if skipped else "cms_patching_targets",
            _group_name("cms_patching_account_", item["account_id"]),
            _group_name("cms_patching_region_", item["region"]),
        ]
        if item.get("patch_group"):
            groups.append(_group_name("cms_patching_patch_group_", item["patch_group"]))
        hosts.append(
            {
                "name": names.get(item["instance_id"], item["instance_id"]),
                "groups": groups,
                "instance_id": item["instance_id"],
                "account_id": item["account_id"],
                "region": item["region"],
            }
        )
    return hosts


def instances_of(scan, hosts, host_map):
    """The discovery records of the play's hosts, in host order (the batch a phase passes to its module).

    ``host_map`` is the instance ID -> host name map discovery keeps (``cms_patching_hosts``); going through it avoids
    reading every host's hostvars, which costs a full variable computation per host.
    """
    by_host = {name: instance_id for instance_id, name in (host_map or {}).items()}
    records = {r["instance_id"]: r for r in (scan or {}).get("instances") or []}
    missing = [h for h in hosts if by_host.get(h) not in records]
    if missing:
        raise AnsibleFilterError("instances_of: no discovery record for host(s) %s; run discovery first" % ", ".join(missing))
    return [records[by_host[h]] for h in hosts]


class FilterModule:
    def filters(self):
        return {
            "patch_waves": patch_waves,
            "wave_plan": wave_plan,
            "report_summary": report_summary,
            "held_back": held_back,
            "inventory_hosts": inventory_hosts,
            "instances_of": instances_of,
            "not_started": not_started,
            "failed_hosts": failed_hosts,
            "inventory_candidates": inventory_candidates,
            "command_targets": command_targets,
            "backup_targets": backup_targets,
        }
