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
    every snapshot. Other instances are reported C(skipped) with the reason.
  - Waits for all invocations of the batch together (one paginated C(ListCommands) per account and region per poll round; per-instance
    details with C(ListCommandInvocations) once per finished command), then reads patch compliance with
    C(DescribeInstancePatchStates) (50 instances a call).
  - Optional O(pre_checks) (an unhealthy instance is not patched) and O(post_checks) (a patched instance must come back healthy) -
    SSM agent online, EC2 status checks C(ok), and a command of your own run through SSM.
  - B(Resumable) - every command's comment names the run and wave, so a second call with the same O(run_id) and O(wave) (after a progress
    return, Ctrl-C, an AWX cancel or a timeout) finds the commands already sent instead of sending them again.
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
    description: The run; it names the commands (for resuming) and must match the run ID of the verified backups.
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
    description: SendCommand C(MaxConcurrency) per command (a number or a percentage). A percentage scales with each chunk of up to 50.
    type: str
    default: "10%"
  max_errors:
    description: SendCommand C(MaxErrors) per command; once exceeded, SSM starts no further invocations of that command.
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
      - Seconds from the first command of this batch (as SSM recorded it) after which commands still running are cancelled and
        reported C(timed_out). A resumed batch keeps the deadline of its first command.
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
      - This run's commands are looked up from the UTC timestamp its O(run_id) starts with (C(YYYYmmddTHHMMSSZ), as the playbooks make
        them); for any other run ID, from this many hours back.
    type: int
    default: 168
  max_workers:
    description: How many accounts/regions are worked on at the same time.
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
      - Sends nothing; reports the commands (chunks and parameters) it would send.
      - A dry run has made no backups, so an instance without a verified backup yet is shown in the plan with a note that it waits for
        one; outside check mode such an instance is refused.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Per O(run_id) and O(wave) - a second call finds the commands of the first and sends nothing new.
notes:
  - "IAM permissions: C(ssm:SendCommand) on the documents and instances, C(ssm:ListCommands), C(ssm:ListCommandInvocations),
    C(ssm:CancelCommand), C(ssm:DescribeInstancePatchStates), C(ec2:DescribeImages) (the gate), and for checks
    C(ssm:DescribeInstanceInformation) and C(ec2:DescribeInstanceStatus)."
  - MaxConcurrency and MaxErrors apply per command, as in SSM; with more than 50 instances in one account and region there is more than
    one command.
"""

EXAMPLES = r"""
- name: Patch the instances whose backup was verified in this run
  cms.patching.ssm_patch_run:
    accounts: "{{ lz.config.accounts }}"
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
    run_id: "{{ run_id }}"
    instances: "{{ scan.instances | selectattr('target') | list }}"
    operation: Scan
    require_backup: false

- name: Show progress every minute while a long wave runs
  cms.patching.ssm_patch_run:
    accounts: "{{ lz.config.accounts }}"
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
  description: One entry per instance given, in order.
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
        - C(success), C(failed), C(timed_out), C(cancelled), C(undeliverable), C(skipped) (the gate, a pre-check, or check mode), or
          C(pending) (only when returning early for progress).
      type: str
      sample: success
    error:
      description: Why it did not succeed; for failures, the status details and the trimmed output of the patch step.
      type: str
    output:
      description: The trimmed output of the patch step.
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
      description: C(yes) (rebooted), C(no), or C(pending) (installed, waiting for a reboot).
      type: str
    compliance:
      description: C(COMPLIANT) when nothing is missing, failed or pending a reboot, else C(NON_COMPLIANT).
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
      description: Whether the failure rate exceeds O(max_failure_rate), so a wave-by-wave caller should stop.
      type: bool
  sample: {"sent": 16, "failed": 1, "failure_rate": 6.2, "stop": false}
progress:
  description: Where the wait stands, for progress displays; C(line) is a one-line summary.
  returned: always
  type: dict
planned:
  description: The SendCommand calls made (or, in check mode, that would be made) - account, region and instance IDs of each.
  returned: always
  type: list
  elements: dict
parameters:
  description: The AWS-RunPatchBaseline parameters sent.
  returned: always
  type: dict
  sample: {"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"], "SnapshotId": ["2f0c..."]}
api_calls:
  description: The AWS API calls this run made, per operation, with retries.
  returned: always
  type: dict
