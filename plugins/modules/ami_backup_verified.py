#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: ami_backup_verified
short_description: Create a verified AMI of every instance of a batch, check existing ones, or retire old ones
version_added: 0.1.0
description:
  - O(mode=create) creates one AMI per instance (concurrently, at most O(max_concurrent_creates) at a time per account and region) and waits until each is
    B(verified) - the image is C(available), B(and) every EBS snapshot in its block device mappings is C(completed), B(and) every EBS
    volume attached to the instance is covered by a mapping. Anything else by O(wait_timeout) is C(failed), with the reason.
  - Each AMI and its snapshots are tagged C(cms:patching=pre-patch), C(cms:patching:run-id), C(cms:patching:instance-id) and
    C(cms:patching:lz); verified AMIs also get C(cms:patching:verified-at), which M(cms.patching.ssm_patch_run) requires before patching.
    It is set per account and region in the round in which nothing there is pending any more, up to 1,000 AMIs per C(CreateTags). A
    later call of the same O(run_id) in O(mode=create) (the next call of a C(until) loop) takes an C(available) AMI with that tag as
    verified without reading its snapshots again, since the tag is set only after that check; O(mode=verify) always checks them.
  - Idempotent per run ID - a re-run with the same O(run_id) finds the AMIs it already made (by tag) and only creates the missing ones.
    A run belongs to its landing zone - when AMIs of O(run_id) carry another C(cms:patching:lz), the module fails before creating
    anything.
  - Each poll round costs one C(DescribeImages) per account and region where AMIs are pending, for the whole batch; there is no round
    right after the C(CreateImage) calls (an AMI takes minutes), the first comes after O(poll_interval).
  - "Snapshots are read with one C(DescribeSnapshots) per account and region for all its AMIs, once none of its AMIs can still
    become C(available) (EC2 makes an AMI C(available) only when its snapshots have completed; each is still checked to be
    C(completed)), earlier when an C(available) AMI reaches O(wait_timeout), and in the only round of a call with O(wait=false).
    Until then an C(available) AMI is C(pending) and its reason says that its snapshots are checked once no other AMI of the run in
    its account and region is pending. The phase ends only when nothing is pending, so this delays no phase."
  - "EC2 is eventually consistent: an AMI not yet returned by C(DescribeImages), or C(pending) without snapshot IDs, is C(pending);
    only O(wait_timeout), counted from the AMI's C(CreationDate) on AWS's clock, fails it. A poll round that fails changes no status;
    its error is in the reason if the deadline passes."
  - "C(CreateImage) is never blindly retried: after a server error the AMI may exist, so it is looked up by tag and, if not found,
    requested again with the same name; C(InvalidAMIName.Duplicate) for an AMI tagged as this run's backup of the instance adopts it,
    for any other AMI fails the instance naming that AMI."
  - O(mode=verify) checks the existing pre-patch AMIs of the instances (of O(run_id) if given, else the newest per instance) and creates
    nothing.
  - O(mode=retain) applies the retention policy O(retention) to this landing zone's pre-patch AMIs in O(accounts) x O(regions).
    Only AMIs tagged C(cms:patching=pre-patch) for O(lz) are ever touched; an AMI of the current O(run_id), one that is not
    C(available), an instance's newest verified AMI, and one used by any version of any launch template (C(resolve:ssm:) aliases
    resolved) or by a launch configuration are always kept. Removal is C(DeregisterImage) with C(DeleteAssociatedSnapshots); a
    snapshot AWS did not delete is deleted, retried for about a minute while C(InvalidSnapshot.InUse), and reported in RV(errors) if
    it remains. Snapshots tagged for O(lz) whose AMI no longer exists (left by older versions) are deleted too.
  - With O(claim), O(mode=retain) first claims the retention of O(run_id) so that one job of the run carries it out, however
    many run at once (the slices of a sliced AWX job template, workflow nodes, a resumed run); see O(claim).
author:
  - CMS Platform Engineering (@cms-platform)
