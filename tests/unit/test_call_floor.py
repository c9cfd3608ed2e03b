"""The lower bound on AWS calls the benchmarks print beside the measured count (benchmarks/_call_floor.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

from _call_floor import below_floor, call_floor, patch_commands, report_rows  # noqa: E402  pylint: disable=wrong-import-position


def _row(location, number, target=True, backup="verified", wave="rest", patch="success"):
    account, region = location
    row = {"account_id": account, "region": region, "instance_id": "i-%s%s%03d" % (account[-1], region[-1], number)}
    row.update(target="true" if target else "false", backup_status=backup if target else "skipped", wave=wave if target else "")
    row["patch_status"] = patch if target and backup == "verified" else ("not_run" if target else "skipped")
    return row


A = ("111111111111", "us-east-1")
B = ("222222222222", "eu-west-1")
C = ("333333333333", "us-west-2")


def _run():
    """A: 2 targets patched (canary, rest) and one other. B: 60 targets, one backup failed; its canary failed, and 55 of
    the 58 of the rest (50 + 8) succeeded. C: its only target's backup failed. Plus the landing zone's own row and an
    instance asked for but not found (neither is a location)."""
    rows = [_row(A, 0, wave="canary"), _row(A, 1), _row(A, 2, target=False)]
    rows += [_row(B, 0, wave="canary", patch="failed"), _row(B, 1, backup="failed")]
    rows += [_row(B, n, patch="success" if n < 57 else "failed") for n in range(2, 60)]
    rows += [_row(C, 0, backup="failed"), {"account_id": "", "region": "", "instance_id": ""}, {"account_id": "", "region": "", "instance_id": "i-0gone"}]
    commands = [("canary", A, 1, True), ("rest", A, 1, True), ("canary", B, 1, True), ("rest", B, 50, True), ("rest", B, 8, True)]
    return rows, commands


def test_the_bound_counts_one_read_of_each_kind_per_location_and_full_batches_where_the_outcome_calls_for_it():
    rows, commands = _run()
    assert call_floor(rows, commands, assumed_accounts=1) == {
        "sts:AssumeRole": 1,
        "ec2:DescribeInstances": 3,
        # discovery in 3 locations + the ssm_online post-check where a wave succeeded somewhere: 3 (not B's failed canary)
        "ssm:DescribeInstanceProperties": 6,
        # retention 3 + the backup's images in 3 locations with targets + the gate in 4 wave-locations
        "ec2:DescribeImages": 10,
        "ec2:CreateImage": 63,
        # where a backup was verified: not C
        "ec2:DescribeSnapshots": 2,
        "ec2:CreateTags": 2,
        "ssm:ListCommands": 8,
        # B's rest: 58 instances in 2 batches of 50
        "ssm:SendCommand": 5,
        "ssm:ListCommandInvocations": 5,
        # before: 5 batches sent; after: only where a patch succeeded (A 1 + 1, B's rest 55 in 2)
        "ssm:DescribeInstancePatchStates": 9,
        # ec2_status, 100 a call, where a wave succeeded
        "ec2:DescribeInstanceStatus": 3,
    }


def test_the_bound_follows_the_landing_zone_and_the_commands_settings():
    rows, commands = _run()
    # An Install that never reboots (or a Scan) reads no state from before; no post-checks, none of their reads; no gate.
    never_reboots = [command[:3] + (False,) for command in commands]
    lean = call_floor(rows, never_reboots, assumed_accounts=1, post_checks=False, require_backup=False)
    assert lean["ssm:DescribeInstancePatchStates"] == 4 and "ec2:DescribeInstanceStatus" not in lean
    assert lean["ssm:DescribeInstanceProperties"] == 3 and lean["ec2:DescribeImages"] == 6
    # The organization's OUs: one page of each listing per OU.
    assert call_floor(rows, commands, assumed_accounts=1, ous=3)["organizations:ListChildren"] == 3


def test_the_commands_come_from_the_sandbox_log_by_document_and_wave():
    def entry(document, comment, location, ids, reboot="RebootIfNeeded"):
        return {
            "document": document,
            "comment": "cms.patching run=r1 lz=demo " + comment,
            "account": location[0],
            "region": location[1],
            "instance_ids": ids,
            "parameters": {"Operation": ["Install"], "RebootOption": [reboot]},
        }

    log = [
        entry("AWS-RunPatchBaseline", "wave=canary", A, ["i-1"]),
        entry("AWS-RunShellScript", "post-check wave=canary", A, ["i-1"]),
        entry("AWS-RunPatchBaseline", "wave=rest", B, ["i-2", "i-3"]),
        entry("AWS-RunPatchBaseline", "wave=late", B, ["i-4"], reboot="NoReboot"),
        # Not the run's: the fleet's last patch scan, seeded before it.
        dict(entry("AWS-RunPatchBaseline", "", B, ["i-2", "i-3"]), comment="sandbox seed: the fleet's last patch scan"),
    ]
    assert patch_commands(log) == [("canary", A, 1, True), ("rest", B, 2, True), ("late", B, 1, False)]


def test_the_report_says_where_the_goal_lies_and_flags_a_run_below_the_bound():
    floor = {"ec2:CreateImage": 100, "ssm:ListCommands": 20}
    [row] = report_rows({"ec2:CreateImage": 100, "ssm:ListCommands": 40}, floor, 100, 1.1)
    assert "1.200 (120 calls / 100 instances)" in row and "the goal (1.1) lies below the bound" in row
    assert row.count("|") == 5  # measure | value | goal | met
    rows = report_rows({"ec2:CreateImage": 100, "ssm:ListCommands": 5}, floor, 1000, 1.1, goal_column=False)
    assert "the goal (1.1) is above the bound" in rows[0] and rows[0].count("|") == 4
    assert "ssm:ListCommands 5 (20)" in rows[1]
    assert below_floor({"ssm:ListCommands": 5}, floor) == {"ec2:CreateImage": (0, 100), "ssm:ListCommands": (5, 20)}
