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
