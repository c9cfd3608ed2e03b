"""The fewest AWS calls this collection's design can make for a run: a lower bound to read the measured count against.

One read of each kind per account and region, no poll round beyond the one that sees the work end, every batch full.
Each item is something the collection does by design (a scan and SSM status per location; per target an AMI, and per
location the images, snapshots and verified-at tag of the backup and retention's read; per wave and location the gate,
a listing before sending and one that sees the end, a send, an invocation read and the patch states before and after
per 50 instances, and the post-checks), so a goal below the bound cannot be met by polling less or batching better.

Left out, which only lowers the bound: the controller's own identity (GetCallerIdentity), the run's claim in Parameter
Store, snapshots read by retention, throttled or failed calls tried again, and every poll round but the last.
"""

import math
import re

SEND_BATCH = 50  # SendCommand InstanceIds, ListCommandInvocations and DescribeInstancePatchStates pages
TAG_BATCH = 1000  # CreateTags resources per call (the verified-at tag)
STATUS_BATCH = 100  # DescribeInstanceStatus InstanceIds per call (the ec2_status post-check)
WAVE_RE = re.compile(r"wave=(\S+)")


def call_floor(rows, commands, assumed_accounts, ous=0, post_checks=True, require_backup=True):
    """{operation: fewest calls} for a run that reported ``rows`` and sent ``commands``.

    rows: the CSV report's rows (account_id, region, instance_id, target, backup_status, wave, patch_status); rows
    without an account and region (the landing zone's own, an instance asked for but not found) are no location.
    commands: the run's AWS-RunPatchBaseline commands, as patch_commands gives them.
    assumed_accounts: how many accounts are reached through AssumeRole; ous: the OUs read from Organizations.
    post_checks (ssm_online and ec2_status) and require_backup (the gate): as the landing zone sets them.

    What depends on an outcome is counted only where that outcome happened: snapshots and the verified-at tag where a
    backup was verified, patch states after the patch and the post-checks where a patch succeeded.
    """
    floor = {}

    def add(operation, count):
        if count:
            floor[operation] = floor.get(operation, 0) + count

    def tally(counts, key):
        counts[key] = counts.get(key, 0) + 1

    seen, targets, verified, succeeded = {}, {}, {}, {}
    for row in rows:
        if not (row.get("instance_id") and row.get("account_id") and row.get("region")):
            continue
        location = (row["account_id"], row["region"])
        tally(seen, location)
        if str(row.get("target", "")).lower() == "true":
            tally(targets, location)
        if row.get("backup_status") == "verified":
            tally(verified, location)
        if row.get("patch_status") == "success":
            tally(succeeded, (row.get("wave") or "", location))
    add("sts:AssumeRole", assumed_accounts)
    add("organizations:ListChildren", ous)
    add("organizations:ListAccountsForParent", ous)
    add("ec2:DescribeInstances", len(seen))
    add("ssm:DescribeInstanceProperties", len(seen))
    add("ec2:DescribeImages", len(seen))  # retention reads each location's old AMIs
    for count in targets.values():
        add("ec2:CreateImage", count)
        add("ec2:DescribeImages", 1)  # this run's AMIs there (before creating, or to see them available)
    for count in verified.values():
        add("ec2:DescribeSnapshots", 1)
        add("ec2:CreateTags", math.ceil(count / TAG_BATCH))
    sent, before = {}, {}
    for wave, location, count, reads_before in commands:
        sent[(wave, location)] = sent.get((wave, location), 0) + count
        if reads_before:
            before[(wave, location)] = before.get((wave, location), 0) + count
    for key, count in sent.items():
        batches = math.ceil(count / SEND_BATCH)
        if require_backup:
            add("ec2:DescribeImages", 1)
        add("ssm:ListCommands", 2)
        add("ssm:SendCommand", batches)
        add("ssm:ListCommandInvocations", batches)
        add("ssm:DescribeInstancePatchStates", math.ceil(before.get(key, 0) / SEND_BATCH))
    for count in succeeded.values():
        add("ssm:DescribeInstancePatchStates", math.ceil(count / SEND_BATCH))
        if post_checks:
            add("ec2:DescribeInstanceStatus", math.ceil(count / STATUS_BATCH))
            add("ssm:DescribeInstanceProperties", 1)
    return floor


def patch_commands(command_log):
    """The sandbox's command log (``state.command_log()``) as call_floor's commands: (wave, (account, region), instances,
    whether the patch state before it is read - an Install that may reboot). Only the run's AWS-RunPatchBaseline
    commands (the collection's comment); a seeded fleet's earlier scan is not the run's."""
    found = []
    for entry in command_log:
        if entry["document"] != "AWS-RunPatchBaseline" or not (entry.get("comment") or "").startswith("cms.patching run="):
            continue
        match = WAVE_RE.search(entry["comment"])
        parameters = entry.get("parameters") or {}
        operation = (parameters.get("Operation") or ["Scan"])[0]
        reboot_option = (parameters.get("RebootOption") or ["RebootIfNeeded"])[0]
        reads_before = operation == "Install" and reboot_option != "NoReboot"
        found.append((match.group(1) if match else "", (entry["account"], entry["region"]), len(entry["instance_ids"]), reads_before))
    return found


def below_floor(operations, floor):
    """Operations the run made fewer times than the bound says it must: the bound's model is wrong there."""
    return {op: (operations.get(op, 0), need) for op, need in floor.items() if operations.get(op, 0) < need}


def describe(operations, floor, instances):
    """One line for the report: the bound per instance and per operation beside the measured counts."""
    total = sum(floor.values())
    parts = ", ".join("%s %d (%d)" % (op, need, operations.get(op, 0)) for op, need in sorted(floor.items(), key=lambda kv: -kv[1]))
    return "%.3f (%d calls / %d instances); per operation, bound (measured): %s" % (total / instances, total, instances, parts)


def report_rows(operations, floor, instances, goal, goal_column=True):
    """Markdown table rows for the bound (measure | value | goal | met, or without the goal column); a second row if
    the run made fewer calls than the bound says it must (then the bound's model is wrong)."""
    bound = sum(floor.values()) / instances
    verdict = "the goal (%g) lies below the bound" % goal if bound > goal else "the goal (%g) is above the bound" % goal
    rows = [
        "| the fewest calls per instance this design makes for this run (a lower bound, benchmarks/_call_floor.py) | %s |%s %s |"
        % (describe(operations, floor, instances), " - |" if goal_column else "", verdict)
    ]
    wrong = below_floor(operations, floor)
    if wrong:
        rows.append(
            "| operations made fewer times than the bound says, measured (bound): the bound's model is wrong there | %s |%s - |"
            % (", ".join("%s %d (%d)" % (op, made, need) for op, (made, need) in sorted(wrong.items())), " - |" if goal_column else "")
        )
    return rows
