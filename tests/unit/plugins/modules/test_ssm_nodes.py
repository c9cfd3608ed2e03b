"""SSM status through DescribeInstanceProperties (1,000 a page): discovery, the ssm_online check and the InvalidInstanceId
lookup each read a location of hundreds of managed instances in one call; a principal refused the action falls back to
DescribeInstanceInformation with a warning. Calls are counted from the sandbox's call log."""

import boto3
import pytest
from conftest import DEMO_ACCOUNTS, DEMO_REGIONS, OWN_ACCOUNT
from fleet_helpers import demo_targets, fleet_for, patch_run

from ansible_collections.cms.patching.plugins.module_utils import _ssm_nodes
from ansible_collections.cms.patching.plugins.module_utils._checks import HealthChecks
from ansible_collections.cms.patching.plugins.module_utils._scan import scan
from ansible_collections.cms.patching.plugins.modules import ec2_patch_scan

REGION = "eu-west-1"
ARGS = dict(accounts=DEMO_ACCOUNTS, regions=DEMO_REGIONS, filters={"tag:Environment": "demo"}, exclude_tags={"Patch": "never"})
DENY_PROPERTIES = dict(kind="access_denied", operation="ssm:DescribeInstanceProperties")


def ssm_calls(sandbox):
    """The SSM operations the code called, in order, from the sandbox's call log (with the HTTP status of each)."""
    return [(entry["operation"], entry["status"]) for entry in sandbox.state.calls.log() if entry["operation"].startswith("ssm:")]


@pytest.fixture
def fleet_of_300(aws):
    """300 running, SSM-managed instances in one account and region; the call log starts empty."""
    aws.seed({"synthetic": {"count": 300, "accounts": [OWN_ACCOUNT], "regions": [REGION], "managed_ratio": 1.0, "reservations": 3}})
    aws.state.calls.reset()
    return aws


def scan_all(fleet):
    return scan(fleet, [OWN_ACCOUNT], [REGION], {}, {"require_ssm_online": True})


def test_discovery_of_300_managed_instances_is_one_ssm_call(fleet_of_300):
    records, errors = scan_all(fleet_for(fleet_of_300, [{"account_id": OWN_ACCOUNT}]))
    assert errors == [] and len(records) == 300
    assert {r["ssm_status"] for r in records} == {"Online"} and all(r["ssm_agent_version"] and r["ssm_platform_name"] for r in records)
    # DescribeInstanceInformation needed 6 (50 a page).
    assert ssm_calls(fleet_of_300) == [("ssm:DescribeInstanceProperties", 200)]


def checks_for(sandbox, fleet):
    return HealthChecks(fleet, {"ssm_online": True, "timeout": 60}, "run-1", "post", {"max_workers": 4, "poll_interval": 5},
                        sandbox.state.now, sandbox.state.clock.advance)


def located(records):
    return [{"instance_id": r["instance_id"], "account_id": r["account_id"], "region": r["region"], "platform": r["platform"]} for r in records]


def test_ssm_online_post_check_of_300_instances_is_one_ssm_call(fleet_of_300):
    fleet = fleet_for(fleet_of_300, [{"account_id": OWN_ACCOUNT}])
    records, _errors = scan_all(fleet)
    offline = records[7]["instance_id"]
    fleet_of_300.state.faults.add("agent_offline", instance_id=offline)
    fleet_of_300.state.calls.reset()
    results = checks_for(fleet_of_300, fleet).run(located(records), settle=False)
    assert results[offline] == {"status": "failed", "reason": "SSM agent is not Online"}
    assert {r["status"] for i, r in results.items() if i != offline} == {"passed"}
    # 300 IDs: one unfiltered page of the location instead of 6 filtered DescribeInstanceInformation calls (or 8 of 40 IDs).
    assert ssm_calls(fleet_of_300) == [("ssm:DescribeInstanceProperties", 200)]


def test_up_to_forty_ids_are_one_filtered_call(fleet_of_300):
    fleet = fleet_for(fleet_of_300, [{"account_id": OWN_ACCOUNT}])
    ids = [r["instance_id"] for r in scan_all(fleet)[0]][:40]
    fleet_of_300.state.calls.reset()
    assert sorted(_ssm_nodes.managed_nodes(fleet, OWN_ACCOUNT, REGION, ids)) == sorted(ids)
    assert ssm_calls(fleet_of_300) == [("ssm:DescribeInstanceProperties", 200)]
    request = fleet_of_300.state.calls.log()[-1]
    assert request["operation"] == "ssm:DescribeInstanceProperties"


def test_ids_missing_from_the_first_page_of_a_bigger_location_are_asked_for_by_filter(fleet_of_300, monkeypatch):
    # A location bigger than one page, made cheaply: pages of 5 instead of 1,000.
    monkeypatch.setattr(_ssm_nodes, "PAGE_MAX", 5)
    fleet = fleet_for(fleet_of_300, [{"account_id": OWN_ACCOUNT}])
    ids = [r["instance_id"] for r in scan_all(fleet)[0]][-45:]
    fleet_of_300.state.calls.reset()
    assert sorted(_ssm_nodes.managed_nodes(fleet, OWN_ACCOUNT, REGION, ids)) == sorted(ids)
    # The first page (5 nodes) holds none of them: then the 45 IDs by filter, 40 and 5 (at 5 a page: 8 + 1 pages). The cost
    # follows the IDs asked for, not the 300 nodes of the location (60 pages of 5).
    assert [op for op, _status in ssm_calls(fleet_of_300)] == ["ssm:DescribeInstanceProperties"] * (1 + 8 + 1)


