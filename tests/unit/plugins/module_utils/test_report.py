"""One row per instance, merged across phases; CSV cells a spreadsheet would run are neutralised."""

import csv
import io

import pytest

from ansible_collections.cms.patching.plugins.module_utils._report import COLUMNS, RunReport, neutralise, summary_line

SEEN = [
    {
        "instance_id": "i-1",
        "account_id": "1",
        "region": "r",
        "name": "=cmd|' /C calc'!A0",
        "platform": "linux",
        "state": "running",
        "ssm_status": "Online",
        "target": True,
    },
    {
        "instance_id": "i-2",
        "account_id": "1",
        "region": "r",
        "name": "db",
        "platform": "linux",
        "state": "stopped",
        "target": False,
        "skip_reason": "instance is stopped",
    },
]


def rows(report):
    return list(csv.DictReader(io.StringIO(report.to_csv())))


def test_column_order_is_the_contract():
    assert COLUMNS[:23] == (
        "run_id",
        "lz",
        "account_id",
        "region",
        "instance_id",
        "name",
        "platform",
        "instance_state",
        "ssm_status",
        "target",
        "skip_reason",
        "ami_id",
        "snapshot_ids",
        "backup_status",
        "patch_command_id",
        "patch_status",
        "patches_installed",
        "patches_failed",
        "reboot",
        "compliance",
        "error",
        "started_at",
        "finished_at",
    )


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_neutralised(value):
    assert neutralise(value) == "'" + value


def test_plain_cells_are_untouched():
    assert neutralise("web-1") == "web-1" and neutralise(True) == "true" and neutralise(["a", "b"]) == "a;b" and neutralise(None) == ""


def test_discovery_rows_and_non_targets():
    report = RunReport()
    report.set_run("demo", "run-1")
    report.add_discovery(SEEN, when="t0")
    out = rows(report)
    assert [r["instance_id"] for r in out] == ["i-1", "i-2"]
    assert out[0]["name"].startswith("'=")
    assert out[0]["target"] == "true" and out[0]["backup_status"] == "not_run" and out[0]["patch_status"] == "not_run"
    assert out[1]["target"] == "false" and out[1]["backup_status"] == "skipped" and out[1]["patch_status"] == "skipped"
    assert out[1]["skip_reason"] == "instance is stopped"
    assert all(r["run_id"] == "run-1" and r["lz"] == "demo" for r in out)


def test_failed_backup_skips_patching_with_the_reason():
    report = RunReport()
    report.add_discovery(SEEN)
    report.add_backup(
        [{"instance_id": "i-1", "ami_id": "ami-1", "snapshot_ids": ["snap-1", "snap-2"], "backup_status": "failed", "reason": "snapshot snap-2 is error"}]
    )
    row = rows(report)[0]
    assert row["backup_status"] == "failed" and row["patch_status"] == "skipped"
    assert row["snapshot_ids"] == "snap-1;snap-2"
    assert row["error"] == "backup failed: snapshot snap-2 is error"


def test_patch_results_fill_their_columns_and_first_error_wins():
    report = RunReport()
    report.add_discovery(SEEN)
    report.add_backup([{"instance_id": "i-1", "ami_id": "ami-1", "snapshot_ids": ["snap-1"], "backup_status": "verified"}])
    report.add_patch(
        [
            {
                "instance_id": "i-1",
                "command_id": "c-1",
                "patch_status": "failed",
                "error": "Failed: yum error",
                "installed_count": 3,
                "failed_count": 1,
                "wave": "canary",
            }
        ]
    )
    report.add_error(["i-1"], "a later, less specific message")
    row = rows(report)[0]
    assert (row["patch_command_id"], row["patch_status"], row["patches_installed"], row["patches_failed"], row["wave"]) == ("c-1", "failed", "3", "1", "canary")
    assert row["error"] == "Failed: yum error"


