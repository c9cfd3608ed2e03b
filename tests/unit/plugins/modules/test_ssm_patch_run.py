"""ssm_patch_run against the sandbox: the backup gate, 50-ID chunks, outcomes, resume, checks, check mode."""

import boto3
import pytest
from conftest import DEMO_ACCOUNTS, OWN_ACCOUNT
from fleet_helpers import backup_run, demo_targets, fleet_for, ops, patch_run

from ansible_collections.cms.patching.plugins.module_utils._patch import snapshot_id_for
from ansible_collections.cms.patching.plugins.modules import ssm_patch_run


@pytest.fixture
def fleet(demo, aws):
    return fleet_for(aws)


@pytest.fixture
def targets(fleet, aws):
    return demo_targets(aws, fleet)


@pytest.fixture
def verified(aws, fleet, targets):
    """Targets backed up in run-1 (web-03's AMI fails: the demo's injected fault)."""
    results = {r["instance_id"]: r["backup_status"] for r in backup_run(aws, fleet, targets).run()}
    aws.state.calls.reset()
    return [t for t in targets if results[t["instance_id"]] == "verified"]


def named(targets, *names):
    return [t for t in targets if t["name"] in names]


def statuses(results):
    return {r["name"]: r["patch_status"] for r in results}


def test_gate_refuses_instances_without_a_verified_backup(aws, fleet, targets, verified):
    batch = named(targets, "web-01", "web-03", "db-01")
    results = {r["name"]: r for r in patch_run(aws, fleet, batch).run()}
    assert results["web-03"]["patch_status"] == "skipped"
    assert results["web-03"]["error"] == "no verified backup of this instance in run run-1 (patching requires one)"
    assert results["web-01"]["patch_status"] == "success" and results["db-01"]["patch_status"] == "success"
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    sent = [i for c in ssm.list_commands()["Commands"] for i in c["InstanceIds"]]
    assert results["web-01"]["instance_id"] in sent and results["web-03"]["instance_id"] not in sent


def test_backup_of_another_run_does_not_open_the_gate(aws, fleet, verified):
    results = patch_run(aws, fleet, verified[:2], run_id="run-other").run()
    assert {r["patch_status"] for r in results} == {"skipped"}
    assert "ssm:SendCommand" not in ops(aws)


def test_require_backup_false_patches_without_one(aws, fleet, targets):
    results = patch_run(aws, fleet, named(targets, "web-01"), require_backup=False, operation="Scan").run()
    assert results[0]["patch_status"] == "success" and results[0]["operation"] == "Scan"
    assert results[0]["reboot"] == "no"


def test_success_reports_compliance_and_parameters(aws, fleet, verified):
    run = patch_run(aws, fleet, named(verified, "db-01"))
    result = run.run()[0]
    assert result["patch_status"] == "success" and result["command_id"]
    assert result["compliance"] == "COMPLIANT" and result["missing_count"] == 0 and result["failed_count"] == 0
    assert isinstance(result["installed_count"], int) and result["operation"] == "Install"
    assert run.parameters()["SnapshotId"] == [snapshot_id_for("run-1")]


def test_injected_patch_failure_is_reported_with_its_error(aws, fleet, verified):
    results = {r["name"]: r for r in patch_run(aws, fleet, named(verified, "pay-web-02", "pay-web-01")).run()}
    assert results["pay-web-02"]["patch_status"] == "failed"
    assert results["pay-web-02"]["error"].startswith("Failed")
    assert "unsatisfied preconditions" not in results["pay-web-02"]["error"]
    assert results["pay-web-01"]["patch_status"] == "success"


def test_timeout_and_undeliverable(aws, fleet, verified):
    slow, offline, fine = verified[0], verified[1], verified[2]
    aws.state.faults.add("patch_timeout", instance_id=slow["instance_id"])
    aws.state.faults.add("agent_offline", instance_id=offline["instance_id"])
    results = {r["instance_id"]: r for r in patch_run(aws, fleet, [slow, offline, fine], pre_checks={}).run()}
    assert results[slow["instance_id"]]["patch_status"] == "timed_out"
    assert results[offline["instance_id"]]["patch_status"] == "undeliverable"
    assert results[fine["instance_id"]]["patch_status"] == "success"


