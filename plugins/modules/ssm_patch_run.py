#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: ssm_patch_run
short_description: Run AWS-RunPatchBaseline on a batch of instances through SSM Run Command, only behind a verified backup
version_added: 0.1.0
description:
  - Sends C(AWS-RunPatchBaseline) to a batch of instances (typically one wave) with C(InstanceIds) in chunks of at most 50 (the API
    limit) per account and region, concurrently across accounts and regions; never C(Targets) by tag.
  - B(The backup gate) - unless O(require_backup=false), an instance is patched only when an C(available) AMI of it from this
    O(run_id) carries the C(cms:patching:verified-at) tag that M(cms.patching.ami_backup_verified) sets after verifying the image and
    every snapshot. Other instances are reported C(skipped) with the reason. Each call reads the gate (one C(DescribeImages) per account
    and region) where it may send - in the accounts and regions with instances that no listing shows a command for - before sending;
    a call whose instances were all sent already reads none.
  - B(Rate control is the wave's) - O(max_concurrency) and O(max_errors) count across every account, region and command of the
    batch. Each poll round lists the commands (one paginated C(ListCommands) per account and region), reads finished ones
    (C(ListCommandInvocations) with details, once per command), then dispatches into the free slots - at most one C(SendCommand) per
    account and region, up to 50 IDs, with C(MaxConcurrency) = its number of instances, so SSM starts them at once and no instance waits
    inside a command past its delivery timeout. Once O(max_errors) invocations have failed, nothing more is sent, invocations sent
    but not started are cancelled, and the instances never sent are reported C(not_run) with the reason. SSM's per-command
    C(MaxConcurrency)/C(MaxErrors) remain a second line of defence.
  - B(At most one patch per instance per run) - right before sending, the same round's C(ListCommands) must have answered for that
    account and region and show no C(AWS-RunPatchBaseline) command of this run and landing zone (any wave) for the instance. A round
    whose listing fails changes no status and sends nothing there. C(SendCommand) is never blindly retried - after a server error or
    a broken connection the instances stay blocked until a later listing shows whether the command went out. Health-check commands
    follow the same rule, once per instance per check round.
  - C(SendCommand) rejected with C(InvalidInstanceId) (one invalid ID rejects all 50) - the module asks C(DescribeInstanceProperties)
    (one call for the chunk) which instances SSM cannot reach, reports them C(undeliverable) with the reason, and sends the rest.
  - Patch compliance and C(reboot) come from C(DescribeInstancePatchStates) (50 instances a call, in the same rounds) - only a state
    whose C(OperationEndTime) is at or after the command's C(RequestedDateTime) counts; the module waits up to O(compliance_wait) for
    it, else reports compliance C(stale). Never from the command's output, which SSM cuts at 2,500 characters. While the wave runs,
    the states of finished instances are read in full batches of 50 per account and region; once nothing of the wave can still end,
    the rest every round. An instance is reported C(stale) only after a read made once its O(compliance_wait) has passed.
  - B(AWS's clock) - every comparison with an AWS timestamp (deadlines, the look-up of earlier commands) uses AWS's own time (the
    C(Date) of its answers), never the controller's clock.
  - Optional O(pre_checks) (an unhealthy instance is not patched) and O(post_checks) (a patched instance must come back healthy) -
    SSM agent online, EC2 status checks C(ok), and a command of your own run through SSM.
  - B(Resumable) - every command's comment is C(cms.patching run=<run_id> lz=<lz> wave=<wave>), so a second call with the same O(run_id)
    and O(wave) (after a progress return, Ctrl-C, an AWX cancel or a timeout) finds the commands already sent instead of sending them
    again. Commands are listed from one hour before the earliest C(CreationDate) of the batch's verified AMIs (both AWS timestamps);
    a run ID whose commands carry another landing zone fails before anything is sent.
  - B(Run cache) - each call of a wave is a new process, so what a call read and the next call would read again (the command look-up's
    start per account and region, the patch states from before and after the patch, the finished commands and their invocations -
    an account and region whose commands have all finished is not listed again) is kept
    on the controller in a file of that landing zone, run and wave, mode 0600 in the 0700 directory
    C(${XDG_CACHE_HOME:-~/.cache}/cms-patching/runs/), replaced atomically and removed by the call that leaves nothing pending (files
    older than 14 days are removed too). A missing, unreadable or corrupt file only means more reads. Nothing that allows a send
    comes from it - the gate and the listing of commands are read from AWS in the call that sends. Not written in check mode.
author:
  - CMS Platform Engineering (@cms-platform)
options:
  instances:
    description:
      - The instances to patch, as M(cms.patching.ec2_patch_scan) returns them; each needs C(instance_id), C(account_id) and C(region),
        C(platform) (C(linux) or C(windows)) selects the health command; other keys are ignored.
    type: list
    elements: dict
    required: true
  run_id:
    description:
      - The run; it names the commands (for resuming) and must match the run ID of the verified backups.
      - A run ID that starts with a UTC timestamp (C(YYYYmmddTHHMMSSZ), as the playbooks make them) more than 15 minutes ahead of AWS's
        clock is refused - a run ID is made when its run starts.
    type: str
    required: true
  lz:
    description:
      - The landing zone's name (as on its AMIs' C(cms:patching:lz) tag). It is part of every command's comment; the backup gate
        requires an AMI of this landing zone, and a run ID whose commands belong to another landing zone fails.
      - The comment C(cms.patching run=<run_id> lz=<lz> post-check wave=<wave> windows) must fit SendCommand's 100 characters.
    type: str
    required: true
  wave:
    description: The name of this batch, part of each command's comment. A wave is resumed by its name.
    type: str
    default: all
  operation:
    description: C(Install) patches; C(Scan) only reports what is missing (the dry run SSM users know).
    type: str
    choices: [Scan, Install]
    required: true
  reboot_option:
    description: C(RebootIfNeeded) reboots when anything was installed; C(NoReboot) leaves the instance non-compliant until a reboot.
    type: str
    choices: [RebootIfNeeded, NoReboot]
    default: RebootIfNeeded
  baseline_override:
    description: An S3 or HTTPS URL of a patch baseline override file.
    type: str
  install_override_list:
    description: An S3 or HTTPS URL of a list of patches to install instead of the baseline's (Install only).
    type: str
  snapshot_id:
    description:
      - The patch snapshot ID (a UUID). Instances given the same snapshot ID get the same approved patch set, as AWS advises for runs
        outside a maintenance window.
      - Defaults to a UUID derived from O(run_id), so every wave of a run (and a resumed run) uses the same one.
    type: str
  max_concurrency:
    description:
      - How many instances of the batch (the wave) may be patching at once, across every account, region and command - a number, or a
        percentage of the batch's instances (rounded down, at least 1). An invocation holds its slot from sending until it ends,
        including while SSM keeps it C(Delayed) because the instance is offline or stopped.
    type: str
    default: "10%"
  max_errors:
    description:
      - How many invocations of the batch may fail (C(Failed) or timed out while running, as SSM's C(ErrorCount) counts them) before
        the module stops dispatching - a number, or a percentage of the batch's instances (rounded down). Dispatching stops when that
        many have failed (V(0) - at the first failure); invocations sent but not started are cancelled, instances not sent are
        C(not_run). At most O(max_errors) plus the invocations already running when the last one failed can fail.
    type: str
    default: "0"
  delivery_timeout:
    description: SendCommand C(TimeoutSeconds) - how long SSM tries to deliver to an instance before giving up.
    type: int
    default: 600
  execution_timeout:
    description:
      - Seconds after delivery an instance may spend patching. AWS-RunPatchBaseline has no execution timeout parameter of its own (its
        steps stop at 7,200 s), so the module enforces this one - a command still running past C(delivery_timeout + execution_timeout)
        is cancelled and its instances are reported C(timed_out).
    type: int
    default: 7200
  wait:
    description: Wait for the commands to finish. With V(false) the module returns after sending.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds from the first command of this batch (as SSM recorded it, compared with AWS's clock) after which commands still running
        are cancelled and reported C(timed_out) (C(undeliverable) when they never started), and instances still waiting for a slot are
        reported C(not_run). A resumed batch keeps the deadline of its first command.
    type: int
    default: 10800
  poll_interval:
    description: Seconds between poll rounds.
    type: int
    default: 30
  progress_interval:
    description:
      - When greater than 0 and commands are still running after this many seconds, return with RV(pending) > 0, so a playbook can show
        progress and call again with the same arguments (an C(until) loop); the next call resumes.
    type: int
    default: 0
  output_s3_bucket:
    description: An S3 bucket for the full command output.
    type: str
  output_s3_prefix:
    description: A key prefix in O(output_s3_bucket).
    type: str
  cloudwatch_output:
    description: Send the command output to CloudWatch Logs too.
    type: bool
    default: false
  comment:
    description: Text added to each command's comment after the run and wave (the comment is cut to 100 characters).
    type: str
    default: ""
  require_backup:
    description: Refuse instances without a verified backup in this run. Set to V(false) only on purpose (for example for O(operation=Scan)).
    type: bool
    default: true
  max_failure_rate:
    description: The share (percent) of the batch's patched instances that may fail before RV(verdict.stop) is true.
    type: int
    default: 0
  pre_checks:
    description:
      - Checks before patching, one round (health is what it is); an instance that fails them is skipped (not patched) with the reason.
    type: dict
    default: {}
    suboptions: &checks
      ssm_online:
        description: The SSM agent's ping status must be C(Online).
        type: bool
        default: false
      ec2_status:
        description: The EC2 system and instance status checks must be C(ok).
        type: bool
        default: false
      command:
        description:
          - A shell command run on Linux instances through C(AWS-RunShellScript); it must exit 0.
          - It runs as C(root) on every instance it checks (the SSM agent's user), so whoever can set it - in the playbooks, whoever can
            edit C(inventories/<lz>/) - can run any command as root on the fleet. Protect that directory like production credentials.
          - Needs C(ssm:SendCommand) on C(AWS-RunShellScript); without a command that permission is not needed.
        type: str
      windows_command:
        description:
          - A PowerShell command run on Windows instances through C(AWS-RunPowerShellScript); it must succeed.
          - It runs as C(SYSTEM) on every instance it checks, so whoever can set it - in the playbooks, whoever can edit
            C(inventories/<lz>/) - can run any command as SYSTEM on the fleet. Protect that directory like production credentials.
          - Needs C(ssm:SendCommand) on C(AWS-RunPowerShellScript); without a command that permission is not needed.
        type: str
      timeout:
        description:
          - Seconds the checks may take. After patching, the read-only checks are repeated until they pass within this time (agents
            reconnect and status checks settle some time after a reboot).
        type: int
        default: 600
  post_checks:
    description: Checks after patching, on the instances that succeeded; a failure is reported per instance and counts as a failure of the wave.
    type: dict
    default: {}
    suboptions: *checks
  lookback_hours:
    description:
      - Without verified AMIs to date the batch from (O(require_backup=false)), this run's commands are looked up from this many hours
        before AWS's current time.
    type: int
    default: 168
  compliance_wait:
    description:
      - Seconds after an invocation ended (AWS time) to wait for the instance's patch state of this command (C(OperationEndTime) at or
        after the command's C(RequestedDateTime)) - the agent reports it some time after the command. Then compliance is C(stale).
    type: int
    default: 300
  max_workers:
    description:
      - How many accounts/regions are worked on at the same time - listed, read, and sent to (each round's sends go to the
        accounts/regions at once, after the wave's free slots were shared out among them).
    type: int
    default: 8
extends_documentation_fragment:
  - cms.patching.fleet
  - cms.patching.attributes
  - cms.patching.attributes.ACTIONGROUP_AWS
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    details:
      - Sends nothing; reports the commands (chunks and parameters) it would send, and per instance a RV(instances[].plan) (the
        status stays C(skipped), the error empty).
      - A dry run has made no backups, so an instance without a verified backup yet is shown in the plan with a note that it waits for
        one; outside check mode such an instance is refused.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Per O(run_id) and O(wave) - a second call finds the commands of the first and sends nothing new.
notes:
  - "The result's C(invocation.module_args) (what C(-vvv) shows of the arguments) lists each entry of O(instances) by its C(instance_id),
    C(account_id) and C(region) only: a whole batch would come back in every result, a second copy of the arguments in the worker
    and the controller at fleet size."
  - "IAM permissions: C(ssm:SendCommand) on the documents and instances, C(ssm:ListCommands), C(ssm:ListCommandInvocations),
    C(ssm:CancelCommand), C(ssm:DescribeInstancePatchStates), C(ec2:DescribeImages) (the gate), C(ssm:DescribeInstanceProperties)
    and C(ec2:DescribeInstances) (which instances a C(InvalidInstanceId) refusal was about), and for checks
    C(ec2:DescribeInstanceStatus) (C(ssm_online) reads C(ssm:DescribeInstanceProperties), one call per account/region for up to 1,000
    instances). Where C(ssm:DescribeInstanceProperties) is refused, C(ssm:DescribeInstanceInformation) (50 instances a call) is used
    instead and the module result carries one warning naming the accounts/regions."
  - O(max_concurrency) and O(max_errors) apply to the whole batch (wave), not per command as SSM's own parameters do; an offline
    target holds its slot while SSM keeps it C(Delayed) (up to C(delivery_timeout) + C(execution_timeout)), so use O(pre_checks)
    (C(ssm_online)) to keep such instances out of a wave with few slots.
  - The batch is the O(instances) of this call. Jobs of one run that share a wave name - the slices of an AWX sliced job template - each
    count only the commands aimed at their own instances in O(max_concurrency) and O(max_errors); another job's commands of the run
    still keep their instances from being sent a second patch.
"""

EXAMPLES = r"""
- name: Patch the instances whose backup was verified in this run
  cms.patching.ssm_patch_run:
    accounts: "{{ lz.config.accounts }}"
    lz: prod
    run_id: "{{ run_id }}"
    wave: canary
    instances: "{{ backup.instances | selectattr('backup_status', 'eq', 'verified') | list }}"
    operation: Install
    max_concurrency: "10%"
    max_errors: "10%"
    post_checks:
      ssm_online: true
      ec2_status: true
      command: curl -fsS http://localhost/health
  register: patch

- name: Scan only (no backup needed, nothing installed)
  cms.patching.ssm_patch_run:
    accounts: "{{ lz.config.accounts }}"
    lz: prod
    run_id: "{{ run_id }}"
    instances: "{{ scan.instances | selectattr('target') | list }}"
    operation: Scan
    require_backup: false

- name: Show progress every minute while a long wave runs
  cms.patching.ssm_patch_run:
    accounts: "{{ lz.config.accounts }}"
    lz: prod
    run_id: "{{ run_id }}"
    wave: rest
    instances: "{{ wave_instances }}"
    operation: Install
    progress_interval: 60
  register: patch
  until: patch is failed or patch.pending == 0
  retries: 240
  delay: 0
"""

RETURN = r"""
instances:
  description:
    - One entry per instance given, in order.
    - An instance still C(pending) (only in a progress return, see O(progress_interval)) has only RV(instances[].instance_id),
      RV(instances[].account_id), RV(instances[].region), RV(instances[].wave), RV(instances[].command_id), RV(instances[].patch_status)
      and RV(instances[].error); the call that ends the wave returns every field for it. In a wave of thousands, the whole entry
      of each pending instance would make every progress return as large as the final one.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance.
      type: str
    account_id:
      description: Its account.
      type: str
    region:
      description: Its region.
      type: str
    name:
      description: Its name, as given.
      type: str
    platform:
      description: Its platform, as given.
      type: str
    wave:
      description: The wave.
      type: str
    command_id:
      description: The SSM command that patched it (empty when none was sent).
      type: str
    patch_status:
      description:
        - C(success), C(failed), C(timed_out), C(cancelled) (also sent but not started when the error budget was spent),
          C(undeliverable) (SSM could not reach it - C(InvalidInstanceId), or never started before the deadline), C(not_run) (never sent
          - the wave's error budget was spent or its wait_timeout ran out first), C(skipped) (the gate, a pre-check, an earlier patch
          command of this run in another wave, or check mode), or C(pending) (only when returning early for progress; also while a
          patched instance's patch state has not been reported or read yet - while the wave runs, states are read 50 at a time).
      type: str
      sample: success
    error:
      description: Why it did not succeed; for failures, the status details and the trimmed output of the patch step. Empty in check mode.
      type: str
    plan:
      description: In check mode, what would be done (C(would send AWS-RunPatchBaseline in command 1 of 2 ...)); empty otherwise.
      type: str
    output:
      description:
        - The trimmed output of the patch step, for an instance that did not succeed (its RV(instances[].error) has it too).
        - Empty for a success. Its output stays in SSM (C(GetCommandInvocation)), and in the S3 bucket or CloudWatch Logs when
          O(output_s3_bucket) or O(cloudwatch_output) ask for it.
      type: str
    installed_count:
      description: C(InstalledCount) of the instance's patch state after the operation.
      type: int
    installed_other_count:
      description: C(InstalledOtherCount).
      type: int
    installed_pending_reboot_count:
      description: C(InstalledPendingRebootCount).
      type: int
    missing_count:
      description: C(MissingCount).
      type: int
    failed_count:
      description: C(FailedCount).
      type: int
    operation:
      description: The patch state's operation (C(Scan) or C(Install)).
      type: str
    operation_end_time:
      description: When the patch operation ended.
      type: str
    reboot:
      description:
        - From patch states only. C(pending) - C(InstalledPendingRebootCount) > 0 after the operation; C(no) - a Scan, C(NoReboot), or
          C(RebootIfNeeded) with no more patches installed than before and no reboot pending before; C(yes) - C(RebootIfNeeded) and
          more patches installed than before (C(InstalledCount) + C(InstalledOtherCount)) or a reboot pending before (Patch Manager
          reboots in exactly these cases); C(unknown) - no patch state of this command, or none from before it (never scanned, or the
          module resumed after the operation ended without the wave's run cache).
        - The state from before is read once, right before the instance is sent the patch, and kept for the wave's later calls in the
          run cache (see the description), so a progress return does not turn C(reboot) into C(unknown).
      type: str
    compliance:
      description:
        - C(COMPLIANT) when nothing is missing, failed or pending a reboot, else C(NON_COMPLIANT) - from the patch state of this command;
          C(stale) when none was reported within O(compliance_wait) (the counts are then empty).
      type: str
    compliance_note:
      description: Why compliance is C(stale).
      type: str
    pre_checks:
      description: The pre-check result (C(status) C(passed)/C(failed), C(reason)), when pre-checks ran.
      type: dict
    post_checks:
      description: The post-check result (C(status) C(passed)/C(failed), C(reason)), when post-checks ran.
      type: dict
summary:
  description: Counts of RV(instances[].patch_status).
  returned: always
  type: dict
  sample: {"success": 15, "failed": 1, "skipped": 1}
pending:
  description: How many instances are still being patched; non-zero only when O(progress_interval) made the call return early.
  returned: always
  type: int
verdict:
  description: The batch's failure rate among patched instances (post-check failures count) and whether it exceeds O(max_failure_rate).
  returned: always
  type: dict
  contains:
    sent:
      description: Instances a command was sent to (skipped ones do not count).
      type: int
    failed:
      description: Of those, the ones that failed, timed out, were cancelled or undeliverable, or failed their post-checks.
      type: int
    failure_rate:
      description: The failed share in percent.
      type: float
    stop:
      description:
        - Whether the failure rate exceeds O(max_failure_rate) or the error budget (O(max_errors)) stopped dispatching, so a wave-by-wave
          caller should stop.
      type: bool
    reason:
      description: Why RV(verdict.stop) is true; empty otherwise.
      type: str
  sample: {"sent": 16, "failed": 1, "failure_rate": 6.2, "stop": false, "reason": ""}
progress:
  description:
    - Where the wait stands, for progress displays; C(line) is a one-line summary. C(in_flight) counts invocations sent and not ended
      (running, C(Pending) or C(Delayed)), C(queued) the instances waiting for a free slot, C(max_concurrency) and C(error_budget) the
      wave's limits as numbers.
  returned: always
  type: dict
planned:
  description:
    - The SendCommand calls this call made - account, region and instance IDs of each. In check mode the commands (up to 50 IDs per
      account and region) that would be sent as slots free up.
  returned: always
  type: list
  elements: dict
parameters:
  description: The AWS-RunPatchBaseline parameters sent.
  returned: always
  type: dict
  sample: {"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"], "SnapshotId": ["2f0c..."]}
cancelled:
  description:
    - V(true) when the run was cancelled and the module stopped between two AWS calls, making no further call. A run is cancelled when a
      SIGINT, SIGTERM or SIGHUP reaches the module or when its controller (C(ansible-playbook)) exits, which is what a Ctrl-C or an
      AWX / ansible-runner cancel amounts to (ansible-core runs modules in their own session, so the controller's signal never reaches them).
    - The module then fails; C(msg) starts with C(cancelled) and names the reason (the signal received, or the controller process that exited),
      and the result has RV(api_calls). The other keys are missing when the cancel stopped the work mid-way; a resumed run with the same run ID finds
      and adopts what this one had made.
  returned: when the run was cancelled
  type: bool
  sample: true
api_calls:
  description: The AWS API calls this run made, per operation, with retries.
  returned: always
  type: dict
"""

import time

from ansible_collections.cms.patching.plugins.module_utils import _cancel, _module, _patch, _runcache
from ansible_collections.cms.patching.plugins.module_utils import _validate as v
from ansible_collections.cms.patching.plugins.module_utils._runcommand import COMMENT_MAX, comment_for


def argument_spec():
    return dict(
        _module.round_options(wait_timeout=10800, poll_interval=30),
        instances=dict(type="list", elements="dict", required=True),
        run_id=dict(type="str", required=True),
        lz=dict(type="str", required=True),
        wave=dict(type="str", default="all"),
        operation=dict(type="str", choices=["Scan", "Install"], required=True),
        reboot_option=dict(type="str", choices=["RebootIfNeeded", "NoReboot"], default="RebootIfNeeded"),
        baseline_override=dict(type="str"),
        install_override_list=dict(type="str"),
        snapshot_id=dict(type="str"),
        max_concurrency=dict(type="str", default="10%"),
        max_errors=dict(type="str", default="0"),
        delivery_timeout=dict(type="int", default=600),
        execution_timeout=dict(type="int", default=7200),
        output_s3_bucket=dict(type="str"),
        output_s3_prefix=dict(type="str"),
        cloudwatch_output=dict(type="bool", default=False),
        comment=dict(type="str", default=""),
        require_backup=dict(type="bool", default=True),
        max_failure_rate=dict(type="int", default=0),
        pre_checks=dict(type="dict", default={}, options=_module.CHECK_OPTIONS),
        post_checks=dict(type="dict", default={}, options=_module.CHECK_OPTIONS),
        lookback_hours=dict(type="int", default=168),
        compliance_wait=dict(type="int", default=300),
    )


def comment_problems(params):
    """Every command's comment (run, landing zone, label) must fit SendCommand's 100 characters whole: a cut label could match another's."""
    if not params["lz"] or any(c.isspace() or c == "/" for c in params["lz"]):
        return ["lz: the landing zone's name, without spaces or '/' (it is part of every command's comment)"]
    wave = "%s %s" % (params["wave"], params["comment"]) if params["comment"] else params["wave"]
    longest = comment_for(params["run_id"], params["lz"], "post-check wave=%s windows" % wave)
    full = "cms.patching run=%s lz=%s post-check wave=%s windows" % (params["run_id"], params["lz"], wave)
    if longest != full:
        return [
            "wave/comment: the command comment 'cms.patching run=<run_id> lz=<lz> post-check wave=<wave> windows' would be %d characters; "
            "SendCommand allows %d - shorten the wave name or the comment" % (len(full), COMMENT_MAX)
        ]
    return []


def input_problems(params):
    problems = _module.instance_problems(params["instances"], params["accounts"])
    checks = (
        ("max_concurrency", v.rate_error(params["max_concurrency"])),
        ("max_errors", v.rate_error(params["max_errors"], allow_zero=True)),
        ("snapshot_id", params["snapshot_id"] and v.uuid_error(params["snapshot_id"])),
        ("baseline_override", params["baseline_override"] and v.s3_url_error(params["baseline_override"])),
        ("install_override_list", params["install_override_list"] and v.s3_url_error(params["install_override_list"])),
    )
    problems.extend("%s: %s" % (key, error) for key, error in checks if error)
    problems.extend(comment_problems(params))
    if not 30 <= params["delivery_timeout"] <= 2592000:
        problems.append("delivery_timeout: must be between 30 and 2592000 seconds (the SendCommand TimeoutSeconds range)")
    if params["compliance_wait"] < 0:
        problems.append("compliance_wait: must be 0 or more seconds")
    problems.extend(_module.at_least_one(params, ("execution_timeout", "wait_timeout", "poll_interval", "max_workers")))
    if not 0 <= params["max_failure_rate"] <= 100:
        problems.append("max_failure_rate: must be a percentage between 0 and 100")
    if params["output_s3_prefix"] and not params["output_s3_bucket"]:
        problems.append("output_s3_prefix: needs output_s3_bucket")
    return problems


def progress(results, run, elapsed, wave):
    """Counts of the statuses, and a progress line: sent, done, failed, in flight (running, Pending or Delayed), queued for a slot."""
    counts = _module.count_statuses(results, "patch_status")
    targets, completed, errors = run.batch.counts()
    in_flight = run.batch.in_flight()
    line = "patching wave %s round %d: %d done (%d failed), %d in flight (of at most %d), %d waiting for a slot, %d skipped, %d not run of %d (%ds)" % (
        wave,
        run.rounds,
        completed,
        errors,
        in_flight,
        run.concurrency,
        len(run.queue),
        counts.get("skipped", 0),
        counts.get("not_run", 0),
        len(results),
        elapsed,
    )
    return counts, {
        "phase": "patching",
        "wave": wave,
        "rounds": run.rounds,
        "elapsed": elapsed,
        "sent": targets,
        "completed": completed,
        "failed": errors,
        "in_flight": in_flight,
        "queued": len(run.queue),
        "max_concurrency": run.concurrency,
        "error_budget": run.error_budget,
        "line": line,
    }


def work(module, fleet):
    started = time.monotonic()
    params = module.params
    options = dict(params)
    if params["comment"]:
        options["wave"] = "%s %s" % (params["wave"], params["comment"])
    # The controller's clock only measures its own waits (progress_interval, check timeouts); everything compared
    # with AWS timestamps uses AWS's clock (fleet.server_clock).
    # What this wave's earlier progress calls read (see _runcache): a cache of reads, never what allows a send.
    cache = None if module.check_mode else _runcache.RunCache(params["lz"], params["run_id"], options["wave"])
    run = _patch.PatchRun(
        fleet, [dict(i) for i in params["instances"]], params["run_id"], options, module.check_mode, time.monotonic, _cancel.sleep, cache=cache
    )
    results = run.run(wait=params["wait"], progress_interval=params["progress_interval"])
    for item in results:
        item["wave"] = params["wave"]
    counts, prog = progress(results, run, int(time.monotonic() - started), params["wave"])
    return dict(
        changed=run.changed,
        run_id=params["run_id"],
        wave=params["wave"],
        instances=results,
        summary=counts,
        pending=counts.get("pending", 0),
        verdict=_patch.wave_verdict(results, params["max_failure_rate"], run.stopped),
        progress=prog,
        planned=[{"account_id": loc[0], "region": loc[1], "instance_ids": ids} for loc, ids in run.planned],
        parameters=run.parameters(),
    )


def main():
    _module.run_module(argument_spec(), input_problems, work)


if __name__ == "__main__":
    main()
