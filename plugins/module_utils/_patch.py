# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Phase 3, patching: AWS-RunPatchBaseline for a batch (one wave), only behind a verified backup.

The backup gate is enforced here, not only in the role: unless told otherwise,
an instance is patched only when an ``available`` AMI of it from *this run*
carries the ``cms:patching:verified-at`` tag that ami_backup_verified sets after
checking the image and every snapshot.  One DescribeImages per account/region
finds them for the whole batch.

Everything that decides a send is read back from AWS in the call that sends (after a
progress return, a Ctrl-C, an AWX cancel): the commands of this run and wave by their
comment, the verified AMIs by their tags. What only saves reads - the look-up bound,
patch states already read - may come from the wave's controller-local cache
(_runcache.RunCache): progress calls are new processes, and without it each one read
again what the calls before it had read.
"""

import datetime
import uuid

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._batching import by_location, chunks
from ansible_collections.cms.patching.plugins.module_utils._checks import HealthChecks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._pace import progress_ends
from ansible_collections.cms.patching.plugins.module_utils._retry import paginate
from ansible_collections.cms.patching.plugins.module_utils._runcommand import (
    MAX_INSTANCE_IDS,
    TERMINAL_COMMAND,
    CommandBatch,
    ForeignRunError,
    epoch,
    invocation_finished_at,
    invocation_from_json,
    invocation_output,
)
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError, describe_aws_error

DOCUMENT = "AWS-RunPatchBaseline"
FAILURE_STATUSES = ("failed", "timed_out", "cancelled", "undeliverable")
# Namespace for SnapshotIds derived from run IDs: the same run always gets the same patch snapshot.
SNAPSHOT_NAMESPACE = uuid.UUID("5d4f8a2e-8f0b-4b8e-9a57-0c3a1f6e2b10")
# Commands of a batch are listed from this long before the earliest verified AMI of the batch: every patch command of
# the run was sent after its instance's AMI existed, and both timestamps are AWS's own.
LOOKUP_MARGIN = 3600
# A run ID stamped further than this ahead of AWS's clock was not made when its run started.
FUTURE_TOLERANCE = 900
# DescribeInstancePatchStates takes at most 50 InstanceIds (SSM API reference): patch states are read in full batches.
STATE_BATCH = 50
# The fields of a patch state (InstancePatchState, SSM API reference) the results and 'reboot' use; the cache keeps these.
STATE_KEYS = (
    "InstanceId",
    "Operation",
    "OperationStartTime",
    "OperationEndTime",
    "RebootOption",
    "InstalledCount",
    "InstalledOtherCount",
    "InstalledPendingRebootCount",
    "InstalledRejectedCount",
    "MissingCount",
    "FailedCount",
    "NotApplicableCount",
)


def snapshot_id_for(run_id):
    """One patch-baseline snapshot per run, so every instance of every wave gets the same approved patch set."""
    return str(uuid.uuid5(SNAPSHOT_NAMESPACE, run_id))


def run_id_time(run_id):
    """The UTC timestamp a run ID starts with (YYYYmmddTHHMMSSZ, as the playbooks make them), else None."""
    try:
        return datetime.datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


def aws_time(value):
    """An AWS timestamp (datetime, or the ISO string EC2 uses for CreationDate) as epoch seconds."""
    if isinstance(value, datetime.datetime):
        return epoch(value)
    try:
        return datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def state_to_json(state):
    """The fields of a patch state the results use, with its times as ISO strings (for the run cache)."""
    return {k: (v.isoformat() if isinstance(v, datetime.datetime) else v) for k, v in state.items() if k in STATE_KEYS}


def state_from_json(data):
    """state_to_json's inverse; ValueError/TypeError for anything that is not one."""
    if not isinstance(data, dict):
        raise TypeError("not a patch state")
    state = {}
    for key, value in data.items():
        if key not in STATE_KEYS:
            continue
        if key.endswith("Time") and value is not None:
            value = datetime.datetime.fromisoformat(value)
            value = value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
        elif key.endswith("Count") and value is not None and not isinstance(value, int):
            raise TypeError("%s is not a count" % key)
        elif key in ("InstanceId", "Operation", "RebootOption") and not isinstance(value, str):
            raise TypeError("%s is not a string" % key)
        state[key] = value
    return state


