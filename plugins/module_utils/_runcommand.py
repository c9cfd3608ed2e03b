# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""SSM Run Command for a fleet: find what a run already sent, send safely, wait, read outcomes.

* ``SendCommand`` takes at most 50 ``InstanceIds``; commands go per account/region.
  ``Targets`` by tag is never used for a list of instances.
* Every command carries the comment ``cms.patching run=<run_id> lz=<lz> <label>``, so a
  later call (a resumed run, the next round) finds what was already sent - ``ListCommands``
  cannot filter on comments, so it lists the document's commands since a lower bound taken
  from AWS's own timestamps (never the controller's clock) and matches the comment here.
* Sending is never blind (SendCommand has no ClientToken): an instance is sent a command only
  when the same round's ``ListCommands`` of its account/region answered and showed none for it
  (for AWS-RunPatchBaseline: none of this run, any wave); after a 5xx or a broken connection
  the instances stay blocked until a later listing tells whether the command went out.
* A round whose ``ListCommands`` fails changes nothing: the account/region is just not
  known this round (no status changes, nothing sent there).
"""

import datetime
import re
import threading

from ansible_collections.cms.patching.plugins.module_utils._batching import chunks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import error_code, is_transient, paginate
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error
from ansible_collections.cms.patching.plugins.module_utils._ssm_nodes import managed_nodes

MAX_INSTANCE_IDS = 50
COMMENT_MAX = 100
TERMINAL_COMMAND = ("Success", "Failed", "TimedOut", "Cancelled")
# Invocations that have not started on the instance: Delayed is an offline or stopped target that SSM keeps
# retrying until the command expires (ExpiresAfter), which is over 2 hours for AWS-RunPatchBaseline.
NOT_STARTED = ("Pending", "Delayed")
OUTPUT_MAX = 600
# What the run cache keeps of a finished command (ListCommands' Command), besides its RequestedDateTime and location.
COMMAND_KEYS = ("CommandId", "Comment", "InstanceIds", "Status", "StatusDetails", "TargetCount", "CompletedCount", "ErrorCount", "DeliveryTimedOutCount")
COMMENT_RE = re.compile(r"^cms\.patching run=(\S+) lz=(\S+)(?: (.*))?$")


def comment_for(run_id, lz, label):
    """'cms.patching run=<id> lz=<lz> <label>' - at most 100 characters, the SendCommand limit."""
    return ("cms.patching run=%s lz=%s %s" % (run_id, lz, label))[:COMMENT_MAX]


def parse_comment(comment):
    """(run_id, lz, label) of a comment this collection wrote, else None."""
    match = COMMENT_RE.match(comment or "")
    return match.groups("") if match else None


def iso(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(value):
    """AWS timestamps arrive as datetimes from botocore; None for anything else."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
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


def invocation_finished_at(invocation):
    """When the invocation ended on the instance (AWS time): the latest ResponseFinishDateTime of its plugins."""
    stamps = [epoch(p.get("ResponseFinishDateTime")) for p in invocation.get("CommandPlugins") or []]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None


def compact_invocation(invocation):
    """A terminal invocation reduced to what outcome(), the results and the run cache read of it: its status, the trimmed
    output of the step that ran, and when it ended (invocation_status, invocation_output and invocation_finished_at give
    the same answers for both).

    A batch keeps one per instance until the module returns: SSM's (every plugin's output, up to 2,500 characters each,
    and a score of metadata fields) would be most of a fleet module's memory in a wave of thousands.
    """
    finished = invocation_finished_at(invocation)
    plugin = {"Name": "result", "Status": invocation.get("Status"), "Output": invocation_output(invocation)}
    if finished is not None:
        plugin["ResponseFinishDateTime"] = datetime.datetime.fromtimestamp(finished, datetime.timezone.utc)
    return {
        "CommandId": invocation.get("CommandId"),
        "InstanceId": invocation["InstanceId"],
        "Status": invocation.get("Status"),
        "StatusDetails": invocation.get("StatusDetails"),
        "CommandPlugins": [plugin],
    }


def reduced_invocation(invocation):
    """A terminal invocation as the run cache keeps it (JSON: the finish time in epoch seconds); see finished_invocations."""
    reduced = compact_invocation(invocation)
    plugin = reduced["CommandPlugins"][0]
    if "ResponseFinishDateTime" in plugin:
        plugin["ResponseFinishDateTime"] = epoch(plugin["ResponseFinishDateTime"])
    return reduced


