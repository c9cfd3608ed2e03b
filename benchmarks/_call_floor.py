"""The fewest AWS calls this collection's design can make for a run: a lower bound to read the measured count against.

One read of each kind per account and region, no poll round beyond the one that sees the work end, every batch full.
Each item is something the collection must do (the issue or design rule that asks for it is named beside it), so a
goal below the bound cannot be met by polling less or batching better: only by dropping one of them.

Left out, which only lowers the bound: the controller's own identity (GetCallerIdentity), the run's claim in Parameter
Store, snapshots read by retention, throttled or failed calls tried again, and every poll round but the last.
"""

import math
import re

SEND_BATCH = 50  # SendCommand InstanceIds, ListCommandInvocations and DescribeInstancePatchStates pages
TAG_BATCH = 1000  # CreateTags resources per call (the verified-at tag)
WAVE_RE = re.compile(r"wave=(\S+)")

# operation -> why the design makes it (for the report)
WHY = {
    "sts:AssumeRole": "one session per member account (issue 11: a role in each account)",
    "organizations:ListChildren": "the OU tree, one page per OU (issue 11)",
    "organizations:ListAccountsForParent": "the accounts of each OU (issue 11)",
    "ec2:DescribeInstances": "discovery, per account and region",
    "ssm:DescribeInstanceProperties": "discovery's SSM status, and the ssm_online post-check per wave",
    "ec2:CreateImage": "one AMI per target",
    "ec2:DescribeImages": "backup verification, retention, and the gate before each wave sends (per account and region)",
    "ec2:DescribeSnapshots": "every snapshot completed (backup verification)",
    "ec2:CreateTags": "the verified-at tag the gate reads",
    "ssm:ListCommands": "per wave and location: the listing before sending (never blind) and one that sees the end",
    "ssm:SendCommand": "50 instances a command",
    "ssm:ListCommandInvocations": "each command's per-instance outcome",
    "ssm:DescribeInstancePatchStates": "compliance after, and (Install that may reboot) the state before, 50 a call",
    "ec2:DescribeInstanceStatus": "the ec2_status post-check per wave",
}


def call_floor(rows, commands, assumed_accounts, ous=0, post_checks=True, states_before=True):
    """{operation: fewest calls} for a run that reported ``rows`` and sent ``commands``.

    rows: the CSV report's rows (account_id, region, target "true"/"false"); rows without an instance are ignored.
    commands: the run's AWS-RunPatchBaseline commands as (wave, (account, region), number of instances).
    assumed_accounts: how many accounts are reached through AssumeRole; ous: the OUs read from Organizations.
    """
    floor = {}

    def add(operation, count):
        if count:
            floor[operation] = floor.get(operation, 0) + count

    seen, targets = {}, {}
    for row in rows:
        if not row.get("instance_id"):
            continue
        location = (row["account_id"], row["region"])
        seen[location] = seen.get(location, 0) + 1
        if str(row.get("target", "")).lower() == "true":
            targets[location] = targets.get(location, 0) + 1
    add("sts:AssumeRole", assumed_accounts)
    add("organizations:ListChildren", ous)
    add("organizations:ListAccountsForParent", ous)
    add("ec2:DescribeInstances", len(seen))
    add("ssm:DescribeInstanceProperties", len(seen))
    add("ec2:DescribeImages", len(seen))  # retention reads each location's old AMIs
    for count in targets.values():
        add("ec2:CreateImage", count)
        add("ec2:DescribeImages", 1)
        add("ec2:DescribeSnapshots", 1)
        add("ec2:CreateTags", math.ceil(count / TAG_BATCH))
    sent = {}
    for wave, location, count in commands:
        sent.setdefault((wave, location), []).append(count)
    for counts in sent.values():
        batches = math.ceil(sum(counts) / SEND_BATCH)
        add("ec2:DescribeImages", 1)
        add("ssm:ListCommands", 2)
        add("ssm:SendCommand", batches)
        add("ssm:ListCommandInvocations", batches)
        add("ssm:DescribeInstancePatchStates", batches * (2 if states_before else 1))
        if post_checks:
            add("ec2:DescribeInstanceStatus", 1)
            add("ssm:DescribeInstanceProperties", 1)
    return floor


def patch_commands(command_log):
    """The sandbox's command log (``state.command_log()``) as call_floor's commands: the run's AWS-RunPatchBaseline commands
    (the collection's comment; a seeded fleet's earlier scan is not the run's)."""
    found = []
    for entry in command_log:
        if entry["document"] != "AWS-RunPatchBaseline" or not (entry.get("comment") or "").startswith("cms.patching run="):
            continue
        match = WAVE_RE.search(entry.get("comment") or "")
        found.append((match.group(1) if match else "", (entry["account"], entry["region"]), len(entry["instance_ids"])))
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