def test_post_check_failure_is_an_error_of_a_successful_patch():
    report = RunReport()
    report.add_discovery(SEEN)
    report.add_patch([{"instance_id": "i-1", "patch_status": "success", "post_checks": {"status": "failed", "reason": "SSM agent is not Online"}}])
    row = rows(report)[0]
    assert row["patch_status"] == "success" and row["post_checks"] == "failed"
    assert row["error"] == "post-patch check failed: SSM agent is not Online"


def test_summary_counts_every_row():
    report = RunReport()
    report.set_run("demo", "run-1")
    report.add_discovery(SEEN)
    report.add_backup([{"instance_id": "i-1", "backup_status": "verified"}])
    report.add_patch([{"instance_id": "i-1", "patch_status": "success"}])
    summary = report.summary()
    assert summary["seen"] == 2 and summary["targets"] == 1
    assert summary["backup"]["verified"] == 1 and summary["backup"]["skipped"] == 1
    assert summary["patch"]["success"] == 1 and summary["patch"]["skipped"] == 1
    assert summary_line(summary) == "2 seen, 1 targets; backup: 1 verified, 1 skipped; patch: 1 success, 1 skipped; 0 with errors"


def test_write_is_atomic_and_complete(tmp_path):
    report = RunReport()
    report.add_discovery(SEEN)
    path = tmp_path / "sub" / "r.csv"
    report.write(str(path))
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert len(path.read_text().splitlines()) == 3
    assert [p.name for p in path.parent.iterdir()] == ["r.csv"]


def test_new_columns_go_at_the_end():
    assert COLUMNS[23:] == ("wave", "post_checks", "plan", "rollback_status", "rollback_volumes")


LOCATION_ERROR = {"account_id": "2", "region": "eu-west-1", "operation": "ec2:DescribeInstances", "error": "could not assume arn:aws:iam::2:role/x"}


def test_a_location_discovery_could_not_scan_has_its_own_row_and_counts_as_an_error():
    report = RunReport()
    report.set_run("demo", "run-1")
    report.add_discovery(SEEN, errors=[LOCATION_ERROR])
    out = rows(report)
    assert len(out) == 3
    location = [r for r in out if r["account_id"] == "2"][0]
    assert location["instance_id"] == "" and location["run_id"] == "run-1" and location["region"] == "eu-west-1"
    assert location["error"] == "discovery failed in 2/eu-west-1: could not assume arn:aws:iam::2:role/x"
    assert location["backup_status"] == "" and location["patch_status"] == ""
    summary = report.summary()
    # Instances seen stay instances; the location is one of the errors and is named.
    assert summary["seen"] == 2 and summary["errors"] == 1 and summary["discovery_failed"] == ["2/eu-west-1"]
    assert summary["backup"]["not_run"] == 1 and summary["backup"]["skipped"] == 1
    assert summary_line(summary).endswith("; 1 with errors; discovery failed in 2/eu-west-1")


def test_not_run_targets_say_why_when_the_run_stopped():
    report = RunReport()
    report.add_discovery(SEEN + [dict(SEEN[0], instance_id="i-3", name="web-3")], errors=[LOCATION_ERROR])
    report.add_backup([{"instance_id": "i-3", "backup_status": "verified"}])
    report.explain_not_run("discovery failed in 2/eu-west-1")
    out = {r["instance_id"]: r for r in rows(report)}
    assert out["i-1"]["error"] == "backup phase did not run: the run stopped after discovery failed in 2/eu-west-1"
    assert out["i-3"]["error"] == "patching phase did not run: the run stopped after discovery failed in 2/eu-west-1"
    assert out["i-2"]["error"] == ""  # not a target: its skip_reason says why
    assert report.summary()["errors"] == 3


