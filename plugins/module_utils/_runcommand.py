# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""SSM Run Command for a fleet: send in chunks, find earlier sends, wait, read outcomes.

* ``SendCommand`` takes at most 50 ``InstanceIds``; a batch is split per
  account/region into chunks of 50 and sent concurrently across locations.
  ``Targets`` by tag is never used for a list of instances.
* Every command carries a comment naming the run (and wave or check), so a
  later call (a resumed run, or the next progress round) finds what was already
  sent - ``ListCommands`` cannot filter on comments, so it lists this
  document's commands since the run began and matches the comment here.
* Waiting costs one paginated ``ListCommands`` per account/region per round for
  all commands; per-instance details (``ListCommandInvocations`` with
  ``Details``) are read once per command, when it has finished.
"""

import datetime

from ansible_collections.cms.patching.plugins.module_utils._batching import by_location, chunks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import paginate
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error

MAX_INSTANCE_IDS = 50
COMMENT_MAX = 100
TERMINAL_COMMAND = ("Success", "Failed", "TimedOut", "Cancelled")
OUTPUT_MAX = 600


def comment_for(run_id, label):
    """'cms.patching run=<id> <label>' - at most 100 characters, the SendCommand limit."""
    return ("cms.patching run=%s %s" % (run_id, label))[:COMMENT_MAX]


def _iso(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return None


def invocation_status(invocation):
    """Map an invocation to this collection's patch status: success, failed, timed_out, cancelled, undeliverable, or pending."""
    status = invocation.get("Status")
    details = invocation.get("StatusDetails") or ""
    if status == "Success":
        return "success"
    if details in ("Undeliverable", "DeliveryTimedOut", "InvalidPlatform"):
        return "undeliverable"
    if status == "TimedOut" or details == "ExecutionTimedOut":
        return "timed_out"
    if status == "Cancelled" or details == "Terminated":
        return "cancelled"
    if status == "Failed":
        return "failed"
    return "pending"


def invocation_output(invocation, max_chars=OUTPUT_MAX):
    """The output of the step that ran (not the ones skipped by platform preconditions), trimmed."""
    plugins = invocation.get("CommandPlugins") or []
    ran = [p for p in plugins if "unsatisfied preconditions" not in (p.get("Output") or "")] or plugins
    failed = [p for p in ran if p.get("Status") not in ("Success", None)] or ran
    text = "\n".join((p.get("Output") or "").strip() for p in failed).strip()
    if len(text) > max_chars:
        text = "..." + text[-(max_chars - 3) :]
    return text