def invocation_from_json(data):
    """reduced_invocation's inverse (the finish time back to a datetime); TypeError/ValueError for anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("InstanceId"), str):
        raise TypeError("not an invocation")
    plugins = []
    for plugin in data.get("CommandPlugins") or []:
        plugin = dict(plugin)
        if plugin.get("ResponseFinishDateTime"):
            plugin["ResponseFinishDateTime"] = datetime.datetime.fromtimestamp(float(plugin["ResponseFinishDateTime"]), datetime.timezone.utc)
        if not isinstance(plugin.get("Output", ""), str):
            raise TypeError("not an output")
        plugins.append(plugin)
    return dict(data, CommandPlugins=plugins)


class ForeignRunError(Exception):
    """Commands of this run ID carry another landing zone's name."""


class CommandBatch:
    """One document sent to a batch of instances, under one comment label.

    ``once_per_run`` (AWS-RunPatchBaseline): an instance that has a command of this run and landing
    zone under *any* label (another wave) is never sent another one.

    ``targets`` (instance IDs): the instances this batch is for. Jobs of one run can share a label - the slices of an
    AWX sliced job template each run wave ``canary`` of the same run on their own hosts - so a command of this run,
    landing zone and label is this batch's only when it is aimed at one of them: another job's commands never count
    in this batch's slots (``in_flight``) or error budget (``failures``), and their invocations are not read here.
    They still block their instances through ``run_by_instance``.
    """

    def __init__(self, fleet, document, parameters, run_id, lz, label, options, once_per_run=False, targets=None):
        self.fleet = fleet
        self.document = document
        self.parameters = parameters
        self.run_id = run_id
        self.lz = lz
        self.label = label
        self.comment = comment_for(run_id, lz, label)
        self.options = options
        self.once_per_run = once_per_run
        self.targets = None if targets is None else frozenset(targets)
        self.commands = {}  # command_id -> command dict (with our "_location") of this label
        self.by_instance = {}  # instance_id -> command_id (this label)
        self.run_by_instance = {}  # instance_id -> (command_id, comment) of this run and landing zone, any label
        self.foreign = {}  # landing zone -> a command id of this run ID in another landing zone
        self.invocations = {}  # instance_id -> invocation dict (terminal only)
        self.known_invocations = {}  # command_id -> {instance_id: terminal invocation} an earlier call read (see collect_finished)
        self.errors = {}  # instance_id -> why SendCommand refused it for good
        self.undeliverable = {}  # instance_id -> why SSM cannot deliver to it (InvalidInstanceId)
        self.uncertain = {}  # instance_id -> (location, error) of a SendCommand whose effect is unknown
        self.listed = set()  # locations whose ListCommands answered in the latest round
        self.send_calls = 0
        self._lock = threading.Lock()  # send() runs in a worker thread per location (dispatch, send_all)

    # -- finding ----------------------------------------------------------------------------------

    def _list_commands(self, location, since):
        ssm = self.fleet.client("ssm", *location)
        filters = [{"key": "DocumentName", "value": self.document}, {"key": "InvokedAfter", "value": iso(since)}]
        return list(paginate(ssm.list_commands, "Commands", Filters=filters, MaxResults=50))

    def refresh(self, locations, since, new_round=True):
        """Read this document's commands since ``since`` ({location: AWS epoch}) - one paginated call per location.

        Returns {location: error text} for the locations that did not answer; nothing about them changes. A new round
        forgets which locations were listed: a send may only follow a listing of the same round.
        """
        errors = {}
        if new_round:
            self.listed = set()
        outcomes = fan_out(lambda loc: self._list_commands(loc, since[loc]), locations, self.options.get("max_workers", 8))
        for outcome in outcomes:
            if not outcome.ok:
                errors[outcome.item] = describe_aws_error(outcome.error)
                continue
            self.listed.add(outcome.item)
            for command in outcome.result:
                self._adopt(command, outcome.item)
            # A SendCommand whose answer was lost is decided by this listing: made or not made.
            for instance_id, (location, _error) in list(self.uncertain.items()):
                if location == outcome.item:
                    del self.uncertain[instance_id]
        return errors

    def _adopt(self, command, location):
        parsed = parse_comment(command.get("Comment"))
        if not parsed or parsed[0] != self.run_id:
            return
        if parsed[1] != self.lz:
            self.foreign.setdefault(parsed[1], command["CommandId"])
            return
        command["_location"] = location
        for instance_id in command.get("InstanceIds") or []:
            self.run_by_instance.setdefault(instance_id, (command["CommandId"], command.get("Comment", "")))
        if command.get("Comment") != self.comment:
            return
        if not self._aimed_at_targets(command):
            return  # another job's command of this run and label (a sibling slice)
        known = self.commands.get(command["CommandId"])
        if known is not None:
            # Keep what we learnt (read, cancelled, the concurrency we asked for); take SSM's new status and counts.
            command.update({k: v for k, v in known.items() if k.startswith("_")})
        self.commands[command["CommandId"]] = command
        for instance_id in command.get("InstanceIds") or []:
            self.by_instance.setdefault(instance_id, command["CommandId"])

    def _aimed_at_targets(self, command):
        return self.targets is None or not self.targets.isdisjoint(command.get("InstanceIds") or ())

    def check_foreign(self):
        if self.foreign:
            lz, command_id = sorted(self.foreign.items())[0]
            raise ForeignRunError(
                "run ID %s belongs to landing zone %s (command %s says lz=%s), not to %s: use a run ID of this landing zone, "
                "or leave run_id unset to start a new run" % (self.run_id, lz, command_id, lz, self.lz)
            )

    # -- sending ----------------------------------------------------------------------------------

    def has_command(self, instance_id):
        if instance_id in self.by_instance:
            return True
        return self.once_per_run and instance_id in self.run_by_instance

    def sendable(self, location, instance_ids):
        """Of these instances, the ones that may be sent a command now: the location was listed this round and shows none."""
        if location not in self.listed:
            return []
        return [i for i in instance_ids if not self.has_command(i) and i not in self.uncertain and i not in self.errors and i not in self.undeliverable]

    def _request(self, instance_ids, max_concurrency, max_errors):
        request = dict(
            DocumentName=self.document,
            InstanceIds=instance_ids,
            Parameters=self.parameters,
            Comment=self.comment,
            MaxConcurrency=str(max_concurrency or self.options.get("max_concurrency", "50")),
            MaxErrors=str(self.options.get("max_errors", "0") if max_errors is None else max_errors),
            TimeoutSeconds=int(self.options.get("delivery_timeout", 600)),
        )
        if self.options.get("output_s3_bucket"):
            request["OutputS3BucketName"] = self.options["output_s3_bucket"]
            if self.options.get("output_s3_prefix"):
                request["OutputS3KeyPrefix"] = self.options["output_s3_prefix"]
        if self.options.get("cloudwatch_output"):
            request["CloudWatchOutputConfig"] = {"CloudWatchOutputEnabled": True}
        return request

    def send(self, location, instance_ids, max_concurrency=None, max_errors=None):
        """One SendCommand (<= 50 IDs) to instances that ``sendable`` allowed; returns the IDs it was sent to."""
        ids = self.sendable(location, instance_ids)[:MAX_INSTANCE_IDS]
        if not ids:
            return []
        ssm = self.fleet.client("ssm", *location)
        with self._lock:
            self.send_calls += 1
        try:
            command = ssm.send_command(**self._request(ids, max_concurrency, max_errors))["Command"]
        except Exception as exc:  # pylint: disable=broad-except  # every failure is recorded per instance below
            if error_code(exc) in ("InvalidInstanceId", "InvalidInstanceId.NotFound"):
                return self._send_valid_ones(location, ids, exc, max_concurrency, max_errors)
            if is_transient(exc):
                # The command may exist: never re-send before a listing says it does not.
                for instance_id in ids:
                    self.uncertain[instance_id] = (location, describe_aws_error(exc))
                return ids
            for instance_id in ids:
                self.errors[instance_id] = "SendCommand failed: %s" % describe_aws_error(exc)
            return []
        command["_location"] = location
        command["_max_concurrency"] = max_concurrency
        self.commands[command["CommandId"]] = command
        for instance_id in ids:
            self.by_instance[instance_id] = command["CommandId"]
            self.run_by_instance.setdefault(instance_id, (command["CommandId"], self.comment))
        return ids

    def _send_valid_ones(self, location, ids, exc, max_concurrency, max_errors):
        """InvalidInstanceId rejects the whole request: find the instances SSM cannot reach, report them, send the rest.

        Causes (SSM API reference, InvalidInstanceId): the node is not registered with SSM, its agent is not running,
        no permission, or it is shutting down / terminated. One DescribeInstanceProperties for the chunk tells which
        (_ssm_nodes: DescribeInstanceInformation where that is refused).
        """
        try:
            found = managed_nodes(self.fleet, location[0], location[1], ids)
        except Exception as lookup_error:  # pylint: disable=broad-except
            for instance_id in ids:
                self.errors[instance_id] = "SendCommand failed: %s (and the instances could not be checked: %s)" % (
                    describe_aws_error(exc),
                    describe_aws_error(lookup_error),
                )
            return []
        invalid = {}
        for instance_id in ids:
            info = found.get(instance_id)
            if info is None:
                invalid[instance_id] = "not a managed instance SSM can reach (not registered with SSM, or gone)"
            elif info.get("PingStatus") == "Inactive":
                invalid[instance_id] = "SSM reports it Inactive (terminated or deregistered)"
        self._name_ec2_states(location, invalid)
        if not invalid:
            for instance_id in ids:
                self.errors[instance_id] = "SendCommand failed: %s" % describe_aws_error(exc)
            return []
        for instance_id, why in invalid.items():
            self.undeliverable[instance_id] = "SendCommand refused it (InvalidInstanceId): %s" % why
        rest = [i for i in ids if i not in invalid]
        return self.send(location, rest, min(max_concurrency, len(rest)) if max_concurrency else None, max_errors) if rest else []

    def _name_ec2_states(self, location, invalid):
        """Say 'terminated' / 'shutting-down' where EC2 knows it (one DescribeInstances); the reason stays general otherwise."""
        if not invalid:
            return
        try:
            ec2 = self.fleet.client("ec2", *location)
            for reservation in paginate(ec2.describe_instances, "Reservations", Filters=[{"Name": "instance-id", "Values": sorted(invalid)}]):
                for instance in reservation.get("Instances") or []:
                    state = (instance.get("State") or {}).get("Name")
                    if state in ("shutting-down", "terminated") and instance["InstanceId"] in invalid:
                        invalid[instance["InstanceId"]] = "the instance is %s" % state
        except Exception:  # pylint: disable=broad-except  # only the wording of the reason depends on it
            pass

    # -- waiting ----------------------------------------------------------------------------------

    def counts(self):
        """(targets, completed, errors) summed over this batch's commands, as SSM counts them - progress before details are read."""
        commands = list(self.commands.values())
        return (
            sum(c.get("TargetCount", len(c.get("InstanceIds") or [])) for c in commands),
            sum(c.get("CompletedCount", 0) for c in commands),
            sum(c.get("ErrorCount", 0) + c.get("DeliveryTimedOutCount", 0) for c in commands),
        )

    def in_flight(self):
        """Invocations sent and not ended (running, pending or Delayed), plus sends whose effect is not known yet."""
        # A command just sent may report TargetCount 0 until SSM has expanded it: its instance list counts.
        running = sum(
            max(0, max(c.get("TargetCount", 0), len(c.get("InstanceIds") or [])) - c.get("CompletedCount", 0))
            for c in self.commands.values()
            if c.get("Status") not in TERMINAL_COMMAND
        )
        return running + len(self.uncertain)

    def failures(self):
        """Invocations that failed or timed out while running (SSM's ErrorCount), over this batch's commands."""
        return sum(c.get("ErrorCount", 0) for c in self.commands.values())

    def collect_finished(self):
        """Read per-instance outcomes of finished commands not read yet (Details=true, once per command).

        A read that fails is tried again next round; it changes no instance's status.
        """
        todo = [c for c in self.commands.values() if c.get("Status") in TERMINAL_COMMAND and not c.get("_read")]
        # A terminal invocation never changes: those an earlier call of this batch read (a progress call's run cache) are not read again.
        unread = []
        for command in todo:
            known = self.known_invocations.get(command["CommandId"]) or {}
            if command.get("InstanceIds") and all(i in known for i in command["InstanceIds"]):
                command["_read"] = True
                self.invocations.update((i, known[i]) for i in command["InstanceIds"])
            else:
                unread.append(command)
        todo = unread

        def read(command):
            ssm = self.fleet.client("ssm", *command["_location"])
            return list(paginate(ssm.list_command_invocations, "CommandInvocations", CommandId=command["CommandId"], Details=True, MaxResults=50))

        for outcome in fan_out(read, todo, self.options.get("max_workers", 8)):
            if not outcome.ok:
                # Kept so an instance still pending at its deadline says why (a policy without ListCommandInvocations).
                outcome.item["_read_error"] = describe_aws_error(outcome.error)
                continue
            outcome.item.pop("_read_error", None)
            outcome.item["_read"] = True
            for invocation in outcome.result:
                self.invocations[invocation["InstanceId"]] = compact_invocation(invocation)

    def finished_invocations(self):
        """{command_id: [invocation]} of the terminal commands read, reduced to what outcome() and the results use.

        One plugin stands for the invocation: the output invocation_output chose (so it gives the same text) and the
        latest ResponseFinishDateTime (so invocation_finished_at gives the same time).
        """
        kept = {}
        for command_id, command in self.commands.items():
            if command.get("Status") not in TERMINAL_COMMAND or not command.get("_read"):
                continue
            invocations = [self.invocations[i] for i in command.get("InstanceIds") or [] if i in self.invocations]
            kept[command_id] = [reduced_invocation(inv) for inv in invocations if inv.get("CommandId", command_id) == command_id]
        return kept

    def finished_commands(self):
        """The terminal commands read (their invocations: finished_invocations), as the run cache keeps them (JSON)."""
        kept = []
        for command in self.commands.values():
            if command.get("Status") in TERMINAL_COMMAND and command.get("_read") and epoch(command.get("RequestedDateTime")) is not None:
                data = {k: command[k] for k in COMMAND_KEYS if k in command}
                data.update(RequestedDateTime=epoch(command["RequestedDateTime"]), _location=list(command["_location"]))
                kept.append(data)
        return kept

    def restorable(self, data):
        """Whether a finished command from the run cache is one of this batch's, terminal, with every invocation known."""
        known = self.known_invocations.get(data.get("CommandId")) or {}
        ids = data.get("InstanceIds")
        return (
            data.get("Comment") == self.comment
            and data.get("Status") in TERMINAL_COMMAND
            and isinstance(ids, list)
            and bool(ids)
            and all(isinstance(i, str) and i in known for i in ids)
            and self._aimed_at_targets(data)
            and all(isinstance(data.get(k, 0), int) for k in ("TargetCount", "CompletedCount", "ErrorCount", "DeliveryTimedOutCount"))
        )

    def restore_finished(self, data):
        """Take a finished command (and its invocations) an earlier call listed and read, as if this call had: a terminal
        command and its invocations never change. Only for what ``restorable`` accepts."""
        command = dict(data)
        command["_location"] = tuple(data["_location"])
        command["RequestedDateTime"] = datetime.datetime.fromtimestamp(float(data["RequestedDateTime"]), datetime.timezone.utc)
        command["_read"] = True
        known = self.known_invocations[command["CommandId"]]
        self.commands[command["CommandId"]] = command
        for instance_id in command["InstanceIds"]:
            self.by_instance.setdefault(instance_id, command["CommandId"])
            self.run_by_instance.setdefault(instance_id, (command["CommandId"], command["Comment"]))
            self.invocations[instance_id] = known[instance_id]

    def read_running(self, command):
        """Read a running command's invocations (Details): keep the ended ones; return the IDs not started (Pending / Delayed)."""
        ssm = self.fleet.client("ssm", *command["_location"])
        waiting = []
        for invocation in paginate(ssm.list_command_invocations, "CommandInvocations", CommandId=command["CommandId"], Details=True, MaxResults=50):
            if invocation.get("Status") in NOT_STARTED:
                waiting.append(invocation["InstanceId"])
            elif invocation_status(invocation) != "pending":
                self.invocations[invocation["InstanceId"]] = compact_invocation(invocation)
        return waiting

    def cancel(self, commands, instance_ids=None):
        """Ask SSM to cancel commands (or, with ``instance_ids``, only those of their invocations)."""
        for command in commands:
            ssm = self.fleet.client("ssm", *command["_location"])
            request = {"CommandId": command["CommandId"]}
            if instance_ids is not None:
                ids = [i for i in command.get("InstanceIds") or [] if i in instance_ids]
                if not ids:
                    continue
                request["InstanceIds"] = ids
            try:
                ssm.cancel_command(**request)
                command["_cancelled"] = True
            except Exception as exc:  # pylint: disable=broad-except
                command["_cancel_error"] = describe_aws_error(exc)

    def outcome(self, instance_id):
        """(status, error text, command id) for one instance."""
        command_id = self.by_instance.get(instance_id, "")
        if instance_id in self.undeliverable and instance_id not in self.invocations:
            return "undeliverable", self.undeliverable[instance_id], command_id
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
        return epoch(command.get("RequestedDateTime")) if command else None


def send_all(batch, instances):
    """Send the batch's document to every instance that may have it now, in chunks of 50 per location (health checks)."""
    groups = {}
    for item in instances:
        groups.setdefault((item["account_id"], item["region"]), []).append(item["instance_id"])

    def send_location(entry):
        location, ids = entry
        for chunk in chunks(batch.sendable(location, sorted(ids)), MAX_INSTANCE_IDS):
            batch.send(location, chunk)

    # One worker per location: the locations' sends are independent (each follows its own listing).
    for outcome in fan_out(send_location, sorted(groups.items()), batch.options.get("max_workers", 8)):
        if not outcome.ok:  # send reports AWS errors per instance: anything else is a fault of this code
            raise outcome.error