def test_refused_properties_fall_back_per_location_with_one_warning_line(aws, demo):
    expected = scan(fleet_for(aws), [a["account_id"] for a in DEMO_ACCOUNTS], DEMO_REGIONS, {"tag:Environment": "demo"}, {})[0]
    aws.state.faults.add(**DENY_PROPERTIES)
    aws.state.calls.reset()
    fleet = fleet_for(aws)
    records, errors = scan(fleet, [a["account_id"] for a in DEMO_ACCOUNTS], DEMO_REGIONS, {"tag:Environment": "demo"}, {})
    assert errors == []
    assert [(r["instance_id"], r["ssm_status"], r["ssm_platform_name"]) for r in records] == [
        (r["instance_id"], r["ssm_status"], r["ssm_platform_name"]) for r in expected]
    assert len(fleet.warnings) == 1
    warning = fleet.warnings[0]
    assert warning.startswith("ssm:DescribeInstanceProperties refused (AccessDeniedException) in ")
    assert all("%s/%s" % (a["account_id"], r) in warning for a in DEMO_ACCOUNTS for r in DEMO_REGIONS)
    assert "ssm:DescribeInstanceInformation instead" in warning and "grant ssm:DescribeInstanceProperties" in warning
    calls = ssm_calls(aws)
    assert calls.count(("ssm:DescribeInstanceProperties", 400)) == 4 and calls.count(("ssm:DescribeInstanceInformation", 200)) == 4
    # The refusal is remembered: the next read of a location (a post-check round) goes straight to the fallback.
    aws.state.calls.reset()
    ids = [r["instance_id"] for r in records if r["account_id"] == OWN_ACCOUNT and r["region"] == "us-east-1"]
    assert set(_ssm_nodes.managed_nodes(fleet, OWN_ACCOUNT, "us-east-1", ids)) <= set(ids)
    assert ssm_calls(aws) == [("ssm:DescribeInstanceInformation", 200)]


def test_module_result_carries_the_fallback_warning(aws, demo, run_module):
    normal = run_module(ec2_patch_scan, ARGS)
    aws.state.faults.add(**DENY_PROPERTIES)
    result = run_module(ec2_patch_scan, ARGS)
    assert not result.failed, result.get("msg")
    assert result["summary"] == normal["summary"]
    assert [(i["instance_id"], i["ssm_status"], i["skip_code"]) for i in result["instances"]] == [
        (i["instance_id"], i["ssm_status"], i["skip_code"]) for i in normal["instances"]]
    assert not normal.get("warnings")
    # ansible-core words a warning as {"event": {"msg": ...}} (2.19+) or as a plain string.
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert len(warnings) == 1 and warnings[0].startswith("ssm:DescribeInstanceProperties refused (AccessDeniedException) in ")
    assert result["api_calls"]["calls"]["ssm:DescribeInstanceInformation"] == 4


def test_both_refused_names_the_action_to_grant(aws, demo):
    aws.state.faults.add(**DENY_PROPERTIES)
    aws.state.faults.add(kind="access_denied", operation="ssm:DescribeInstanceInformation")
    fleet = fleet_for(aws)
    records, errors = scan(fleet, [OWN_ACCOUNT], ["us-east-1"], {"tag:Environment": "demo"}, {})
    assert records and {r["ssm_status"] for r in records} == {"Unknown"}
    (error,) = errors
    assert error["operation"] == "ssm:DescribeInstanceProperties"
    assert error["error"].startswith("ssm:DescribeInstanceProperties failed: AccessDeniedException")
    assert "is not authorized to perform: ssm:DescribeInstanceProperties" in error["error"]


def test_post_check_falls_back_and_gives_the_same_verdicts(fleet_of_300):
    fleet = fleet_for(fleet_of_300, [{"account_id": OWN_ACCOUNT}])
    records, _errors = scan_all(fleet)
    offline = records[3]["instance_id"]
    fleet_of_300.state.faults.add("agent_offline", instance_id=offline)
    fleet_of_300.state.faults.add(**DENY_PROPERTIES)
    fleet_of_300.state.calls.reset()
    results = checks_for(fleet_of_300, fleet).run(located(records), settle=False)
    assert {i for i, r in results.items() if r["status"] == "failed"} == {offline}
    assert len(fleet.warnings) == 1 and "%s/%s" % (OWN_ACCOUNT, REGION) in fleet.warnings[0]
    # The former cost: 300 IDs, 50 a call.
    assert ssm_calls(fleet_of_300) == [("ssm:DescribeInstanceProperties", 400)] + [("ssm:DescribeInstanceInformation", 200)] * 6


def test_invalid_instance_id_lookup_uses_one_properties_call_and_falls_back(aws):
    aws.seed("demo")
    fleet = fleet_for(aws)
    batch = [t for t in demo_targets(aws, fleet) if t["account_id"] == OWN_ACCOUNT and t["region"] == "us-east-1"][:3]
    gone = batch[1]["instance_id"]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2.terminate_instances(InstanceIds=[gone])
    aws.state.faults.add(**DENY_PROPERTIES)
    aws.state.calls.reset()
    results = {r["instance_id"]: r for r in patch_run(aws, fleet, batch, require_backup=False, operation="Scan", max_concurrency="100%", lz="demo",
                                                      lookback_hours=168).run()}
    assert results[gone]["patch_status"] == "undeliverable" and "terminated" in results[gone]["error"]
    assert {results[i["instance_id"]]["patch_status"] for i in batch if i["instance_id"] != gone} == {"success"}
    lookups = [call for call in ssm_calls(aws) if call[0] in ("ssm:DescribeInstanceProperties", "ssm:DescribeInstanceInformation")]
    assert lookups == [("ssm:DescribeInstanceProperties", 400), ("ssm:DescribeInstanceInformation", 200)]
    assert len(fleet.warnings) == 1
