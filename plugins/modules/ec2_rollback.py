#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: ec2_rollback
short_description: Roll instances back to their verified pre-patch AMI of a run - every EBS volume, same instance
version_added: 0.2.0
description:
  - Puts each instance back on the AMI that M(cms.patching.ami_backup_verified) made of it in O(run_id). The instance keeps its ID,
    network interfaces, IP addresses and tags; each EBS volume the AMI covers is replaced by a volume restored from the AMI's
    snapshot of the same device.
  - B(Gate) - only an AMI of O(run_id) tagged for that instance, in its account and region, C(available), tagged
    C(cms:patching:verified-at), whose snapshots are all C(completed) and which covers the root device. Otherwise the instance is
    not touched and RV(instances[].error) says why (RV(instances[].rollback_status=skipped)).
  - B(Data volumes) first - C(CreateVolume) from the snapshot in the instance's Availability Zone with the current volume's type, size
    (at least the snapshot's), IOPS, throughput, encryption and KMS key, tagged C(cms:patching:restored-by-rollback=<run_id>). A
    failure here leaves the instance untouched.
  - B(Root volume) next - C(CreateReplaceRootVolumeTask) with the AMI's C(ImageId) and a C(ClientToken) derived from the run ID and
    the instance (the instance must be C(running); EC2 reboots it). A failed task leaves the original root volume attached.
  - B(Swap) last, only for an instance with data volumes - the instance is stopped, the old data volumes detached, the restored ones
    attached at the same devices, the instance started. If a restored volume will not attach, the old one is put back on its
    device and the instance is left stopped and startable.
  - The replaced volumes are B(never deleted) - they are tagged C(cms:patching:original-of-rollback=<run_id>) before anything
    changes and C(cms:patching:replaced-by-rollback=<run_id>) plus C(cms:patching:replaced-at) once replaced, for a person to
    inspect and delete. Volumes the AMI does not cover (attached after the backup) stay attached and are listed in
    RV(instances[].left_attached).
  - B(Resumable) - everything is found again from AWS (tags, tasks, attachments); a second call with the same O(run_id) continues
    where the first stopped, never starts a second task or creates a second volume, and recognises an instance already rolled back.
  - Each poll round costs one C(DescribeInstances), one C(DescribeVolumes) and one C(DescribeReplaceRootVolumeTasks) per account and
    region for the whole batch.
  - O(post_checks) - the checks of the patching phase (SSM online, EC2 status, your command) confirm each instance is back.
author:
  - CMS Platform Engineering (@cms-platform)
options:
  instances:
    description:
      - The instances to roll back, as M(cms.patching.ec2_patch_scan) returns them; each needs C(instance_id), C(account_id) and
        C(region); C(name) names the restored volumes, C(platform) (C(linux) or C(windows)) selects the health command.
    type: list
    elements: dict
    required: true
  run_id:
    description: The run whose verified pre-patch AMIs the instances go back to.
    type: str
    required: true
  max_concurrent:
    description: How many instances are being rolled back at once in each account and region.
    type: int
    default: 5
  wait:
    description: Wait until every rollback has finished. With V(false) the module returns after one round (call again to continue).
    type: bool
    default: true
  wait_timeout:
    description: Seconds after which the instances still being rolled back are reported C(failed), with the step they were at.
    type: int
    default: 3600
  poll_interval:
    description: Seconds between poll rounds.
    type: int
    default: 15
  progress_interval:
    description:
      - When greater than 0 and rollbacks are still running after this many seconds, return with RV(pending) > 0 instead of waiting
        on, so a playbook can show progress and call again (C(until) loop); the next call resumes from AWS's state.
    type: int
    default: 0
  post_checks:
    description: Checks after the rollback, on the instances rolled back; a failure makes the instance's rollback C(failed).
    type: dict
    default: {}
    suboptions:
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
          - A shell command run on Linux instances through C(AWS-RunShellScript) as root; it must exit 0.
          - Whoever can set it can run any command as root on the instances; see the README's trust boundary.
        type: str
      windows_command:
        description: A PowerShell command run on Windows instances through C(AWS-RunPowerShellScript) as SYSTEM; it must exit 0.
        type: str
      timeout:
        description: Seconds the checks may take to pass.
        type: int
        default: 600
  rescan:
    description:
      - After the rollback, run C(AWS-RunPatchBaseline) with C(Operation=Scan) on the instances rolled back, so SSM's patch compliance
        describes the restored machine. SSM otherwise shows what the agent last reported - the patched state - until the next scan.
      - Needs C(ssm:SendCommand) on C(AWS-RunPatchBaseline), C(ssm:ListCommands) and C(ssm:ListCommandInvocations).
    type: bool
    default: false
  max_workers:
    description: How many accounts/regions (and instances' actions) are worked on at the same time.
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
    details: Reads only; reports per instance the AMI and every volume it would replace (device, current volume, snapshot, size, type, encryption).
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Per O(run_id) - an instance already rolled back for that run is recognised and left alone.
notes:
  - "The result's C(invocation.module_args) (what C(-vvv) shows of the arguments) lists each entry of O(instances) by its C(instance_id),
    C(account_id) and C(region) only: a whole batch would come back in every result, a second copy of the arguments in the worker
    and the controller at fleet size."
  - "IAM permissions: C(ec2:DescribeImages), C(ec2:DescribeSnapshots), C(ec2:DescribeInstances), C(ec2:DescribeVolumes),
    C(ec2:DescribeReplaceRootVolumeTasks), C(ec2:CreateReplaceRootVolumeTask), C(ec2:CreateVolume), C(ec2:CreateTags),
    C(ec2:StopInstances), C(ec2:StartInstances), C(ec2:AttachVolume), C(ec2:DetachVolume); with encrypted volumes the KMS key's
    C(kms:CreateGrant), C(kms:Decrypt), C(kms:GenerateDataKeyWithoutPlaintext), C(kms:ReEncrypt*), C(kms:DescribeKey); for
    O(post_checks) the permissions of M(cms.patching.ssm_patch_run)'s checks; for O(rescan) C(ssm:SendCommand) on
    C(AWS-RunPatchBaseline), C(ssm:ListCommands), C(ssm:ListCommandInvocations)."
  - Patch compliance in SSM is what the agent last reported; after a rollback it still shows the patched state until the next
    C(AWS-RunPatchBaseline) Scan (O(rescan) runs one).
"""

EXAMPLES = r"""
- name: Roll two instances back to their verified AMI of a run
  cms.patching.ec2_rollback:
    accounts: "{{ lz.config.accounts }}"
    run_id: 20261201T090000Z-ab12
    instances:
      - {instance_id: i-0123456789abcdef0, account_id: "123456789012", region: eu-west-1}
      - {instance_id: i-0fedcba9876543210, account_id: "123456789012", region: eu-west-1, platform: windows}
    post_checks:
      ssm_online: true
      ec2_status: true
  register: rollback

- name: What would be replaced, without changing anything
  cms.patching.ec2_rollback:
    accounts: "{{ lz.config.accounts }}"
    run_id: "{{ run_id }}"
    instances: "{{ wave_instances }}"
  check_mode: true
"""

RETURN = r"""
run_id:
  description: The run rolled back to.
  returned: always
  type: str
instances:
  description: One entry per instance, in the order given (grouped by account and region).
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
      description: Its name.
      type: str
    ami_id:
      description: The AMI it goes back to (empty when none passed the gate).
      type: str
    rollback_status:
      description: C(rolled_back), C(failed), C(skipped) (the gate refused, or check mode), or C(pending) (only when returning early for progress).
      type: str
      sample: rolled_back
    rollback_volumes:
      description: Per device, the volume that was there and the restored volume now attached.
      type: list
      elements: dict
      sample: [{"device": "/dev/xvda", "old_volume_id": "vol-0aa", "new_volume_id": "vol-0bb"}]
    rollback_volumes_text:
      description: "RV(instances[].rollback_volumes) as one line, C(device: old -> new; ...), for the CSV report."
      type: str
    root_task_id:
      description: The root volume replacement task.
      type: str
    left_attached:
      description: Volumes attached to the instance that the AMI does not cover; they were left attached.
      type: list
      elements: dict
    already_rolled_back:
      description: The instance was already rolled back for this run; nothing was changed.
      type: bool
    plan:
      description: Check mode only - the AMI and each volume that would be replaced (device, current volume, snapshot, size, type, encryption).
      type: str
    error:
      description: Why the rollback failed or was skipped (empty otherwise, and in check mode when there is a plan).
      type: str
    step:
      description: The last step the rollback was at (C(create_volume), C(root_task), C(stop), C(detach), C(attach), C(start), C(wait), C(done)...).
      type: str
    post_checks:
      description: The post-check result (C(status), C(reason)) when post-checks ran.
      type: dict
    rescan:
      description: With O(rescan), the Scan's outcome (C(success), C(pending) when it did not finish in time, or the failure); empty otherwise.
      type: str
summary:
  description: Counts of RV(instances[].rollback_status).
  returned: always
  type: dict
  sample: {"rolled_back": 2, "failed": 0, "skipped": 1, "pending": 0}
lines:
  description: One line per instance for the job log - its status and, in check mode, the plan, otherwise old -> new per device, or the error.
  returned: always
  type: list
  elements: str
  sample: ["web-01 (i-0123456789abcdef0): rolled_back /dev/xvda: vol-0aa -> vol-0bb"]
pending:
  description: How many rollbacks are still running; non-zero only when O(progress_interval) or O(wait=false) made the call return early.
  returned: always
  type: int
progress:
  description: Where the rollback stands; C(line) is a one-line summary.
  returned: always
  type: dict
api_calls:
  description: The AWS API calls this run made, per operation, with retries.
  returned: always
  type: dict
"""

import time

from ansible_collections.cms.patching.plugins.module_utils import _cancel, _module, _rollback


def argument_spec():
    return dict(
        _module.round_options(wait_timeout=3600, poll_interval=15),
        instances=dict(type="list", elements="dict", required=True),
        run_id=dict(type="str", required=True),
        max_concurrent=dict(type="int", default=5),
        post_checks=dict(type="dict", default={}, options=_module.CHECK_OPTIONS),
        rescan=dict(type="bool", default=False),
    )


def input_problems(params):
    problems = _module.instance_problems(params["instances"], params["accounts"])
    problems.extend(_module.at_least_one(params, ("max_concurrent", "wait_timeout", "poll_interval", "max_workers")))
    if params["progress_interval"] < 0:
        problems.append("progress_interval: must be 0 or more")
    return problems


def progress(results, rounds, elapsed):
    counts = _module.count_statuses(results, "rollback_status", ("rolled_back", "failed", "skipped", "pending"))
    line = "rollback round %d: %d rolled back, %d in progress, %d failed, %d skipped of %d (%ds)" % (
        rounds,
        counts["rolled_back"],
        counts["pending"],
        counts["failed"],
        counts["skipped"],
        len(results),
        elapsed,
    )
    return counts, {"phase": "rollback", "rounds": rounds, "elapsed": elapsed, "line": line}


def work(module, fleet):
    started = time.time()
    params = module.params
    options = {k: params[k] for k in argument_spec() if k not in ("instances", "run_id")}
    # _cancel.sleep: a cancel (Ctrl-C, an AWX cancel, the controller gone) ends the wait between poll rounds at once, not
    # after poll_interval seconds; the next run with the same run_id resumes from AWS's state.
    run = _rollback.RollbackRun(fleet, [dict(i) for i in params["instances"]], params["run_id"], options, check_mode=module.check_mode, sleep=_cancel.sleep)
    results = run.run(wait=params["wait"], progress_interval=params["progress_interval"])
    counts, prog = progress(results, run.rounds, int(time.time() - started))
    lines = [
        "%s (%s): %s %s" % (r["name"] or r["instance_id"], r["instance_id"], r["rollback_status"], r["plan"] or r["error"] or r["rollback_volumes_text"])
        for r in results
    ]
    return dict(run_id=params["run_id"], changed=run.changed, instances=results, summary=counts, pending=counts["pending"], progress=prog, lines=lines)


def main():
    _module.run_module(argument_spec(), input_problems, work)


if __name__ == "__main__":
    main()