"""

import datetime
import time

from ansible_collections.cms.patching.plugins.module_utils import _patch
from ansible_collections.cms.patching.plugins.module_utils import _validate as v
from ansible_collections.cms.patching.plugins.module_utils._module import (
    build_fleet,
    common_problems,
    fail_on_problems,
    fleet_module,
    instance_problems,
    run_fleet_module,
)

CHECK_OPTIONS = dict(
    ssm_online=dict(type="bool", default=False),
    ec2_status=dict(type="bool", default=False),
    command=dict(type="str"),
    windows_command=dict(type="str"),
    timeout=dict(type="int", default=600),
)


def run_started(run_id, lookback_hours, now):
    """The run's start from its timestamp prefix; else now minus the lookback (commands are listed from then on)."""
    try:
        stamp = datetime.datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
        # A little slack: the run ID is made a moment before the first command.
        return stamp - 60
    except ValueError:
        return now - lookback_hours * 3600


def input_problems(params):
    problems = instance_problems(params["instances"], params["accounts"])
    checks = (
        ("max_concurrency", v.rate_error(params["max_concurrency"])),
        ("max_errors", v.rate_error(params["max_errors"], allow_zero=True)),
        ("snapshot_id", params["snapshot_id"] and v.uuid_error(params["snapshot_id"])),
        ("baseline_override", params["baseline_override"] and v.s3_url_error(params["baseline_override"])),
        ("install_override_list", params["install_override_list"] and v.s3_url_error(params["install_override_list"])),
    )
    problems.extend("%s: %s" % (key, error) for key, error in checks if error)
    if not 30 <= params["delivery_timeout"] <= 2592000:
        problems.append("delivery_timeout: must be between 30 and 2592000 seconds (the SendCommand TimeoutSeconds range)")
    for key in ("execution_timeout", "wait_timeout", "poll_interval", "max_workers"):
        if params[key] < 1:
            problems.append("%s: must be at least 1" % key)
    if not 0 <= params["max_failure_rate"] <= 100:
        problems.append("max_failure_rate: must be a percentage between 0 and 100")
    if params["output_s3_prefix"] and not params["output_s3_bucket"]:
        problems.append("output_s3_prefix: needs output_s3_bucket")
    return problems


def progress(results, run, elapsed, wave):
    """Counts of the final statuses, and a progress line that uses SSM's own per-command counts while invocations run."""
    counts = {}
    for item in results:
        counts[item["patch_status"]] = counts.get(item["patch_status"], 0) + 1
    targets, completed, errors = run.batch.counts()
    skipped = counts.get("skipped", 0)
    line = "patching wave %s round %d: %d done (%d failed), %d in progress, %d skipped of %d (%ds)" % (
        wave,
        run.rounds,
        completed,
        errors,
        targets - completed,
        skipped,
        len(results),
        elapsed,
    )
    return counts, {"phase": "patching", "wave": wave, "rounds": run.rounds, "elapsed": elapsed, "line": line}


def main():
    argument_spec = dict(
        instances=dict(type="list", elements="dict", required=True),
        run_id=dict(type="str", required=True),
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
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=10800),
        poll_interval=dict(type="int", default=30),
        progress_interval=dict(type="int", default=0),
        output_s3_bucket=dict(type="str"),
        output_s3_prefix=dict(type="str"),
        cloudwatch_output=dict(type="bool", default=False),
        comment=dict(type="str", default=""),
        require_backup=dict(type="bool", default=True),
        max_failure_rate=dict(type="int", default=0),
        pre_checks=dict(type="dict", default={}, options=CHECK_OPTIONS),
        post_checks=dict(type="dict", default={}, options=CHECK_OPTIONS),
        lookback_hours=dict(type="int", default=168),
        max_workers=dict(type="int", default=8),
    )
    module = fleet_module(argument_spec)
    params = module.params
    fail_on_problems(module, common_problems(params) + input_problems(params))
    fleet = build_fleet(module)
    started = time.time()

    def work():
        options = dict(params)
        options["run_started"] = run_started(params["run_id"], params["lookback_hours"], started)
        if params["comment"]:
            options["wave"] = "%s %s" % (params["wave"], params["comment"])
        run = _patch.PatchRun(fleet, [dict(i) for i in params["instances"]], params["run_id"], options, module.check_mode, time.time, time.sleep)
        results = run.run(wait=params["wait"], progress_interval=params["progress_interval"])
        for item in results:
            item["wave"] = params["wave"]
        counts, prog = progress(results, run, int(time.time() - started), params["wave"])
        return dict(
            changed=run.changed,
            run_id=params["run_id"],
            wave=params["wave"],
            instances=results,
            summary=counts,
            pending=counts.get("pending", 0),
            verdict=_patch.wave_verdict(results, params["max_failure_rate"]),
            progress=prog,
            planned=[{"account_id": loc[0], "region": loc[1], "instance_ids": ids} for loc, ids in run.planned],
            parameters=run.parameters(),
        )

    run_fleet_module(module, fleet, work)


if __name__ == "__main__":
    main()