options:
  mode:
    description: What to do; see the description.
    type: str
    choices: [create, verify, retain]
    default: create
  instances:
    description:
      - The instances to back up or verify, as M(cms.patching.ec2_patch_scan) returns them. Required for O(mode=create) and O(mode=verify).
      - Each needs C(instance_id), C(account_id) and C(region); C(name) is used in the AMI name and description; C(volumes) (a list of
        C(device_name)/C(volume_id)) is the set of volumes the AMI must cover - when it is missing the module reads it with
        C(DescribeInstances). Other keys are ignored.
    type: list
    elements: dict
    default: []
  run_id:
    description:
      - The run this backup belongs to; required for O(mode=create).
      - For O(mode=verify), restricts the check to that run's AMIs. For O(mode=retain), the run whose AMIs are never removed.
    type: str
  lz:
    description: The landing zone's name, tagged on every AMI and used to scope O(mode=retain).
    type: str
    required: true
  regions:
    description: The regions O(mode=retain) works in, in every account of O(accounts).
    type: list
    elements: str
    default: []
  no_reboot:
    description: Create the AMI without rebooting the instance (file systems are not quiesced).
    type: bool
    default: true
  name_template:
    description:
      - The AMI name. Placeholders C({instance_id}), C({name}), C({run_id}), C({lz}), C({account_id}), C({region}), C({date}).
      - Characters AMI names do not allow become C(-). To fit 128 characters the free text (C({name}), then C({lz})) is shortened;
        the identifiers (C({instance_id}), C({run_id}), ...) never are, so keep C({instance_id}) and C({run_id}) in it - names must be
        unique per instance and run.
    type: str
    default: cms-patching-{instance_id}-{run_id}
  description_template:
    description: The AMI description, with the same placeholders as O(name_template); free text shortened to fit 255 characters.
    type: str
    default: Pre-patch backup of {instance_id} ({name}) for run {run_id} in landing zone {lz}
  tags:
    description: Extra tags for the AMIs and their snapshots. The collection's own C(cms:patching*) tags cannot be overridden.
    type: dict
    default: {}
  snapshot_tags_on_create:
    description:
      - Tag the snapshots in the C(CreateImage) call itself (C(TagSpecifications)), as AWS supports.
      - Set to V(false) for an endpoint that rejects snapshot tag specifications (plain moto); snapshots are then tagged right after,
        in batches. Either way every snapshot ends up tagged.
    type: bool
    default: true
  wait:
    description: Wait for verification. With V(false) the module returns after one round.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds from an AMI's creation (on AWS's clock) after which it counts as failed if it is not verified.
      - A first snapshot of a large volume can take hours.
    type: int
    default: 10800
  poll_interval:
    description: Seconds between poll rounds.
    type: int
    default: 15
  progress_interval:
    description:
      - When greater than 0 and AMIs are still pending after this many seconds, return with RV(pending) > 0 instead of waiting on, so a
        playbook can show progress and call again (C(until) loop); the next call resumes where this one stopped, same deadline.
      - V(0) waits in one call until every AMI is verified or failed.
    type: int
    default: 0
  max_concurrent_creates:
    description:
      - How many C(CreateImage) calls are in flight at once in each account/region.
      - Calls are also paced on the client to EC2's documented request rate (a token bucket per account and region, 50 calls at
        once and then 5 a second), and slowed further in a location where EC2 still answers C(RequestLimitExceeded).
    type: int
    default: 10
  max_workers:
    description: How many accounts/regions are polled at the same time.
    type: int
    default: 8
  retention:
    description: The retention policy for O(mode=retain). An AMI is removed only when both rules allow it.
    type: dict
    default: {}
    suboptions:
      keep_last:
        description:
          - Keep the newest this many B(verified) pre-patch AMIs of each instance (C(available) and tagged C(cms:patching:verified-at)).
          - AMIs that failed verification do not count; the newest verified AMI is always kept.
        type: int
        default: 3
      max_age_days:
        description: Keep every pre-patch AMI younger than this many days.
        type: int
        default: 30
  claim:
    description:
      - For O(mode=retain), claim the retention of O(run_id) first, so that exactly one job of the run carries it out. Needs O(run_id).
      - "The claim is the SSM parameter C(/cms-patching/<lz>/<run_id>/retention/<n>) (a String) in the first account of O(accounts)
        and the first region of O(regions), created with C(PutParameter) and C(Overwrite=false): AWS creates a name once and answers
        C(ParameterAlreadyExists) to every other job, so one job wins however many race. Its value names the claimant (O(claimant))
        and the state: C(started), then C(done) or C(failed) when retention ended."
      - A job that finds the run's retention C(done), or C(started) by another claimant less than O(claim_stale_after) seconds ago,
        removes nothing and says who has it in RV(claim) (C(won=false)). A claim C(started) by the same claimant is carried on; one
        that C(failed), or is older than O(claim_stale_after) and not finished (its job was killed), is taken over with the next
        C(<n>), again created with C(Overwrite=false).
      - Check mode reads the claim and writes nothing.
    type: bool
    default: false
  claimant:
    description:
      - Who claims, written in the claim and shown to the other jobs; the C(cms.patching.backup) role passes C(AWX job <awx_job_id>).
      - Default C(<user>@<host>) of the controller, so a run resumed from the same controller carries on with its own claim.
    type: str
  claim_stale_after:
    description:
      - Seconds (on AWS's clock, from the claim's C(LastModifiedDate)) after which a claim still C(started) by another job counts as
        abandoned and can be taken over. Longer than the landing zone's retention ever takes.
    type: int
    default: 3600
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
    details: Reads as usual; creates, tags and deletes nothing, and reports what it would do in RV(instances[].plan) / the C(plan) of each RV(removed) entry.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Per O(run_id) - a second run finds the AMIs of the first.
