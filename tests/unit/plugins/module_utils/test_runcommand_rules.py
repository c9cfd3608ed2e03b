"""How SSM invocation states map to patch statuses and error text; the patch helpers."""

import pytest

from ansible_collections.cms.patching.plugins.module_utils._patch import compliance_of, reboot_of, snapshot_id_for, wave_verdict
from ansible_collections.cms.patching.plugins.module_utils._runcommand import comment_for, invocation_output, invocation_status, parse_comment


@pytest.mark.parametrize(
    "status,details,expected",
    [
        ("Success", "Success", "success"),
        ("Failed", "Failed", "failed"),
        ("Failed", "Undeliverable", "undeliverable"),
        ("TimedOut", "DeliveryTimedOut", "undeliverable"),
        ("TimedOut", "ExecutionTimedOut", "timed_out"),
        ("Cancelled", "Cancelled", "cancelled"),
        ("Cancelled", "Terminated", "cancelled"),
        ("InProgress", "InProgress", "pending"),
        ("Pending", "Pending", "pending"),
        ("Delayed", "Delayed", "pending"),
    ],
)
def test_invocation_status(status, details, expected):
    assert invocation_status({"Status": status, "StatusDetails": details}) == expected


def test_output_prefers_the_step_that_ran_and_failed():
    invocation = {
        "CommandPlugins": [
            {"Name": "PatchWindows", "Status": "Success", "Output": "Step execution skipped due to unsatisfied preconditions"},
            {"Name": "PatchLinux", "Status": "Failed", "Output": "yum: cannot download repomd.xml"},
            {"Name": "PatchMacOS", "Status": "Success", "Output": "Step execution skipped due to unsatisfied preconditions"},
        ]
    }
    assert invocation_output(invocation) == "yum: cannot download repomd.xml"
    assert invocation_output({"CommandPlugins": [{"Status": "Failed", "Output": "x" * 1000}]}, max_chars=100).startswith("...")


def test_comment_names_run_and_landing_zone_and_fits_the_api_limit():
    comment = comment_for("20261127T180400Z-abc", "prod", "wave=canary")
    assert comment == "cms.patching run=20261127T180400Z-abc lz=prod wave=canary"
    assert parse_comment(comment) == ("20261127T180400Z-abc", "prod", "wave=canary")
    assert parse_comment("cms.patching run=r1 wave=canary") is None  # no landing zone: not a command of any run
    assert parse_comment("patch night") is None
    assert len(comment_for("r" * 64, "lz", "wave=" + "w" * 80)) == 100


def test_snapshot_id_is_stable_per_run():
    assert snapshot_id_for("run-1") == snapshot_id_for("run-1") != snapshot_id_for("run-2")
    assert len(snapshot_id_for("run-1")) == 36


def test_compliance_and_reboot_come_from_patch_states_only():
    assert compliance_of({"MissingCount": 0, "FailedCount": 0, "InstalledPendingRebootCount": 0}) == "COMPLIANT"
    assert compliance_of({"MissingCount": 2}) == "NON_COMPLIANT"
    assert compliance_of({}) == "stale"
    before = {"InstalledCount": 10, "InstalledOtherCount": 300, "InstalledPendingRebootCount": 0}
    installed = {"InstalledCount": 13, "InstalledOtherCount": 300, "InstalledPendingRebootCount": 0, "RebootOption": "RebootIfNeeded"}
    nothing = dict(before, RebootOption="RebootIfNeeded")
    assert reboot_of("Install", installed, before) == "yes"
    assert reboot_of("Install", nothing, before) == "no"
    # A reboot that was pending before is done by RebootIfNeeded even when nothing new is installed.
    assert reboot_of("Install", nothing, dict(before, InstalledPendingRebootCount=2)) == "yes"
    assert reboot_of("Install", dict(installed, RebootOption="NoReboot", InstalledPendingRebootCount=3), before) == "pending"
    assert reboot_of("Install", dict(nothing, RebootOption="NoReboot"), before) == "no"
    assert reboot_of("Install", installed, None) == "unknown"
    assert reboot_of("Install", {}, before) == "unknown"
    assert reboot_of("Scan", {}, None) == "no"


def test_wave_verdict_counts_post_check_failures_and_ignores_skipped():
    results = [
        {"patch_status": "success", "post_checks": {"status": "passed"}},
        {"patch_status": "success", "post_checks": {"status": "failed"}},
        {"patch_status": "failed"},
        {"patch_status": "skipped"},
    ]
    assert wave_verdict(results, 50) == {"sent": 3, "failed": 2, "failure_rate": 66.7, "stop": True, "reason": "2 of 3 patched instances failed (66.7% > 50%)"}
    assert wave_verdict(results, 70)["stop"] is False
    assert wave_verdict([], 0) == {"sent": 0, "failed": 0, "failure_rate": 0.0, "stop": False, "reason": ""}
    # A wave whose error budget stopped dispatching stops the run; never-sent instances are not counted as patched.
    stopped = wave_verdict(results + [{"patch_status": "not_run"}], 70, stopped="the wave's error budget is spent")
    assert stopped["stop"] is True and stopped["sent"] == 3 and stopped["reason"] == "the wave's error budget is spent"
