# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Health checks around patching, for a batch: SSM agent online, EC2 status checks ok, a command of the user's.

The same checks serve before patching (an instance that is already unhealthy
is not patched, and is not blamed on the patch) and after it (an instance must
come back from its reboot healthy).  Each check is batched: one
DescribeInstanceProperties per location for up to 1,000 managed instances (see
_ssm_nodes), 100 IDs per DescribeInstanceStatus, 50 per SendCommand.
"""

from ansible_collections.cms.patching.plugins.module_utils._batching import by_location, chunks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import paginate
from ansible_collections.cms.patching.plugins.module_utils._runcommand import CommandBatch, send_all
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error
from ansible_collections.cms.patching.plugins.module_utils._ssm_nodes import managed_nodes

SHELL_DOCUMENTS = {"linux": "AWS-RunShellScript", "windows": "AWS-RunPowerShellScript"}


class HealthChecks:
    """Run the configured checks for a batch until all pass or the deadline; failures carry their reason."""

    def __init__(self, fleet, spec, run_id, label, options, clock, sleep):
        # clock: AWS's time (the patch run passes its server clock): a check's timeout is how long an instance may take
        # to come back (a reboot), which AWS's clock measures, not the controller's.
        self.fleet = fleet
        self.spec = spec or {}
        self.run_id = run_id
        self.label = label
        self.options = options
        self.clock = clock
        self.sleep = sleep

    def enabled(self):
        return bool(self.spec.get("ssm_online") or self.spec.get("ec2_status") or self.spec.get("command") or self.spec.get("windows_command"))

    def _ssm_online(self, location, ids):
        nodes = managed_nodes(self.fleet, location[0], location[1], ids)
        online = {instance_id for instance_id, node in nodes.items() if node.get("PingStatus") == "Online"}
        return {i: (i in online, "" if i in online else "SSM agent is not Online") for i in ids}

    def _ec2_status(self, location, ids):
        ec2 = self.fleet.client("ec2", *location)
        found = {}
        for chunk in chunks(ids, 100):
            for status in paginate(ec2.describe_instance_status, "InstanceStatuses", InstanceIds=chunk, IncludeAllInstances=True):
                found[status["InstanceId"]] = status
        result = {}
        for instance_id in ids:
            status = found.get(instance_id, {})
            system = status.get("SystemStatus", {}).get("Status", "unknown")
            instance = status.get("InstanceStatus", {}).get("Status", "unknown")
            ok = system == "ok" and instance == "ok"
            result[instance_id] = (ok, "" if ok else "EC2 status checks: system %s, instance %s" % (system, instance))
        return result

    def _read_checks(self, instances, pending):
        """One round of the read-only checks for the instances still pending; returns {id: (ok, reason)}."""
        groups = {loc: [i["instance_id"] for i in members] for loc, members in by_location(i for i in instances if i["instance_id"] in pending).items()}
        results = {}
        checks = [c for c in (("ssm_online", self._ssm_online), ("ec2_status", self._ec2_status)) if self.spec.get(c[0])]
        jobs = [(name, func, loc, ids) for name, func in checks for loc, ids in groups.items()]
        for outcome in fan_out(lambda job: job[1](job[2], job[3]), jobs, self.options.get("max_workers", 8)):
            name, _func, location, ids = outcome.item
            if not outcome.ok:
                for instance_id in ids:
                    results[instance_id] = (False, "%s check could not run: %s" % (name, describe_aws_error(outcome.error)))
                continue
            for instance_id, (ok, reason) in outcome.result.items():
                if instance_id not in results or results[instance_id][0]:
                    results[instance_id] = (ok, reason)
        return results

    def _commands(self, instances, deadline):
        """The user's health command via SSM, per platform; {id: (ok, reason)}."""
        results = {}
        for platform, document in sorted(SHELL_DOCUMENTS.items()):
            command = self.spec.get("windows_command" if platform == "windows" else "command")
            members = [i for i in instances if (i.get("platform") or "linux") == platform]
            if not command or not members:
                continue
            batch = CommandBatch(
                self.fleet,
                document,
                {"commands": [command]},
                self.run_id,
                self.options.get("lz", ""),
                "%s %s" % (self.label, platform),
                self.options,
                targets=[i["instance_id"] for i in members],
            )
            locations = sorted({(i["account_id"], i["region"]) for i in members})
            # One command per instance per check round (its label): each round lists first, then sends only to instances
            # whose account/region answered and shows none - a lost answer or a failed listing never sends twice.
            while True:
                batch.refresh(locations, self.options["since"])
                batch.collect_finished()
                send_all(batch, [i for i in members if not batch.has_command(i["instance_id"])])
                waiting = [i for i in members if batch.outcome(i["instance_id"])[0] == "pending"]
                if not waiting or self.clock() >= deadline:
                    break
                self.sleep(self.options["poll_interval"])
            for item in members:
                status, error, _cid = batch.outcome(item["instance_id"])
                if status == "pending":
                    error = "health command did not finish in time" if item["instance_id"] in batch.by_instance else "health command could not be sent in time"
                results[item["instance_id"]] = (status == "success", "" if status == "success" else "health command %s: %s" % (status, error))
        return results

    def run(self, instances, settle=True):
        """{instance_id: {'status': 'passed'|'failed', 'reason': str}} for every instance given.

        With ``settle`` the read-only checks are repeated until they pass or the timeout ends (after patching, an agent
        reconnects and status checks recover some time after the reboot); without it one round decides (before
        patching, health is what it is - and a resumed run must not wait again for an instance it already skipped).
        """
        if not self.enabled() or not instances:
            return {i["instance_id"]: {"status": "skipped", "reason": ""} for i in instances}
        deadline = self.clock() + self.spec.get("timeout", 600)
        pending = {i["instance_id"] for i in instances}
        reasons = {}
        # The agent reconnects and status checks settle some time after a reboot: re-check until they pass or time runs out.
        while pending:
            for instance_id, (ok, reason) in self._read_checks(instances, pending).items():
                if ok:
                    pending.discard(instance_id)
                    reasons.pop(instance_id, None)
                else:
                    reasons[instance_id] = reason
            if not pending or not settle or self.clock() >= deadline or not (self.spec.get("ssm_online") or self.spec.get("ec2_status")):
                break
            self.sleep(self.options["poll_interval"])
        passed_reads = [i for i in instances if i["instance_id"] not in reasons]
        for instance_id, (ok, reason) in self._commands(passed_reads, deadline).items():
            if not ok:
                reasons[instance_id] = reason
        return {
            i["instance_id"]: {"status": "failed" if i["instance_id"] in reasons else "passed", "reason": reasons.get(i["instance_id"], "")} for i in instances
        }