notes:
  - "The result's C(invocation.module_args) (what C(-vvv) shows of the arguments) lists each entry of O(instances) by its C(instance_id),
    C(account_id) and C(region) only: a whole batch would come back in every result, a second copy of the arguments in the worker
    and the controller at fleet size."
  - "IAM permissions: O(mode=create) needs C(ec2:CreateImage), C(ec2:CreateTags), C(ec2:DescribeImages), C(ec2:DescribeSnapshots) (and
    C(ec2:DescribeInstances) when volumes are not given); O(mode=verify) needs the describe permissions only; O(mode=retain) needs
    C(ec2:DescribeImages), C(ec2:DescribeSnapshots), C(ec2:DescribeLaunchTemplates), C(ec2:DescribeLaunchTemplateVersions),
    C(ssm:GetParameters), C(autoscaling:DescribeLaunchConfigurations), C(ec2:DeregisterImage), C(ec2:DeleteSnapshot); O(claim) adds
    C(ssm:GetParameters) and C(ssm:PutParameter) on C(arn:aws:ssm:<region>:<account>:parameter/cms-patching/<lz>/*)."
"""

EXAMPLES = r"""
- name: Back up every target, then patch only the verified ones
  cms.patching.ami_backup_verified:
    accounts: "{{ lz.config.accounts }}"
    lz: prod
    run_id: "{{ run_id }}"
    instances: "{{ scan.instances | selectattr('target') | list }}"
    wait_timeout: 3600
  register: backup

- name: The instances whose backup failed, and why
  ansible.builtin.debug:
    msg: "{{ backup.instances | rejectattr('backup_status', 'eq', 'verified') | items2dict(key_name='instance_id', value_name='reason') }}"

- name: Check the latest pre-patch AMIs without creating any
  cms.patching.ami_backup_verified:
    mode: verify
    accounts: "{{ lz.config.accounts }}"
    lz: prod
    instances: "{{ scan.instances | selectattr('target') | list }}"

- name: Retire old pre-patch AMIs (keep 3 per instance, or 30 days)
  cms.patching.ami_backup_verified:
    mode: retain
    accounts: "{{ lz.config.accounts }}"
    regions: [eu-west-1, eu-central-1]
    lz: prod
    run_id: "{{ run_id }}"
    retention:
      keep_last: 3
      max_age_days: 30
  check_mode: true

- name: Retire old pre-patch AMIs once for the run, whichever job of it gets there first
  cms.patching.ami_backup_verified:
    mode: retain
    accounts: "{{ lz.config.accounts }}"
    regions: [eu-west-1]
    lz: prod
    run_id: "{{ run_id }}"
    # Each job must claim under its own name (the backup role passes "AWX job <awx_job_id>"); the default is <user>@<host>.
    claim: true
  register: retention

- name: Say who carried it out
  ansible.builtin.debug:
    msg: "{{ retention.claim.message }}"
"""

RETURN = r"""
mode:
  description: The mode that ran.
  returned: always
  type: str
  sample: create
run_id:
  description: The run ID.
  returned: always
  type: str
instances:
  description: One entry per instance (O(mode=create) and O(mode=verify)), in the order given.
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
      description: The AMI, or empty when none exists.
      type: str
      sample: ami-0123456789abcdef0
    ami_name:
      description: The AMI's name.
      type: str
    image_state:
      description: The image state last seen.
      type: str
      sample: available
    snapshot_ids:
      description: The EBS snapshots in the AMI.
      type: list
      elements: str
    backup_status:
      description: C(verified), C(failed), C(pending) (only when returning early for progress), or C(skipped) (check mode).
      type: str
      sample: verified
    reason:
      description: Why it is not verified (empty when it is, and in check mode).
      type: str
      sample: "snapshot snap-0123 of /dev/sdf is error"
    plan:
      description: In check mode, what the module would do for the instance; empty otherwise.
      type: str
      sample: would create AMI cms-patching-i-0123456789abcdef0-20261127T101500Z
    created:
      description: Whether this call created the AMI.
      type: bool
    seconds:
      description: Seconds from the AMI's creation to its verification (or to now, when not verified).
      type: int
summary:
  description: Counts of RV(instances[].backup_status); for O(mode=retain), C(removed), C(kept) and C(orphan_snapshots).
  returned: always
  type: dict
  sample: {"verified": 17, "failed": 1, "pending": 0, "skipped": 0}
pending:
  description: How many backups are still pending; non-zero only when O(progress_interval) made the call return early.
  returned: always
  type: int
progress:
  description: Where the wait stands, for progress displays; C(line) is a one-line summary.
  returned: always
  type: dict
  sample: {"phase": "backup", "rounds": 3, "elapsed": 45, "line": "backup round 3: 12 verified, 5 pending, 1 failed of 18"}
removed:
  description:
    - The AMIs O(mode=retain) removed (or would remove, in check mode), with their snapshots and the reason.
    - Each has C(ami_id), C(ami_name), C(instance_id), C(run_id), C(account_id), C(region), C(creation_date), C(state), C(verified),
      C(snapshot_ids), C(snapshots_left) (snapshots still there after the retries, also in RV(errors)), C(reason) and C(plan)
      (check mode).
  returned: when O(mode=retain)
  type: list
  elements: dict
orphan_snapshots:
  description:
    - Snapshots tagged as this landing zone's whose AMI no longer exists, deleted by O(mode=retain) (in check mode, to be deleted, with
      C(plan)). Only those older than O(retention.max_age_days).
    - Each has C(snapshot_id), C(ami_id), C(instance_id), C(run_id), C(account_id), C(region), C(start_time), C(reason), C(plan), C(deleted).
  returned: when O(mode=retain)
  type: list
  elements: dict
kept:
  description: The pre-patch AMIs O(mode=retain) kept, each with the rule that kept it.
  returned: when O(mode=retain)
  type: list
  elements: dict
claim:
  description:
    - The retention claim of O(mode=retain) with O(claim) (see O(claim)); C(won) says whether this job carried retention out.
    - C(status) is C(claimed) (this job claimed it, or took it over), C(resumed) (its own claim, carried on), C(held) (another job has it,
      in progress), C(done) (another job carried it out) or C(would_claim) (check mode). C(message) says it in a sentence; C(parameter),
      C(account_id) and C(region) say where the claim is; C(held_by) the claimant it belongs to, C(state) its state (C(started),
      C(done), C(failed)), C(since) when it was last written (ISO, AWS's clock); C(claimant) is this job, C(stale_after) the option.
  returned: when O(mode=retain) and O(claim)
  type: dict
  sample: {"won": false, "status": "held", "held_by": "AWX job 812", "state": "started", "message": "retention of run 20261201-awx777 was claimed by ..."}
errors:
  description: Problems O(mode=retain) met; the module fails when there are any.
  returned: when O(mode=retain)
  type: list
  elements: str
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

from ansible_collections.cms.patching.plugins.module_utils import _backup, _cancel, _module, _retention, _run_claim


def argument_spec():
    return dict(
        _module.round_options(wait_timeout=10800, poll_interval=15),
        mode=dict(type="str", choices=["create", "verify", "retain"], default="create"),
        instances=dict(type="list", elements="dict", default=[]),
        run_id=dict(type="str"),
        lz=dict(type="str", required=True),
        regions=dict(type="list", elements="str", default=[]),
        no_reboot=dict(type="bool", default=True),
        name_template=dict(type="str", default="cms-patching-{instance_id}-{run_id}"),
        description_template=dict(type="str", default="Pre-patch backup of {instance_id} ({name}) for run {run_id} in landing zone {lz}"),
        tags=dict(type="dict", default={}),
        snapshot_tags_on_create=dict(type="bool", default=True),
        max_concurrent_creates=dict(type="int", default=10),
        retention=dict(
            type="dict",
            default={},
            options=dict(keep_last=dict(type="int", default=3), max_age_days=dict(type="int", default=30)),
        ),
        claim=dict(type="bool", default=False),
        claimant=dict(type="str"),
        claim_stale_after=dict(type="int", default=3600),
    )


def input_problems(params):
    problems = []
    mode = params["mode"]
    if mode == "create" and not params["run_id"]:
        problems.append("run_id: required for mode=create (it tags the AMIs so a re-run finds them)")
    if mode in ("create", "verify"):
        problems.extend(_module.instance_problems(params["instances"], params["accounts"]))
        for i, item in enumerate(params["instances"]):
            for j, volume in enumerate(item.get("volumes") or []):
                if not isinstance(volume, dict) or not volume.get("device_name") or not volume.get("volume_id"):
                    problems.append("instances[%d].volumes[%d]: needs device_name and volume_id" % (i, j))
    if mode == "retain":
        problems.extend(_module.region_problems(params["regions"]))
        if not params["regions"]:
            problems.append("regions: mode=retain needs the regions to clean up")
        for key in ("keep_last", "max_age_days"):
            if params["retention"][key] < 1:
                problems.append("retention.%s: must be at least 1" % key)
        if params["claim"] and not params["run_id"]:
            problems.append("run_id: claim=true claims the retention of a run; give its run_id")
        if params["claim_stale_after"] < 1:
            problems.append("claim_stale_after: must be at least 1 (seconds)")
    for key, limit in (("name_template", _backup.NAME_LIMIT), ("description_template", _backup.DESCRIPTION_LIMIT)):
        error = _backup.template_error(params[key])
        if not error and mode == "create" and params["run_id"]:
            error = _backup.template_length_error(params[key], limit, params["run_id"])
        if error:
            problems.append("%s: %s" % (key, error))
    problems.extend(_module.at_least_one(params, ("wait_timeout", "poll_interval", "max_concurrent_creates", "max_workers")))
    return problems


def progress(results, rounds, elapsed):
    counts = _module.count_statuses(results, "backup_status", ("verified", "pending", "failed", "skipped"))
    line = "backup round %d: %d verified, %d pending, %d failed of %d (%ds)" % (
        rounds,
        counts["verified"],
        counts["pending"],
        counts["failed"],
        len(results),
        elapsed,
    )
    return counts, {"phase": "backup", "rounds": rounds, "elapsed": elapsed, "line": line}


def retain(module, fleet):
    """mode=retain: claim the run's retention when asked (one job of the run carries it out), then apply the policy."""
    params = module.params
    claim = None
    if params["claim"]:
        location = (params["accounts"][0]["account_id"], params["regions"][0])
        claim = _run_claim.RetentionClaim(
            fleet, location, params["lz"], params["run_id"], params["claimant"], params["claim_stale_after"], check_mode=module.check_mode, sleep=_cancel.sleep
        )
        info = claim.acquire()
        if not info["won"]:
            # Never silent: the message names the job that has it, and the role shows it.
            result = dict(mode="retain", run_id=params["run_id"], changed=False, removed=[], kept=[], errors=[], instances=[], claim=info)
            result.update(orphan_snapshots=[], pending=0, progress={"phase": "retention", "line": info["message"]})
            result.update(summary={"removed": 0, "kept": 0, "orphan_snapshots": 0})
            return result
    locations = [(a["account_id"], r) for a in params["accounts"] for r in params["regions"]]
    try:
        removed, kept, errors, orphans = _retention.apply(
            fleet,
            locations,
            params["lz"],
            params["retention"],
            params["run_id"],
            check_mode=module.check_mode,
            max_workers=params["max_workers"],
            sleep=_cancel.sleep,
        )
    except Exception:
        # A failed claim is taken over at once by a resumed run (a cancel cannot mark it: it stays started, stale later).
        if claim is not None:
            claim.finish(False)
        raise
    result = dict(mode="retain", run_id=params["run_id"], changed=bool(removed or orphans), removed=removed, kept=kept, errors=errors, instances=[])
    result.update(orphan_snapshots=orphans, pending=0, progress={"phase": "retention", "line": ""})
    result.update(summary={"removed": len(removed), "kept": len(kept), "orphan_snapshots": len(orphans)})
    if claim is not None:
        warning = claim.finish(not errors)
        if warning:
            module.warn(warning)
        result["claim"] = claim.info
        result["progress"]["line"] = claim.info["message"]
    if errors:
        result.update(failed=True, msg="Retention met %d problem(s): %s" % (len(errors), "; ".join(errors)))
    return result


def work(module, fleet):
    started = time.time()
    params = module.params
    if params["mode"] == "retain":
        return retain(module, fleet)
    options = {k: params[k] for k in argument_spec() if k not in ("instances", "run_id", "lz", "mode")}
    instances = [dict(i) for i in params["instances"]]
    run = _backup.BackupRun(fleet, instances, params["run_id"], params["lz"], options, check_mode=module.check_mode, sleep=_cancel.sleep)
    results = run.run(create=params["mode"] == "create", wait=params["wait"], progress_interval=params["progress_interval"])
    counts, prog = progress(results, run.rounds, int(time.time() - started))
    return dict(
        mode=params["mode"],
        run_id=params["run_id"],
        changed=run.changed,
        instances=results,
        summary=counts,
        pending=counts["pending"],
        progress=prog,
    )


def main():
    _module.run_module(argument_spec(), input_problems, work)


if __name__ == "__main__":
    main()
