"""The lower bound on AWS calls the benchmarks print beside the measured count (benchmarks/_call_floor.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

from _call_floor import below_floor, call_floor, patch_commands, report_rows  # noqa: E402  pylint: disable=wrong-import-position


def _rows(account, region, targets, others=0):
    rows = [{"account_id": account, "region": region, "instance_id": "i-%s%s%03d" % (account[-1], region[-1], n), "target": "true"} for n in range(targets)]
    rows += [{"account_id": account, "region": region, "instance_id": "i-o%s%s%03d" % (account[-1], region[-1], n), "target": "false"} for n in range(others)]
    return rows


A = ("111111111111", "us-east-1")
B = ("222222222222", "eu-west-1")


def test_the_bound_counts_one_read_of_each_kind_per_location_and_full_batches():
    # A: 3 seen, 2 targets; B: 60 targets. Waves: canary 1 + rest 1 in A; canary 1 + rest 59 (50 + 9) in B.
    # A row without an instance (an account that could not be assumed) is no location of its own.
    rows = _rows(*A, targets=2, others=1) + _rows(*B, targets=60) + [{"account_id": "333333333333", "region": "", "instance_id": "", "target": ""}]
    commands = [("canary", A, 1), ("rest", A, 1), ("canary", B, 1), ("rest", B, 50), ("rest", B, 9)]
    floor = call_floor(rows, commands, assumed_accounts=1)
    assert floor == {
        "sts:AssumeRole": 1,
        "ec2:DescribeInstances": 2,
        # discovery in 2 locations + the ssm_online post-check in 4 wave-locations
        "ssm:DescribeInstanceProperties": 6,
        # retention 2 + backup verification 2 + the gate in 4 wave-locations
        "ec2:DescribeImages": 8,
        "ec2:CreateImage": 62,
        "ec2:DescribeSnapshots": 2,
        "ec2:CreateTags": 2,
        "ssm:ListCommands": 8,
        "ssm:SendCommand": 5,
        "ssm:ListCommandInvocations": 5,
        "ssm:DescribeInstancePatchStates": 10,
        "ec2:DescribeInstanceStatus": 4,
    }
    # A Scan, or an Install that never reboots, reads no state from before; no post-checks, none of their reads.
    lean = call_floor(rows, commands, assumed_accounts=1, post_checks=False, states_before=False)
    assert lean["ssm:DescribeInstancePatchStates"] == 5 and "ec2:DescribeInstanceStatus" not in lean
    assert lean["ssm:DescribeInstanceProperties"] == 2
    # The organization's OUs: one page of each listing per OU.
    assert call_floor(rows, commands, assumed_accounts=1, ous=3)["organizations:ListChildren"] == 3


def test_the_commands_come_from_the_sandbox_log_by_document_and_wave():
    def entry(document, comment, location, ids):
        return {"document": document, "comment": "cms.patching run=r1 lz=demo " + comment, "account": location[0], "region": location[1], "instance_ids": ids}

    log = [
        entry("AWS-RunPatchBaseline", "wave=canary", A, ["i-1"]),
        entry("AWS-RunShellScript", "post-check wave=canary", A, ["i-1"]),
        entry("AWS-RunPatchBaseline", "wave=rest", B, ["i-2", "i-3"]),
        # Not the run's: the fleet's last patch scan, seeded before it.
        dict(entry("AWS-RunPatchBaseline", "", B, ["i-2", "i-3"]), comment="sandbox seed: the fleet's last patch scan"),
    ]
    assert patch_commands(log) == [("canary", A, 1), ("rest", B, 2)]


def test_the_report_says_where_the_goal_lies_and_flags_a_run_below_the_bound():
    floor = {"ec2:CreateImage": 100, "ssm:ListCommands": 20}
    [row] = report_rows({"ec2:CreateImage": 100, "ssm:ListCommands": 40}, floor, 100, 1.1)
    assert "1.200 (120 calls / 100 instances)" in row and "the goal (1.1) lies below the bound" in row
    assert row.count("|") == 5  # measure | value | goal | met
    rows = report_rows({"ec2:CreateImage": 100, "ssm:ListCommands": 5}, floor, 1000, 1.1, goal_column=False)
    assert "the goal (1.1) is above the bound" in rows[0] and rows[0].count("|") == 4
    assert "ssm:ListCommands 5 (20)" in rows[1]
    assert below_floor({"ssm:ListCommands": 5}, floor) == {"ec2:CreateImage": (0, 100), "ssm:ListCommands": (5, 20)}