class CommandBatch:
    """One document sent to a batch of instances, under one comment label."""

    def __init__(self, fleet, document, parameters, run_id, label, options, clock):
        self.fleet = fleet
        self.document = document
        self.parameters = parameters
        self.comment = comment_for(run_id, label)
        self.options = options
        self.clock = clock
        self.commands = {}  # command_id -> command dict (with our "_location")
        self.by_instance = {}  # instance_id -> command_id
        self.invocations = {}  # instance_id -> invocation dict (terminal only)
        self.errors = {}  # instance_id -> send error text

    # -- finding ----------------------------------------------------------------------------------

    def _list_commands(self, location, since):
        ssm = self.fleet.client("ssm", *location)
        filters = [{"key": "DocumentName", "value": self.document}, {"key": "InvokedAfter", "value": _iso(since)}]
        return list(paginate(ssm.list_commands, "Commands", Filters=filters, MaxResults=50))

    def refresh(self, locations, since):
        """Read every command of this label since `since` (one paginated call per location); returns errors per location."""
        errors = {}
        for outcome in fan_out(lambda loc: self._list_commands(loc, since), locations, self.options.get("max_workers", 8)):
            if not outcome.ok:
                errors[outcome.item] = describe_aws_error(outcome.error)
                continue
            for command in outcome.result:
                if command.get("Comment") != self.comment:
                    continue
                command["_location"] = outcome.item
                self.commands[command["CommandId"]] = command
                for instance_id in command.get("InstanceIds") or []:
                    self.by_instance.setdefault(instance_id, command["CommandId"])
        return errors

    # -- sending ----------------------------------------------------------------------------------

    def _send_chunk(self, job):
        location, instance_ids = job
        ssm = self.fleet.client("ssm", *location)
        request = dict(
            DocumentName=self.document,
            InstanceIds=instance_ids,
            Parameters=self.parameters,
            Comment=self.comment,
            MaxConcurrency=self.options.get("max_concurrency", "50"),
            MaxErrors=self.options.get("max_errors", "0"),
            TimeoutSeconds=int(self.options.get("delivery_timeout", 600)),
        )
        if self.options.get("output_s3_bucket"):
            request["OutputS3BucketName"] = self.options["output_s3_bucket"]
            if self.options.get("output_s3_prefix"):
                request["OutputS3KeyPrefix"] = self.options["output_s3_prefix"]
        if self.options.get("cloudwatch_output"):
            request["CloudWatchOutputConfig"] = {"CloudWatchOutputEnabled": True}
        command = ssm.send_command(**request)["Command"]
        command["_location"] = location
        return command

    def plan(self, instances):
        """The SendCommand calls needed for instances without a command yet: [(location, [ids <= 50])]."""
        fresh = by_location(i for i in instances if i["instance_id"] not in self.by_instance)
        return [(loc, chunk) for loc, members in sorted(fresh.items()) for chunk in chunks(sorted(i["instance_id"] for i in members), MAX_INSTANCE_IDS)]

    def send(self, jobs):
        for outcome in fan_out(self._send_chunk, jobs, self.options.get("max_workers", 8)):
            if outcome.ok:
                command = outcome.result
                self.commands[command["CommandId"]] = command
                for instance_id in outcome.item[1]:
                    self.by_instance[instance_id] = command["CommandId"]
            else:
                for instance_id in outcome.item[1]:
                    self.errors[instance_id] = "SendCommand failed: %s" % describe_aws_error(outcome.error)

    # -- waiting ----------------------------------------------------------------------------------

    def counts(self):
        """(targets, completed, errors) summed over this batch's commands, as SSM counts them - progress before details are read."""
        commands = list(self.commands.values())
        return (
            sum(c.get("TargetCount", len(c.get("InstanceIds") or [])) for c in commands),
            sum(c.get("CompletedCount", 0) for c in commands),
            sum(c.get("ErrorCount", 0) + c.get("DeliveryTimedOutCount", 0) for c in commands),
        )

    def collect_finished(self):
        """Read per-instance outcomes of finished commands not read yet (Details=true, once per command)."""
        todo = [c for c in self.commands.values() if c.get("Status") in TERMINAL_COMMAND and not c.get("_read")]

        def read(command):
            ssm = self.fleet.client("ssm", *command["_location"])
            return list(paginate(ssm.list_command_invocations, "CommandInvocations", CommandId=command["CommandId"], Details=True, MaxResults=50))

        for outcome in fan_out(read, todo, self.options.get("max_workers", 8)):
            if not outcome.ok:
                for instance_id in outcome.item.get("InstanceIds") or []:
                    self.errors.setdefault(instance_id, "could not read the command's results: %s" % describe_aws_error(outcome.error))
                continue
            outcome.item["_read"] = True
            for invocation in outcome.result:
                self.invocations[invocation["InstanceId"]] = invocation

    def cancel(self, commands):
        """Ask SSM to cancel commands still running past their deadline."""
        for command in commands:
            ssm = self.fleet.client("ssm", *command["_location"])
            try:
                ssm.cancel_command(CommandId=command["CommandId"])
                command["_cancelled"] = True
            except Exception as exc:  # pylint: disable=broad-except
                command["_cancel_error"] = describe_aws_error(exc)

    def outcome(self, instance_id):
        """(status, error text, command id) for one instance."""
        command_id = self.by_instance.get(instance_id, "")
        if instance_id in self.errors and instance_id not in self.invocations:
            return "failed", self.errors[instance_id], command_id
        invocation = self.invocations.get(instance_id)
        if invocation is None:
            return "pending", "", command_id
        status = invocation_status(invocation)
        if status == "success":
            return status, "", command_id
        text = invocation_output(invocation)
        details = invocation.get("StatusDetails") or invocation.get("Status")
        if details == "Terminated":
            details = "not started: the command exceeded its MaxErrors"
        return status, "%s%s" % (details, ": %s" % text if text else ""), command_id

    def requested_at(self, instance_id):
        command = self.commands.get(self.by_instance.get(instance_id))
        return _epoch(command.get("RequestedDateTime")) if command else None
