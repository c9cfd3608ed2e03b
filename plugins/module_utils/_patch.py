# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Phase 3, patching: AWS-RunPatchBaseline for a batch (one wave), only behind a verified backup.

The backup gate is enforced here, not only in the role: unless told otherwise,
an instance is patched only when an ``available`` AMI of it from *this run*
carries the ``cms:patching:verified-at`` tag that ami_backup_verified sets after
checking the image and every snapshot.  One DescribeImages per account/region
finds them for the whole batch.

The module is stateless across calls: everything it needs to resume (after a
progress return, a Ctrl-C, an AWX cancel) is read back from AWS - the commands
of this run and wave by their comment, the verified AMIs by their tags.
"""

import re
import uuid

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._batching import chunks
from ansible_collections.cms.patching.plugins.module_utils._checks import HealthChecks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import paginate
from ansible_collections.cms.patching.plugins.module_utils._runcommand import CommandBatch, invocation_output
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error

DOCUMENT = "AWS-RunPatchBaseline"
FAILURE_STATUSES = ("failed", "timed_out", "cancelled", "undeliverable")
# Namespace for SnapshotIds derived from run IDs: the same run always gets the same patch snapshot.
SNAPSHOT_NAMESPACE = uuid.UUID("5d4f8a2e-8f0b-4b8e-9a57-0c3a1f6e2b10")
# What AWS-RunPatchBaseline prints when RebootIfNeeded reboots (exit 194 on Linux, 3010 on Windows).
REBOOT_MARKERS = re.compile(r"(?i)(reboot(ing)? (the )?(instance|node|system)|initiating reboot|exit code (194|3010)|rebooted)")


def snapshot_id_for(run_id):
    """One patch-baseline snapshot per run, so every instance of every wave gets the same approved patch set."""
    return str(uuid.uuid5(SNAPSHOT_NAMESPACE, run_id))


def compliance_of(state):
    if not state:
        return ""
    bad = state.get("MissingCount", 0) + state.get("FailedCount", 0) + state.get("InstalledPendingRebootCount", 0)
    return "NON_COMPLIANT" if bad else "COMPLIANT"


def reboot_of(operation, reboot_option, invocation, state):
    """'yes', 'no', or 'pending' (installed, waiting for a reboot that NoReboot forbids)."""
    if operation == "Scan":
        return "no"
    if state and state.get("InstalledPendingRebootCount", 0) > 0:
        return "pending"
    if reboot_option == "NoReboot":
        return "no"
    text = " ".join((p.get("Output") or "") for p in (invocation or {}).get("CommandPlugins") or [])
    return "yes" if REBOOT_MARKERS.search(text) else "no"


class PatchRun:
    """Send, resume and wait for AWS-RunPatchBaseline on one batch of instances."""

    def __init__(self, fleet, instances, run_id, options, check_mode, clock, sleep):
        self.fleet = fleet
        self.instances = instances
        self.run_id = run_id
        self.options = options
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.locations = sorted({(i["account_id"], i["region"]) for i in instances})
        self.batch = CommandBatch(fleet, DOCUMENT, self.parameters(), run_id, "wave=%s" % options["wave"], options, clock)
        self.skipped = {}  # instance_id -> reason (gate, pre-check, check mode)
        self.gate_notes = {}  # instance_id -> what check mode's plan still depends on
        self.pre_checks = {}
        self.post_checks = {}
        self.states = {}
        self.planned = []
        self.timed_out = {}
        self.rounds = 0
        self.changed = False

    def parameters(self):
        opts = self.options
        params = {
            "Operation": [opts["operation"]],
            "RebootOption": [opts["reboot_option"]],
            "SnapshotId": [opts.get("snapshot_id") or snapshot_id_for(self.run_id)],
        }
        if opts.get("install_override_list") and opts["operation"] == "Install":
            params["InstallOverrideList"] = [opts["install_override_list"]]
        if opts.get("baseline_override"):
            params["BaselineOverride"] = [opts["baseline_override"]]
        return params

    # -- the gate ---------------------------------------------------------------------------------

    def _verified_in(self, location):
        ec2 = self.fleet.client("ec2", *location)
        filters = [
            _tags.tag_filter(_tags.PATCHING, _tags.PRE_PATCH),
            _tags.tag_filter(_tags.RUN_ID, self.run_id),
            {"Name": "tag-key", "Values": [_tags.VERIFIED_AT]},
            {"Name": "state", "Values": ["available"]},
        ]
        return {
            _tags.as_dict(i.get("Tags")).get(_tags.INSTANCE_ID)
            for i in paginate(ec2.describe_images, "Images", Owners=["self"], Filters=filters, MaxResults=1000)
        }

    def gate(self, candidates):
        """Instances with a verified backup in this run; the others are skipped with the reason."""
        if not self.options.get("require_backup", True):
            return candidates
        locations = sorted({(i["account_id"], i["region"]) for i in candidates})
        verified = set()  # (account, region, instance): the backup must be in the instance's own account and region
        for outcome in fan_out(self._verified_in, locations, self.options.get("max_workers", 8)):
            if outcome.ok:
                verified |= {outcome.item + (instance_id,) for instance_id in outcome.result}
            else:
                for item in candidates:
                    if (item["account_id"], item["region"]) == outcome.item:
                        self.skipped[item["instance_id"]] = "could not check for a verified backup: %s" % describe_aws_error(outcome.error)
        allowed = []
        for item in candidates:
            if item["instance_id"] in self.skipped:
                continue
            if (item["account_id"], item["region"], item["instance_id"]) in verified:
                allowed.append(item)
            elif self.check_mode:
                # A dry run creates no backups, so none can be verified yet: show the plan, say what it waits for.
                self.gate_notes[item["instance_id"]] = " once its backup is verified (none in run %s yet)" % self.run_id
                allowed.append(item)
            else:
                self.skipped[item["instance_id"]] = "no verified backup of this instance in run %s (patching requires one)" % self.run_id
        return allowed

    # -- sending and waiting --------------------------------------------------------------------

    def _deadline(self, instance_id):
        """When an instance's patching counts as timed out.

        Per command: delivery_timeout + execution_timeout after it was sent. For the batch: wait_timeout after its
        first command was sent - measured from AWS's own RequestedDateTime, so a run resumed hours later does not
        find its deadline already past, and repeated progress calls share one deadline.
        """
        requested = self.batch.requested_at(instance_id)
        if requested is None:
            return None
        opts = self.options
        first = min(t for t in (self.batch.requested_at(i["instance_id"]) for i in self.instances) if t is not None)
        return min(requested + opts["delivery_timeout"] + opts["execution_timeout"], first + opts["wait_timeout"])

    def _enforce_deadlines(self):
        now = self.clock()
        late = {}
        for item in self.instances:
            instance_id = item["instance_id"]
            deadline = self._deadline(instance_id)
            if deadline is not None and now >= deadline and self.batch.outcome(instance_id)[0] == "pending":
                late.setdefault(self.batch.by_instance[instance_id], []).append(instance_id)
        if not late:
            return
        commands = [self.batch.commands[c] for c in late]
        if not self.check_mode:
            self.batch.cancel(commands)
        for command_id, ids in late.items():
            for instance_id in ids:
                self.timed_out[instance_id] = (
                    "still running at the deadline (delivery_timeout + execution_timeout, or wait_timeout); cancel requested for command %s" % command_id
                )

    def pending(self):
        return [
            i
            for i in self.instances
            if i["instance_id"] not in self.skipped and i["instance_id"] not in self.timed_out and self.batch.outcome(i["instance_id"])[0] == "pending"
        ]

    def poll(self):
        self.rounds += 1
        errors = self.batch.refresh(self.locations, self.options["run_started"])
        for location, error in errors.items():
            for item in self.instances:
                if (item["account_id"], item["region"]) == location and item["instance_id"] in self.batch.by_instance:
                    self.batch.errors.setdefault(item["instance_id"], "could not read command status: %s" % error)
        self.batch.collect_finished()
        self._enforce_deadlines()

    def start(self):
        """Find this wave's earlier commands; gate, pre-check and send for the rest."""
        self.poll()
        fresh = [i for i in self.instances if i["instance_id"] not in self.batch.by_instance]
        if not fresh:
            return
        allowed = self.gate(fresh)
        if allowed and self.options.get("pre_checks"):
            checks = HealthChecks(
                self.fleet, self.options["pre_checks"], self.run_id, "pre-check wave=%s" % self.options["wave"], self.options, self.clock, self.sleep
            )
            if checks.enabled() and not self.check_mode:
                self.pre_checks = checks.run(allowed, settle=False)
                for instance_id, check in self.pre_checks.items():
                    if check["status"] == "failed":
                        self.skipped[instance_id] = "pre-patch check failed: %s" % check["reason"]
                allowed = [i for i in allowed if i["instance_id"] not in self.skipped]
        self.planned = self.batch.plan(allowed)
        if self.check_mode:
            for index, (_location, ids) in enumerate(self.planned):
                for instance_id in ids:
                    self.skipped[instance_id] = "check mode: would send %s in command %d of %d%s" % (
                        DOCUMENT,
                        index + 1,
                        len(self.planned),
                        self.gate_notes.get(instance_id, ""),
                    )
            self.changed = bool(self.planned)
            return
        self.batch.send(self.planned)
        self.changed = bool(self.planned)

    def wait(self, wait, progress_interval):
        started = self.clock()
        while self.pending():
            if not wait or self.check_mode or (progress_interval and self.clock() - started >= progress_interval):
                return
            self.sleep(self.options["poll_interval"])
            self.poll()

    # -- after the wave -------------------------------------------------------------------------

    def _read_states(self, location, ids):
        ssm = self.fleet.client("ssm", *location)
        found = {}
        for chunk in chunks(ids, 50):
            for state in paginate(ssm.describe_instance_patch_states, "InstancePatchStates", InstanceIds=chunk, MaxResults=50):
                found[state["InstanceId"]] = state
        return found

    def finish(self):
        """Compliance and post-checks for the instances that succeeded - only once nothing is pending."""
        if self.pending():
            return
        succeeded = [i for i in self.instances if self.batch.outcome(i["instance_id"])[0] == "success" and i["instance_id"] not in self.timed_out]
        groups = {}
        for item in [i for i in self.instances if i["instance_id"] in self.batch.invocations]:
            groups.setdefault((item["account_id"], item["region"]), []).append(item["instance_id"])
        for outcome in fan_out(lambda loc: self._read_states(loc, groups[loc]), list(groups), self.options.get("max_workers", 8)):
            if outcome.ok:
                self.states.update(outcome.result)
        if succeeded and self.options.get("post_checks"):
            checks = HealthChecks(
                self.fleet, self.options["post_checks"], self.run_id, "post-check wave=%s" % self.options["wave"], self.options, self.clock, self.sleep
            )
            if checks.enabled():
                self.post_checks = checks.run(succeeded)

    def result(self, item):
        instance_id = item["instance_id"]
        status, error, command_id = self.batch.outcome(instance_id)
        if instance_id in self.skipped:
            status, error = "skipped", self.skipped[instance_id]
        elif instance_id in self.timed_out:
            status, error = "timed_out", self.timed_out[instance_id]
        state = self.states.get(instance_id) or {}
        invocation = self.batch.invocations.get(instance_id)
        return {
            "instance_id": instance_id,
            "account_id": item["account_id"],
            "region": item["region"],
            "name": item.get("name", ""),
            "platform": item.get("platform", ""),
            "wave": self.options["wave"],
            "command_id": command_id,
            "patch_status": status,
            "error": error,
            "output": invocation_output(invocation) if invocation else "",
            "installed_count": state.get("InstalledCount"),
            "installed_other_count": state.get("InstalledOtherCount"),
            "installed_pending_reboot_count": state.get("InstalledPendingRebootCount"),
            "missing_count": state.get("MissingCount"),
            "failed_count": state.get("FailedCount"),
            "operation": state.get("Operation", self.options["operation"] if command_id else ""),
            "operation_end_time": str(state.get("OperationEndTime", "")),
            "reboot": reboot_of(self.options["operation"], self.options["reboot_option"], invocation, state) if status == "success" else "",
            "compliance": compliance_of(state) if status == "success" else "",
            "pre_checks": self.pre_checks.get(instance_id, {}),
            "post_checks": self.post_checks.get(instance_id, {}),
        }

    def run(self, wait=True, progress_interval=0):
        self.start()
        self.wait(wait, progress_interval)
        self.finish()
        return [self.result(item) for item in self.instances]


def wave_verdict(results, max_failure_rate):
    """Failure rate of the instances that were patched (skipped ones do not count) and whether it stops the run."""
    sent = [r for r in results if r["patch_status"] != "skipped"]
    failed = [r for r in sent if r["patch_status"] in FAILURE_STATUSES or (r.get("post_checks") or {}).get("status") == "failed"]
    rate = round(100.0 * len(failed) / len(sent), 1) if sent else 0.0
    return {"sent": len(sent), "failed": len(failed), "failure_rate": rate, "stop": rate > max_failure_rate}