def rate_limit(value, total, minimum):
    """A count or a percentage of ``total`` (rounded down), at least ``minimum``."""
    value = str(value).strip()
    count = int(total * int(value[:-1]) // 100) if value.endswith("%") else int(value)
    return max(minimum, count)


def compliance_of(state):
    """COMPLIANT / NON_COMPLIANT from a patch state of this command; 'stale' when AWS never reported one (see PatchRun)."""
    if not state:
        return "stale"
    bad = state.get("MissingCount", 0) + state.get("FailedCount", 0) + state.get("InstalledPendingRebootCount", 0)
    return "NON_COMPLIANT" if bad else "COMPLIANT"


def _installed(state):
    return (state.get("InstalledCount") or 0) + (state.get("InstalledOtherCount") or 0)


def reboot_of(operation, state, before):
    """Whether the patch operation rebooted the instance, from patch states only (never from output text).

    The rule, from the InstancePatchState reference (SSM API): reboots are attempted for Install only; with
    ``RebootIfNeeded`` Patch Manager reboots when it installed any patch or found any InstalledPendingReboot; with
    ``NoReboot`` it never reboots and what it installed counts in ``InstalledPendingRebootCount`` (and
    ``LastNoRebootInstallOperationTime`` is set). The state after the operation alone cannot tell whether anything
    was installed, so ``before`` (the state read before this command's operation ended) is compared with it:

    * ``no``: a Scan, ``NoReboot``, or ``RebootIfNeeded`` with nothing installed and nothing pending before;
    * ``pending``: ``InstalledPendingRebootCount`` > 0 after the operation (installed, reboot still outstanding);
    * ``yes``: ``RebootIfNeeded`` and more patches installed than before, or a reboot was pending before;
    * ``unknown``: no patch state of this command, or no state from before it (a call that resumed after it ended).
    """
    if operation == "Scan":
        return "no"
    if not state:
        return "unknown"
    if (state.get("InstalledPendingRebootCount") or 0) > 0:
        return "pending"
    if state.get("RebootOption") == "NoReboot":
        return "no"
    if not before:
        return "unknown"
    if _installed(state) > _installed(before) or (before.get("InstalledPendingRebootCount") or 0) > 0:
        return "yes"
    return "no"


class PatchRun:
    """Send, resume and wait for AWS-RunPatchBaseline on one batch of instances (one wave).

    Rate control is the wave's, not the command's: at most ``max_concurrency`` invocations of the wave are in
    flight at once across every account, region and command, and dispatching stops once ``max_errors``
    invocations have failed. Each round: list the commands (one ListCommands per account/region), read finished
    ones, then dispatch into the free slots - SendCommands of up to 50 instances per account/region, each with
    MaxConcurrency = its number of instances, so SSM starts them all at once and nothing waits inside a command
    (an instance still queued in a command when its TimeoutSeconds pass would never run).
    """

    def __init__(self, fleet, instances, run_id, options, check_mode, clock, sleep, cache=None):
        self.fleet = fleet
        self.cache = cache  # a _runcache.RunCache of this lz, run and wave, or None (read everything from AWS)
        self.instances = instances
        self.run_id = run_id
        self.lz = options.get("lz") or ""
        self.options = options
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.locations = sorted({(i["account_id"], i["region"]) for i in instances})
        label = "wave=%s" % options["wave"]
        targets = [i["instance_id"] for i in instances]
        self.batch = CommandBatch(fleet, DOCUMENT, self.parameters(), run_id, self.lz, label, options, once_per_run=True, targets=targets)
        self.concurrency = rate_limit(options.get("max_concurrency") or "10%", len(instances), 1)
        # The wave stops dispatching when this many invocations have failed ("0" stops at the first failure).
        self.error_budget = max(1, rate_limit(options.get("max_errors") or "0", len(instances), 0))
        self.since = {}  # location -> AWS epoch from which this run's commands are listed
        self.since_from_amis = set()  # locations whose bound comes from their verified AMIs (the ones the cache keeps)
        self.gated = set()  # locations whose verified AMIs this call has read
        self.verified = {}  # (account, region, instance) -> CreationDate (AWS epoch) of its verified AMI of this run
        self.gate_errors = {}  # location -> why the gate could not be read
        self.skipped = {}  # instance_id -> reason (gate, pre-check, another wave)
        self.plans = {}  # instance_id -> check mode's plan
        self.gate_notes = {}  # instance_id -> what check mode's plan still depends on
        self.queue = []  # instances cleared for patching and waiting for a slot
        self.not_run = {}  # instance_id -> why it was never sent
        self.stopped = ""  # why dispatching stopped
        self.pre_checks = {}
        self.post_checks = {}
        self.states = {}  # instance_id -> its patch state from this command (OperationEndTime >= RequestedDateTime)
        self.before = {}  # instance_id -> its patch state from before this command's operation ended
        self.before_read = set()  # instances whose earlier state has been asked for once (this call or, from the cache, an earlier one)
        self.state_asked = set()  # instances this call has asked for their patch state after their invocation ended
        self.cached_states = {}  # instance_id -> a state of this command an earlier call read (checked again before it counts)
        self.cached_commands = []  # finished commands of this wave an earlier call listed and read (see settle_from_cache)
        self.settled = set()  # locations where every instance's command had finished and been read by an earlier call
        self.stale = {}  # instance_id -> why no patch state of this command was found in time
        self.state_errors = {}  # location -> why its latest DescribeInstancePatchStates failed (none when it answered)
        self.list_errors = {}  # location -> why its latest ListCommands failed (none when it answered)
        self.planned = []  # [(location, [ids])] SendCommand calls made (or planned in check mode)
        self.timed_out = {}
        self.late = {}  # instance_id -> status at the deadline (timed_out, or undeliverable when it never started)
        self.rounds = 0
        self.cursor = 0
        self.started_at = None
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

    # -- AWS's clock ------------------------------------------------------------------------------

    def aws_now(self):
        """AWS's current time (the Date header of its latest answer); asks AWS once if nothing was answered yet."""
        now = self.fleet.server_clock.now()
        if now is None and self.locations:
            self.fleet.client("ssm", *self.locations[0]).list_commands(MaxResults=1)
            now = self.fleet.server_clock.now()
        if now is None:
            raise FleetError("AWS's answers carry no Date header, so AWS's time is unknown: deadlines and look-ups cannot be placed")
        return now

    def check_run_id(self):
        stamp = run_id_time(self.run_id)
        now = self.aws_now()
        if stamp is not None and stamp > now + FUTURE_TOLERANCE:
            raise FleetError(
                "run_id %s: its timestamp is %d minutes ahead of AWS's clock (%s UTC): a run ID is made when its run starts; "
                "check the controller's clock (NTP), or pass the run ID printed by the run you mean to resume"
                % (self.run_id, (stamp - now) // 60, datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))
            )

    # -- the gate ---------------------------------------------------------------------------------

    def _verified_in(self, location):
        ec2 = self.fleet.client("ec2", *location)
        filters = [
            _tags.tag_filter(_tags.PATCHING, _tags.PRE_PATCH),
            _tags.tag_filter(_tags.RUN_ID, self.run_id),
            _tags.tag_filter(_tags.LZ, self.lz),
            {"Name": "tag-key", "Values": [_tags.VERIFIED_AT]},
            {"Name": "state", "Values": ["available"]},
        ]
        return {
            _tags.as_dict(i.get("Tags")).get(_tags.INSTANCE_ID): aws_time(i.get("CreationDate"))
            for i in paginate(ec2.describe_images, "Images", Owners=["self"], Filters=filters, MaxResults=1000)
        }

    def read_gate(self, locations=None):
        """The verified AMIs of this run in these locations (default: every location of the batch), one DescribeImages each."""
        if not self.options.get("require_backup", True):
            return
        locations = [loc for loc in (self.locations if locations is None else locations) if loc not in self.gated]
        self.gated.update(locations)
        for outcome in fan_out(self._verified_in, locations, self.options.get("max_workers", 8)):
            if outcome.ok:
                self.verified.update({outcome.item + (instance_id,): created for instance_id, created in outcome.result.items()})
            else:
                self.gate_errors[outcome.item] = describe_aws_error(outcome.error)

    def set_bounds(self, locations):
        """Where ListCommands starts, per location, on AWS's clock: before the earliest verified AMI there, else the lookback."""
        lookback = self.aws_now() - self.options.get("lookback_hours", 168) * 3600
        for location in locations:
            created = [t for key, t in self.verified.items() if key[:2] == location and t is not None]
            self.since[location] = min(created) - LOOKUP_MARGIN if created else lookback
            if created:
                self.since_from_amis.add(location)

    def gate(self, candidates):
        """Instances with a verified backup in this run; the others are skipped with the reason."""
        if not self.options.get("require_backup", True):
            return candidates
        allowed = []
        for item in candidates:
            location = (item["account_id"], item["region"])
            if location in self.gate_errors:
                self.skipped[item["instance_id"]] = "could not check for a verified backup: %s" % self.gate_errors[location]
            elif location + (item["instance_id"],) in self.verified:
                allowed.append(item)
            elif self.check_mode:
                # A dry run creates no backups, so none can be verified yet: show the plan, say what it waits for.
                self.gate_notes[item["instance_id"]] = " once its backup is verified (none in run %s yet)" % self.run_id
                allowed.append(item)
            else:
                self.skipped[item["instance_id"]] = "no verified backup of this instance in run %s (patching requires one)" % self.run_id
        return allowed

    # -- rounds -----------------------------------------------------------------------------------

    def poll(self):
        """One round of reading: commands (a location that does not answer changes nothing), finished results, deadlines."""
        self.rounds += 1
        self._list(self.active_locations())
        self._check_foreign()
        self.batch.collect_finished()
        self._enforce_deadlines()
        self._read_compliance()

    def _list(self, locations, new_round=True):
        """The batch's listing of these locations; a failure is kept so an instance never sent can say why."""
        errors = self.batch.refresh(locations, self.since, new_round=new_round)
        for location in locations:
            if location in errors:
                self.list_errors[location] = errors[location]
            else:
                self.list_errors.pop(location, None)

    def _check_foreign(self):
        try:
            self.batch.check_foreign()
        except ForeignRunError as exc:
            raise FleetError(str(exc))

    def active_locations(self):
        """Where this round must list commands: everywhere at first, then only where commands of this wave still run or are unread,
        or a send's effect is unknown. Locations that only have queued instances are listed by dispatch, when a slot is free."""
        if self.rounds <= 1:
            return [location for location in self.locations if location not in self.settled]
        active = {c["_location"] for c in self.batch.commands.values() if c.get("Status") not in TERMINAL_COMMAND or not c.get("_read")}
        active |= {location for location, _error in self.batch.uncertain.values()}
        return sorted(active)

    def _triage_queue(self):
        """Drop from the queue what has a command now; an instance patched by another wave of this run is never sent again."""
        queue = []
        for item in self.queue:
            instance_id = item["instance_id"]
            if instance_id in self.batch.by_instance or instance_id in self.batch.errors or instance_id in self.batch.undeliverable:
                continue
            if instance_id in self.batch.run_by_instance:
                command_id, comment = self.batch.run_by_instance[instance_id]
                self.skipped[instance_id] = "already sent %s in this run (command %s, '%s'): an instance is patched at most once per run" % (
                    DOCUMENT,
                    command_id,
                    comment,
                )
                continue
            queue.append(item)
        self.queue = queue

    def budget_spent(self):
        return self.batch.failures() >= self.error_budget

    def _stop_dispatching(self):
        """The wave's error budget is spent: cancel what was sent but has not started, send nothing more."""
        failures = self.batch.failures()
        self.stopped = "the wave's error budget is spent: %d invocation(s) failed (max_errors %s allows %d)" % (
            failures,
            self.options.get("max_errors") or "0",
            self.error_budget,
        )
        for command in [c for c in self.batch.commands.values() if c.get("Status") not in TERMINAL_COMMAND and not c.get("_stop_cancelled")]:
            try:
                waiting = self.batch.read_running(command)
            except Exception:  # pylint: disable=broad-except  # tried again next round
                continue
            if waiting:
                self.batch.cancel([command], set(waiting))
            if command.pop("_cancel_error", None):
                continue  # CancelCommand failed: asked again next round (cancelling twice is harmless)
            command["_stop_cancelled"] = True
            for instance_id in waiting:
                self.not_run.setdefault(instance_id, "cancelled before it started: %s" % self.stopped)
        for item in self.queue:
            self.not_run[item["instance_id"]] = "not sent: %s" % self.stopped
        self.queue = []

    def dispatch(self):
        """Send to as many queued instances as the wave's free slots allow: one SendCommand per account/region, <= 50 IDs."""
        self._triage_queue()
        if self.budget_spent() and (self.queue or self.batch.in_flight()):
            self._stop_dispatching()
            return
        if not self.queue:
            return
        free = self.concurrency - self.batch.in_flight()
        groups = by_location(self.queue)
        order = sorted(groups)
        order = order[self.cursor % len(order) :] + order[: self.cursor % len(order)]
        self.cursor += 1
        remaining_errors = max(0, self.error_budget - self.batch.failures() - 1)
        plan = self._allocate(order, groups, free)
        # The sends of different locations are independent (each follows its own listing): one worker per location, so a wave
        # over 600 accounts and regions does not wait for 1,200 calls one after the other before its last instance starts.
        outcomes = fan_out(lambda entry: self._send_location(entry[0], entry[1], remaining_errors), plan, self.options.get("max_workers", 8))
        for outcome in outcomes:
            for location, sent in outcome.result if outcome.ok else ():
                self.planned.append((location, sent))
                self.changed = True
        self._triage_queue()
        failed = [outcome.error for outcome in outcomes if not outcome.ok]
        if failed:  # send and read_before report AWS errors per instance: anything else is a fault of this code, never hidden
            raise failed[0]

    def _allocate(self, order, groups, free):
        """[(location, ids)] to send this round, in ``order``, at most ``free`` instances in all.

        Every location is listed in this round before anything is chosen there (right before sending: the listing must show
        no command of this run for them); those not listed yet are listed together, as many as the free slots may need.
        """
        plan = []
        order = list(order)
        while free > 0 and order:
            chosen, wanted = [], 0
            while order and wanted < free:
                chosen.append(order.pop(0))
                wanted += len(groups[chosen[-1]])
            unlisted = [location for location in chosen if location not in self.batch.listed]
            if unlisted:
                self._list(unlisted, new_round=False)
                self._check_foreign()
                self._triage_queue()
            queued = {i["instance_id"] for i in self.queue}
            for location in chosen:
                # Each instance is in one command only (sendable drops what was just sent, or whose send has an unknown outcome).
                ids = self.batch.sendable(location, [i["instance_id"] for i in groups[location] if i["instance_id"] in queued])[: max(0, free)]
                if ids:
                    plan.append((location, ids))
                    free -= len(ids)
        return plan

    def _send_location(self, location, ids, remaining_errors):
        """Commands of up to 50 to one location's allocated instances; [(location, ids sent)]. Runs in a worker thread."""
        sent_chunks = []
        for chunk in chunks(ids, MAX_INSTANCE_IDS):
            if self.needs_before():
                self.read_before(location, chunk)
            # SSM's own MaxConcurrency/MaxErrors stay a second line of defence inside each command.
            sent = self.batch.send(location, chunk, max_concurrency=len(chunk), max_errors=remaining_errors)
            if sent:
                sent_chunks.append((location, sent))
        return sent_chunks

    def _first_requested(self):
        stamps = [self.batch.requested_at(i["instance_id"]) for i in self.instances]
        stamps = [s for s in stamps if s is not None]
        return min(stamps) if stamps else None

    def _deadline(self, instance_id, first):
        """When an instance's patching counts as timed out, on AWS's clock (``first``: _first_requested(), once a round).

        Per command: delivery_timeout + execution_timeout after SSM recorded it (RequestedDateTime) - AWS itself lets
        an offline target stay Delayed until ExpiresAfter. For the wave: wait_timeout after its first command, so a
        run resumed hours later keeps its deadline and repeated progress calls share one.
        """
        requested = self.batch.requested_at(instance_id)
        if requested is None:
            return None
        opts = self.options
        return min(requested + opts["delivery_timeout"] + opts["execution_timeout"], first + opts["wait_timeout"])

    def _enforce_deadlines(self):
        now = self.aws_now()
        if self.started_at is None:
            self.started_at = now
        first = self._first_requested()
        # Without any command yet (every listing failed), this call's own start bounds the wait.
        if now >= (self.started_at if first is None else first) + self.options["wait_timeout"]:
            for item in self.queue:
                list_error = self.list_errors.get((item["account_id"], item["region"]))
                if list_error:
                    # Never sent blind: without a listing, a command of this run may already be there.
                    self.not_run[item["instance_id"]] = "not sent: ListCommands in %s/%s failed until the wave's wait_timeout (%ds): %s" % (
                        item["account_id"],
                        item["region"],
                        self.options["wait_timeout"],
                        list_error,
                    )
                    continue
                self.not_run[item["instance_id"]] = "not sent: the wave's wait_timeout (%ds) ran out before a slot was free" % self.options["wait_timeout"]
            self.queue = []
            for instance_id, (_location, error) in self.batch.uncertain.items():
                self.not_run.setdefault(
                    instance_id, "SendCommand failed (%s) and no listing could tell by the deadline whether it went out: check before patching again" % error
                )
        late = {}
        for item in self.instances:
            instance_id = item["instance_id"]
            # The wave's first command once for all instances: read per instance, a round cost O(n^2) - 18,000
            # instances kept the module's CPU busy for minutes per round.
            deadline = self._deadline(instance_id, first)
            if deadline is not None and now >= deadline and instance_id not in self.timed_out and self.batch.outcome(instance_id)[0] == "pending":
                late.setdefault(self.batch.by_instance[instance_id], []).append(instance_id)
        for command_id, ids in late.items():
            command = self.batch.commands[command_id]
            read_error = ""
            try:
                # Its other invocations may have ended long ago: read them, so only the ones still going count as late.
                waiting = set(self.batch.read_running(command))
            except Exception as exc:  # pylint: disable=broad-except  # then the reason cannot say which never started
                waiting = set()
                read_error = describe_aws_error(exc)
            # An invocation that could not be read may have ended long ago: the reason says so rather than "still running".
            read_error = read_error or command.get("_read_error", "")
            ids = [i for i in ids if self.batch.outcome(i)[0] == "pending"]
            if not self.check_mode and ids:
                self.batch.cancel([command], set(ids))
            for instance_id in ids:
                if instance_id in waiting:
                    self.late[instance_id] = "undeliverable"
                    self.timed_out[instance_id] = (
                        "never started: still Delayed or Pending at the deadline (agent offline or instance stopped); cancel requested for command %s"
                        % command_id
                    )
                elif read_error:
                    self.late[instance_id] = "timed_out"
                    self.timed_out[instance_id] = "its invocation could not be read by the deadline (%s); cancel requested for command %s" % (
                        read_error,
                        command_id,
                    )
                else:
                    self.late[instance_id] = "timed_out"
                    self.timed_out[instance_id] = (
                        "still running at the deadline (delivery_timeout + execution_timeout, or wait_timeout); cancel requested for command %s" % command_id
                    )

    def status_of(self, instance_id):
        """(status, error) of one instance now."""
        if instance_id in self.batch.by_instance or instance_id in self.batch.errors or instance_id in self.batch.undeliverable:
            status, error, _cid = self.batch.outcome(instance_id)
            if status == "pending" and instance_id in self.timed_out:
                return self.late[instance_id], self.timed_out[instance_id]
            if status == "pending" and instance_id in self.not_run:
                return "cancelled", self.not_run[instance_id]
            if status == "cancelled" and instance_id in self.not_run:
                return status, self.not_run[instance_id]
            if status == "success" and self.awaiting_compliance(instance_id):
                return "pending", "patched; waiting for AWS to report its patch state"
            return status, error
        if instance_id in self.skipped:
            return "skipped", self.skipped[instance_id]
        if instance_id in self.batch.uncertain and instance_id not in self.not_run:
            return "pending", "SendCommand failed (%s); waiting for a listing to show whether it went out" % self.batch.uncertain[instance_id][1]
        if instance_id in self.not_run:
            return "not_run", self.not_run[instance_id]
        return "pending", ""

    def pending(self):
        return [i for i in self.instances if self.status_of(i["instance_id"])[0] == "pending"]

    # -- the flow ---------------------------------------------------------------------------------

    def start(self):
        """Find this run's commands; gate, pre-check and queue the rest; dispatch the first round.

        The gate (DescribeImages) is read only where this call may send: the locations with instances that no listing
        shows a command for. A location's first read also dates its command look-up; an earlier call of the wave
        keeps that bound in the run cache, so a progress call whose instances were all sent reads no gate at all.
        """
        self.restore()
        self.settle_from_cache()
        unbounded = [loc for loc in self.locations if loc not in self.since]
        if unbounded:
            self.read_gate(unbounded)
            self.check_run_id()
            self.set_bounds(unbounded)
        self.poll()
        if not unbounded:
            self.check_run_id()  # after the listing, whose answer tells AWS's time (nothing has been sent yet)
        self.queue = [i for i in self.instances if i["instance_id"] not in self.batch.by_instance]
        self._triage_queue()
        # Right before the first send of this call, from AWS: a verified backup of this run is what allows a send.
        self.read_gate(sorted({(i["account_id"], i["region"]) for i in self.queue}))
        allowed = self.gate(self.queue)
        if allowed and self.options.get("pre_checks"):
            checks = HealthChecks(
                self.fleet, self.options["pre_checks"], self.run_id, "pre-check wave=%s" % self.options["wave"], self.check_options(), self.aws_now, self.sleep
            )
            if checks.enabled() and not self.check_mode:
                self.pre_checks = checks.run(allowed, settle=False)
                for instance_id, check in self.pre_checks.items():
                    if check["status"] == "failed":
                        self.skipped[instance_id] = "pre-patch check failed: %s" % check["reason"]
                allowed = [i for i in allowed if i["instance_id"] not in self.skipped]
        self.queue = allowed
        if self.check_mode:
            self.plan_check_mode()
            return
        self.dispatch()

    def plan_check_mode(self):
        """The dispatch a real run would start with; everything beyond the first round waits for free slots."""
        groups = by_location(self.queue)
        calls = [(loc, chunk) for loc in sorted(groups) for chunk in chunks([i["instance_id"] for i in groups[loc]], MAX_INSTANCE_IDS)]
        self.planned = calls
        for index, (_location, ids) in enumerate(calls):
            for instance_id in ids:
                self.plans[instance_id] = "would send %s in command %d of %d (at most %d of the wave's %d instances at once)%s" % (
                    DOCUMENT,
                    index + 1,
                    len(calls),
                    self.concurrency,
                    len(self.instances),
                    self.gate_notes.get(instance_id, ""),
                )
                self.skipped[instance_id] = ""
        self.queue = []
        self.changed = bool(calls)

    def check_options(self):
        return dict(self.options, since=self.since, lz=self.lz)

    def wait(self, wait, progress_interval):
        started = self.clock()
        while self.pending():
            if not wait or self.check_mode or progress_ends(self.clock() - started, progress_interval, self.options["poll_interval"], self.sleep):
                return
            self.sleep(self.options["poll_interval"])
            self.poll()
            self.dispatch()

    # -- after the wave -------------------------------------------------------------------------

    def _read_states(self, location, ids):
        ssm = self.fleet.client("ssm", *location)
        found = {}
        for chunk in chunks(ids, 50):
            for state in paginate(ssm.describe_instance_patch_states, "InstancePatchStates", InstanceIds=chunk, MaxResults=50):
                # Only the fields the results use: a wave keeps two states per instance (before and after) until it returns.
                found[state["InstanceId"]] = {k: v for k, v in state.items() if k in STATE_KEYS}
        return found

    def needs_before(self):
        """Whether 'reboot' needs the patch state from before the operation: only an Install that may reboot (see reboot_of)."""
        return self.options["operation"] == "Install" and self.options.get("reboot_option", "RebootIfNeeded") != "NoReboot"

    def awaiting_compliance(self, instance_id):
        return (
            instance_id in self.batch.invocations
            and instance_id not in self.states
            and instance_id not in self.stale
            and self.batch.outcome(instance_id)[0] == "success"
        )

    def _wave_ended(self):
        """Nothing of the wave can still end: every instance has its outcome, or waits only for its patch state.

        Queued, in flight, unread (a failed ListCommandInvocations), or sent with an unknown outcome all count as not ended;
        an instance the deadline gave up on has ended (status_of says so).
        """
        return not any(self.status_of(i["instance_id"])[0] == "pending" and not self.awaiting_compliance(i["instance_id"]) for i in self.instances)

    def _compliance_deadline(self, instance_id):
        ended = invocation_finished_at(self.batch.invocations[instance_id]) or self.batch.requested_at(instance_id)
        return None if ended is None else ended + self.options.get("compliance_wait", 300)

    def _states_due(self, members, ended):
        """Which of a location's instances that succeeded and wait for their patch state this round reads (maybe none).

        In full batches (DescribeInstancePatchStates takes 50 IDs), the longest waiting first, once 50 there were not
        asked for yet in this call; all of them once nothing of the wave can still end (then every round: the wave's end
        waits for nothing else). Nothing waits for a state before the wave's end (the post-checks come after it), so an
        earlier read would only read them in smaller batches. An instance is called stale only by a read made at or after
        the end of its compliance_wait, so one whose wait ran out mid-wave is read (and judged) with the next batch.
        """
        if ended:
            return members
        if sum(1 for i in members if i["instance_id"] not in self.state_asked) < STATE_BATCH:
            return []
        order = sorted(members, key=lambda i: self._compliance_deadline(i["instance_id"]) or 0)
        return order[: len(members) // STATE_BATCH * STATE_BATCH]

    def _take_cached_states(self):
        """States an earlier call of this wave read count once this call knows the instance succeeded, by the same rule."""
        for instance_id in [i for i in self.cached_states if i in self.batch.invocations]:
            state = self.cached_states.pop(instance_id)
            if instance_id not in self.states and self.batch.outcome(instance_id)[0] == "success" and self._of_this_command(instance_id, state):
                self.states[instance_id] = state

    def _read_compliance(self):
        """Patch states, 50 a call: this command's for the instances that succeeded (in full batches, see _states_due),
        and once per instance the state from before the operation for those still running (to tell whether it rebooted).

        The agent reports compliance some time after the invocation ends (not atomically with it): a state whose
        OperationEndTime is before the command's RequestedDateTime belongs to an earlier operation. We wait for this
        command's up to compliance_wait seconds after the invocation ended (AWS time), then report compliance 'stale'.
        """
        self._take_cached_states()
        awaiting = [i for i in self.instances if self.awaiting_compliance(i["instance_id"])]
        before = (
            []
            if not self.needs_before()
            else [
                i
                for i in self.instances
                if i["instance_id"] in self.batch.by_instance
                and i["instance_id"] not in self.before
                and i["instance_id"] not in self.batch.invocations
                and i["instance_id"] not in self.before_read
            ]
        )
        if not before and not awaiting:
            return
        now = self.aws_now() if awaiting else None
        ended = bool(awaiting) and self._wave_ended()
        waiting = by_location(awaiting)
        wanted = by_location(before)
        due = set()
        for location, members in waiting.items():
            chosen = self._states_due(members, ended)
            due.update(i["instance_id"] for i in chosen)
            if location in wanted:
                # That location is read anyway (states from before): its finished instances fill the last batch's free places.
                taken = {i["instance_id"] for i in chosen}
                rest = [i for i in members if i["instance_id"] not in taken]
                chosen = chosen + rest[: (-(len(wanted[location]) + len(chosen))) % STATE_BATCH]
            if chosen:
                wanted.setdefault(location, []).extend(chosen)
        self.before_read.update(i["instance_id"] for i in before)
        self.state_asked.update(i["instance_id"] for members in wanted.values() for i in members)
        groups = {loc: [i["instance_id"] for i in members] for loc, members in wanted.items()}
        for outcome in fan_out(lambda loc: self._read_states(loc, groups[loc]), sorted(groups), self.options.get("max_workers", 8)):
            if outcome.ok:
                self.state_errors.pop(outcome.item, None)
                for instance_id, state in outcome.result.items():
                    self._take_state(instance_id, state)
            else:
                # Kept for the compliance note: a refused read (a policy without ssm:DescribeInstancePatchStates) must
                # not pass for an agent that never reported.
                self.state_errors[outcome.item] = describe_aws_error(outcome.error)
        for item in awaiting:
            instance_id = item["instance_id"]
            if instance_id not in due or not self.awaiting_compliance(instance_id):
                continue
            deadline = self._compliance_deadline(instance_id)
            if deadline is not None and now >= deadline:
                self.stale[instance_id] = "no patch state of this command reported within compliance_wait (%ss) after it ended" % self.options.get(
                    "compliance_wait", 300
                )
                read_error = self.state_errors.get((item["account_id"], item["region"]))
                if read_error:
                    self.stale[instance_id] += "; the patch states could not be read: %s" % read_error

    def _of_this_command(self, instance_id, state):
        """OperationEndTime at or after the command's RequestedDateTime: the state this command's operation left."""
        requested = self.batch.requested_at(instance_id)
        ended = aws_time(state.get("OperationEndTime"))
        return requested is not None and ended is not None and ended >= requested

    def _take_state(self, instance_id, state):
        if self._of_this_command(instance_id, state):
            if instance_id in self.batch.invocations:
                self.states[instance_id] = state
        else:
            self.before.setdefault(instance_id, state)

    def read_before(self, location, ids):
        """Patch states of instances about to be sent the patch (one call per 50): what 'rebooted' is measured against."""
        try:
            for instance_id, state in self._read_states(location, ids).items():
                self.before.setdefault(instance_id, state)
        except Exception:  # pylint: disable=broad-except  # then reboot may be reported 'unknown'; patching goes on
            pass

    def finish(self):
        """Post-checks for the instances that succeeded - only once nothing is pending (patch states included)."""
        if self.pending():
            return
        succeeded = [i for i in self.instances if self.status_of(i["instance_id"])[0] == "success"]
        if succeeded and self.options.get("post_checks") and not self.check_mode:
            checks = HealthChecks(
                self.fleet,
                self.options["post_checks"],
                self.run_id,
                "post-check wave=%s" % self.options["wave"],
                self.check_options(),
                self.aws_now,
                self.sleep,
            )
            if checks.enabled():
                self.post_checks = checks.run(succeeded)

    def result(self, item):
        instance_id = item["instance_id"]
        status, error = self.status_of(instance_id)
        command_id = self.batch.by_instance.get(instance_id, "")
        if status == "pending":
            # Only a progress return has pending instances, and the next call of the wave answers for them in full. The
            # whole entry, mostly empty, made the first progress return of a wave of 18,000 about 11 MB of JSON, which
            # the Ansible worker holds while the next call runs and the controller receives (its memory grows and stays).
            return {
                "instance_id": instance_id,
                "account_id": item["account_id"],
                "region": item["region"],
                "wave": self.options["wave"],
                "command_id": command_id,
                "patch_status": status,
                "error": error,
            }
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
            "plan": self.plans.get(instance_id, ""),
            # Not for a success: its output stays in SSM (and the S3 bucket or CloudWatch Logs when asked for); 600
            # characters each for thousands of successes would be most of a wave's result.
            "output": invocation_output(invocation) if invocation and status != "success" else "",
            "installed_count": state.get("InstalledCount"),
            "installed_other_count": state.get("InstalledOtherCount"),
            "installed_pending_reboot_count": state.get("InstalledPendingRebootCount"),
            "missing_count": state.get("MissingCount"),
            "failed_count": state.get("FailedCount"),
            "operation": state.get("Operation", self.options["operation"] if command_id else ""),
            "operation_end_time": str(state.get("OperationEndTime", "")),
            "reboot": reboot_of(self.options["operation"], state, self.before.get(instance_id)) if status == "success" else "",
            "compliance": compliance_of(state) if status == "success" else "",
            "compliance_note": self.stale.get(instance_id, "") if status == "success" else "",
            "pre_checks": self.pre_checks.get(instance_id, {}),
            "post_checks": self.post_checks.get(instance_id, {}),
        }

    def run(self, wait=True, progress_interval=0):
        self.start()
        self.wait(wait, progress_interval)
        self.finish()
        results = [self.result(item) for item in self.instances]
        self.persist()
        return results

    # -- the run cache (what the next progress call of this wave need not read again) ------------------------------

    def restore(self):
        """Take what an earlier call of this wave kept; anything unusable is ignored (then it is read from AWS, as without a cache)."""
        data = self.cache.load() if self.cache is not None else {}
        if not data:
            return
        try:
            since = {}
            for key, value in data.get("since", {}).items():
                account, region = key.split("/", 1)
                since[(account, region)] = float(value)
            before = {str(i): state_from_json(state) for i, state in data.get("before", {}).items()}
            before_read = {str(i) for i in data.get("before_read", [])}
            states = {str(i): state_from_json(state) for i, state in data.get("states", {}).items()}
            stale = {str(i): str(why) for i, why in data.get("stale", {}).items()}
            invocations = {
                str(command_id): {inv["InstanceId"]: inv for inv in map(invocation_from_json, found)}
                for command_id, found in data.get("invocations", {}).items()
            }
            commands = [dict(c, _location=tuple(c["_location"]), RequestedDateTime=float(c["RequestedDateTime"])) for c in data.get("commands", [])]
            if any(len(c["_location"]) != 2 for c in commands):
                raise ValueError("not a location")
        except (AttributeError, KeyError, TypeError, ValueError):
            return
        known = {i["instance_id"] for i in self.instances}
        for location, bound in since.items():
            if location in self.locations:
                self.since[location] = bound
                self.since_from_amis.add(location)
        self.before.update((i, state) for i, state in before.items() if i in known)
        self.before_read.update(before_read & known)
        self.cached_states.update((i, state) for i, state in states.items() if i in known)
        self.stale.update((i, why) for i, why in stale.items() if i in known)
        self.batch.known_invocations.update(invocations)
        self.cached_commands = commands

    def settle_from_cache(self):
        """Locations where nothing can change any more: every instance's command had finished and been read by an earlier call
        of this wave. Those commands are taken from the run cache and the location is not listed again (nothing is sent there:
        no instance of it waits for a command)."""
        by_place = {}
        for data in self.cached_commands:
            if data["_location"] in self.locations and self.batch.restorable(data):
                by_place.setdefault(data["_location"], []).append(data)
        for location, members in by_location(self.instances).items():
            commands = by_place.get(location) or []
            covered = {i for data in commands for i in data["InstanceIds"]}
            if commands and all(i["instance_id"] in covered for i in members):
                for data in commands:
                    self.batch.restore_finished(data)
                self.settled.add(location)

    def persist(self):
        """Keep what this call read for the next call of the wave; the call that leaves nothing pending removes the file."""
        if self.cache is None or self.check_mode:
            return
        if not self.pending():
            self.cache.remove()
            return
        states = dict(self.cached_states, **self.states)
        self.cache.save(
            {
                "since": {"%s/%s" % location: bound for location, bound in self.since.items() if location in self.since_from_amis},
                "before": {i: state_to_json(state) for i, state in self.before.items()},
                "before_read": sorted(self.before_read),
                "states": {i: state_to_json(state) for i, state in states.items()},
                "stale": dict(self.stale),
                "invocations": self.batch.finished_invocations(),
                "commands": self.batch.finished_commands(),
            }
        )


def wave_verdict(results, max_failure_rate, stopped=""):
    """Failure rate of the instances that were patched (skipped and never-sent ones do not count) and whether it stops the run.

    A wave whose error budget (max_errors) stopped its dispatching stops the run too, whatever its failure rate.
    """
    sent = [r for r in results if r["patch_status"] not in ("skipped", "not_run")]
    failed = [r for r in sent if r["patch_status"] in FAILURE_STATUSES or (r.get("post_checks") or {}).get("status") == "failed"]
    rate = round(100.0 * len(failed) / len(sent), 1) if sent else 0.0
    if stopped:
        reason = stopped
    elif rate > max_failure_rate:
        reason = "%d of %d patched instances failed (%s%% > %s%%)" % (len(failed), len(sent), rate, max_failure_rate)
    else:
        reason = ""
    return {"sent": len(sent), "failed": len(failed), "failure_rate": rate, "stop": bool(reason), "reason": reason}