def test_pre_checks_skip_an_unhealthy_instance(aws, fleet, verified):
    sick, fine = verified[0], verified[1]
    aws.state.faults.add("agent_offline", instance_id=sick["instance_id"])
    results = {r["instance_id"]: r for r in patch_run(aws, fleet, [sick, fine], pre_checks={"ssm_online": True, "timeout": 30}).run()}
    assert results[sick["instance_id"]]["patch_status"] == "skipped"
    assert "pre-patch check failed: SSM agent is not Online" in results[sick["instance_id"]]["error"]
    assert results[fine["instance_id"]]["patch_status"] == "success"


def test_post_check_command_failure_counts_against_the_wave(aws, fleet, verified):
    from ansible_collections.cms.patching.plugins.module_utils._patch import wave_verdict

    sick, fine = named(verified, "web-01")[0], named(verified, "web-02")[0]
    aws.state.faults.add("command_fail", instance_id=sick["instance_id"])
    checks = {"ssm_online": True, "ec2_status": True, "command": "curl -fsS http://localhost/health", "timeout": 120}
    results = {r["instance_id"]: r for r in patch_run(aws, fleet, [sick, fine], post_checks=checks).run()}
    assert results[sick["instance_id"]]["patch_status"] == "success"
    assert results[sick["instance_id"]]["post_checks"]["status"] == "failed"
    assert "health command failed" in results[sick["instance_id"]]["post_checks"]["reason"]
    assert results[fine["instance_id"]]["post_checks"] == {"status": "passed", "reason": ""}
    assert wave_verdict(list(results.values()), 0)["failed"] == 1


def test_resume_finds_the_commands_already_sent(aws, fleet, verified):
    batch = verified[:6]
    first = patch_run(aws, fleet, batch)
    first.run(progress_interval=1)
    sent = ops(aws)["ssm:SendCommand"]
    assert sent >= 1
    second = patch_run(aws, fleet, batch).run()
    assert ops(aws)["ssm:SendCommand"] == sent
    assert all(r["patch_status"] in ("success", "failed") for r in second)
    # Another wave name is another batch.
    patch_run(aws, fleet, batch[:1], wave="again").run()
    assert ops(aws)["ssm:SendCommand"] == sent + 1


def test_chunks_of_fifty_per_account_and_region(aws):
    aws.seed({"synthetic": {"count": 120, "accounts": [OWN_ACCOUNT], "regions": ["us-east-1"], "managed_ratio": 1.0, "reservations": 2}})
    fleet = fleet_for(aws, accounts=[{"account_id": OWN_ACCOUNT}])
    from ansible_collections.cms.patching.plugins.module_utils._scan import scan

    records, _errors = scan(fleet, [OWN_ACCOUNT], ["us-east-1"], {}, {"instance_states": ["running"]})
    targets = [r for r in records if r["target"]]
    assert len(targets) == 120
    aws.state.calls.reset()
    run = patch_run(aws, fleet, targets, require_backup=False, operation="Scan")
    results = run.run()
    assert ops(aws)["ssm:SendCommand"] == 3
    assert sorted(len(ids) for _loc, ids in run.planned) == [20, 50, 50]
    assert {r["patch_status"] for r in results} == {"success"}
    # Waiting costs one ListCommands round per poll, and one ListCommandInvocations per finished command.
    assert ops(aws)["ssm:ListCommandInvocations"] == 3
    assert ops(aws)["ssm:DescribeInstancePatchStates"] == 3


def test_check_mode_sends_nothing_and_shows_the_plan(aws, verified, run_module):
    args = dict(accounts=DEMO_ACCOUNTS, run_id="run-1", instances=verified[:3], operation="Install", wave="canary")
    result = run_module(ssm_patch_run, args, check_mode=True)
    assert not result.failed, result.get("msg")
    assert "ssm:SendCommand" not in ops(aws)
    assert result["changed"] is True and result["planned"]
    assert sum(len(p["instance_ids"]) for p in result["planned"]) == 3
    assert all(r["patch_status"] == "skipped" and "check mode: would send AWS-RunPatchBaseline" in r["error"] for r in result["instances"])
    assert result["parameters"]["Operation"] == ["Install"]


def test_module_input_errors(aws, verified, run_module):
    args = dict(
        accounts=DEMO_ACCOUNTS,
        run_id="run 1",
        instances=verified[:1],
        operation="Install",
        max_concurrency="0",
        max_errors="abc",
        snapshot_id="nope",
        delivery_timeout=5,
    )
    result = run_module(ssm_patch_run, args)
    assert result.failed
    text = " | ".join(result["problems"])
    for expected in ("run_id:", "max_concurrency:", "max_errors:", "snapshot_id:", "delivery_timeout:"):
        assert expected in text
    assert aws.state.calls.snapshot()["total"] == 0