def test_not_run_targets_say_why_when_interrupted_or_not_selected():
    report = RunReport()
    report.add_discovery(SEEN)
    report.add_error(["i-1"], "an earlier, more specific reason")
    report.explain_not_run(interrupted=True)
    assert rows(report)[0]["error"] == "an earlier, more specific reason"

    report = RunReport()
    report.add_discovery(SEEN)
    report.explain_not_run(selection="--tags discovery")
    assert rows(report)[0]["error"] == "backup phase not run: not part of this run (--tags discovery)"
    # A phase that was not asked for is said, but it is no error.
    assert report.summary()["errors"] == 0

    report = RunReport()
    report.add_discovery(SEEN)
    report.explain_not_run(interrupted=True)
    assert rows(report)[0]["error"] == "backup phase did not run: the run was interrupted before it"
    assert report.summary()["errors"] == 1


def test_a_rollback_error_replaces_the_not_selected_note_of_the_earlier_run(tmp_path):
    """--tags backup leaves "patching phase not run: ..." (a note); the rollback of that run says why it failed instead."""
    earlier = RunReport()
    earlier.set_run("demo", "r1")
    earlier.add_discovery(SEEN)
    earlier.add_backup([{"instance_id": "i-1", "backup_status": "verified", "ami_id": "ami-1"}])
    earlier.explain_not_run(selection="--tags backup")
    earlier.write(str(tmp_path / "r1.csv"))

    report = RunReport()
    report.set_run("demo", "r1")
    report.add_discovery(SEEN)
    report.keep_rows_of(str(tmp_path / "r1.csv"))
    report.add_rollback([{"instance_id": "i-1", "rollback_status": "failed", "error": "volume vol-1 could not be attached again"}])
    report.explain_not_run(selection="--tags rollback")
    row = rows(report)[0]
    assert row["rollback_status"] == "failed" and row["error"] == "rollback failed: volume vol-1 could not be attached again"
    assert report.summary()["errors"] == 1

    # Merged the other way round (the rollback's rows first known, then the earlier CSV): the same.
    report = RunReport()
    report.set_run("demo", "r1")
    report.add_discovery(SEEN)
    report.add_rollback([{"instance_id": "i-1", "rollback_status": "failed", "error": "volume vol-1 could not be attached again"}])
    report.keep_rows_of(str(tmp_path / "r1.csv"))
    assert rows(report)[0]["error"] == "rollback failed: volume vol-1 could not be attached again"


def test_check_mode_plan_goes_to_its_own_column_never_to_error():
    report = RunReport()
    report.add_discovery(SEEN)
    # The form the modules used to return: the plan as a "check mode: " reason.
    report.add_backup([{"instance_id": "i-1", "backup_status": "skipped", "reason": "check mode: would create an AMI"}])
    report.add_patch([{"instance_id": "i-1", "patch_status": "skipped", "error": "check mode: would send AWS-RunPatchBaseline in command 1 of 1"}])
    row = rows(report)[0]
    assert row["error"] == "" and row["plan"] == "would create an AMI; would send AWS-RunPatchBaseline in command 1 of 1"
    assert (row["backup_status"], row["patch_status"]) == ("skipped", "skipped")
    report.explain_not_run()
    assert report.summary()["errors"] == 0

    # The form with a plan field and an empty reason.
    report = RunReport()
    report.add_discovery(SEEN)
    report.add_backup([{"instance_id": "i-1", "backup_status": "skipped", "reason": "", "plan": "would create AMI cms-patching-i-1-r1"}])
    report.add_patch([{"instance_id": "i-1", "patch_status": "skipped", "error": "", "plan": "would send AWS-RunPatchBaseline in command 1 of 2"}])
    row = rows(report)[0]
    assert row["error"] == "" and row["plan"] == "would create AMI cms-patching-i-1-r1; would send AWS-RunPatchBaseline in command 1 of 2"
    # A patch skipped for a real reason is still an error.
    report.add_patch([{"instance_id": "i-1", "patch_status": "skipped", "error": "pre-patch check failed: SSM agent is not Online"}])
    assert rows(report)[0]["error"] == "pre-patch check failed: SSM agent is not Online"
