"""ec2_patch_scan against the sandbox: every instance seen, the reason for each non-target, read-only, batched."""

from conftest import DEMO_ACCOUNTS, DEMO_REGIONS, OTHER_ACCOUNT, OWN_ACCOUNT

from ansible_collections.cms.patching.plugins.modules import ec2_patch_scan

ARGS = dict(accounts=DEMO_ACCOUNTS, regions=DEMO_REGIONS, filters={"tag:Environment": "demo"}, exclude_tags={"Patch": "never"})
WRITE_PREFIXES = ("Create", "Send", "Delete", "Deregister", "Run", "Terminate", "Stop", "Start", "Modify", "Cancel")


def by_name(result):
    return {i["name"]: i for i in result["instances"]}


def sandbox_ops(aws):
    return dict(aws.state.calls.snapshot()["operations"])


def test_demo_landing_zone_is_seen_whole_with_reasons(demo, run_module):
    result = run_module(ec2_patch_scan, ARGS)
    assert not result.failed, result.get("msg")
    seen = by_name(result)
    assert len(seen) == 30 and "dev-01" not in seen and "ci-runner-01" not in seen
    assert result["summary"] == {"seen": 30, "targets": 21, "skipped": {"excluded_by_tag": 1, "not_ssm_managed": 3, "ssm_offline": 1, "state": 4}}
    assert {i["account_id"] for i in result["instances"]} == {OWN_ACCOUNT, OTHER_ACCOUNT}
    assert {i["region"] for i in result["instances"]} == set(DEMO_REGIONS)
    assert seen["legacy-01"]["skip_reason"] == "excluded by tag Patch=never"
    assert seen["db-eu-01"]["skip_code"] == "ssm_offline" and seen["db-eu-01"]["ssm_status"] == "ConnectionLost"
    assert seen["batch-01"]["skip_code"] == "not_ssm_managed" and seen["batch-01"]["ssm_status"] == "NotManaged"
    assert seen["app-win-02"]["skip_reason"] == "instance is stopped (targets must be running)"
    web = seen["pay-web-01"]
    assert web["target"] and web["skip_code"] is None and web["platform"] == "linux" and web["patch_group"] == "web"
    assert web["account_id"] == OTHER_ACCOUNT and web["ssm_status"] == "Online"
    assert len(web["volumes"]) == 2  # root + the 20 GiB data volume
    assert seen["app-win-01"]["platform"] == "windows"


def test_scan_is_read_only_and_batched(demo, aws, run_module):
    result = run_module(ec2_patch_scan, ARGS)
    ops = sandbox_ops(aws)
    assert not [op for op in ops if op.split(":")[1].startswith(WRITE_PREFIXES)]
    # One DescribeInstances and one DescribeInstanceProperties per account/region, one AssumeRole, one GetCallerIdentity.
    assert result["api_calls"]["calls"] == {
        "ec2:DescribeInstances": 4,
        "ssm:DescribeInstanceProperties": 4,
        "sts:AssumeRole": 1,
        "sts:GetCallerIdentity": 1,
    }
    assert result["changed"] is False


def test_candidates_restrict_the_scan_and_unknown_ones_are_reported(demo, run_module):
    wanted = [demo["web-01"]["instance_id"], demo["pay-eu-web-01"]["instance_id"], "i-0123456789abcdef0"]
    result = run_module(ec2_patch_scan, dict(ARGS, instance_ids=wanted))
    assert not result.failed
    assert sorted(i["instance_id"] for i in result["instances"]) == sorted(wanted)
    missing = [i for i in result["instances"] if i["instance_id"] == "i-0123456789abcdef0"][0]
    assert missing["skip_code"] == "not_found" and missing["target"] is False


def test_include_tags_and_states(demo, run_module):
    result = run_module(ec2_patch_scan, dict(ARGS, include_tags={"Patch Group": "db"}, instance_states=["running", "stopped"]))
    targets = sorted(i["name"] for i in result["instances"] if i["target"])
    assert targets == ["db-01", "db-02", "pay-db-01", "pay-db-02", "pay-eu-db-01"]


def test_wrong_external_id_fails_naming_role_and_account(demo, run_module):
    accounts = [DEMO_ACCOUNTS[0], dict(DEMO_ACCOUNTS[1], external_id="wrong-id")]
    result = run_module(ec2_patch_scan, dict(ARGS, accounts=accounts))
    assert result.failed
    assert "could not assume arn:aws:iam::210987654321:role/CmsPatchingRole for account 210987654321" in result["msg"]
    assert "AccessDenied" in result["msg"] and "external ID" in result["msg"]
    assert "wrong-id" not in result["msg"]
    # The account that did work is still reported (no row is lost), and the module says which pairs failed.
    assert {e["account_id"] for e in result["errors"]} == {OTHER_ACCOUNT}
    assert {i["account_id"] for i in result["instances"]} == {OWN_ACCOUNT}


def test_account_without_role_must_be_the_callers(demo, run_module):
    result = run_module(ec2_patch_scan, dict(ARGS, accounts=[{"account_id": "111111111111"}]))
    assert result.failed
    assert "account 111111111111 has no role_arn" in result["msg"] and "belong to account 123456789012" in result["msg"]


def test_bad_input_fails_before_any_aws_call(demo, aws, run_module):
    result = run_module(
        ec2_patch_scan,
        dict(
            ARGS,
            regions=["eu-west-1", "eu-wset"],
            accounts=[{"account_id": "12345"}, {"account_id": OTHER_ACCOUNT, "role_arn": "arn:aws:iam::1:role/x"}],
            instance_ids=["i-123"],
        ),
    )
    assert result.failed and result["msg"].startswith("Invalid input: ")
    text = " ".join(result["problems"])
    assert "accounts[0].account_id: '12345' is not an AWS account ID" in text
    assert "accounts[1].role_arn" in text
    assert "regions[1]: 'eu-wset' is not an AWS region name" in text and "did you mean 'eu-west-" in text
    assert aws.state.calls.snapshot()["total"] == 0


def test_throttling_is_retried(demo, aws, run_module):
    aws.state.faults.add("throttle", operation="ec2:DescribeInstances", every=2)
    result = run_module(ec2_patch_scan, dict(ARGS, retries={"base_delay": 0.01, "max_delay": 0.02}))
    assert not result.failed, result.get("msg")
    assert result["summary"]["seen"] == 30
    assert result["api_calls"]["retries"].get("ec2:DescribeInstances", 0) >= 1


def test_calls_per_instance_at_scale(aws, run_module):
    aws.seed({"synthetic": {"count": 600, "accounts": [OWN_ACCOUNT], "regions": ["eu-west-1"], "managed_ratio": 0.9, "reservations": 6}})
    result = run_module(ec2_patch_scan, dict(accounts=[{"account_id": OWN_ACCOUNT}], regions=["eu-west-1"]))
    assert not result.failed, result.get("msg")
    seen = result["summary"]["seen"]
    managed = sum(1 for i in result["instances"] if i["ssm_status"] != "NotManaged")
    assert seen == 600
    calls = result["api_calls"]["calls"]
    assert calls["ec2:DescribeInstances"] == 1
    # 540 managed instances: one DescribeInstanceProperties page of up to 1,000 (DescribeInstanceInformation needed 11).
    assert managed > 500 and calls["ssm:DescribeInstanceProperties"] == 1 and "ssm:DescribeInstanceInformation" not in calls
    assert result["api_calls"]["total"] / seen <= 0.01


FAST_RETRIES = {"max_attempts": 2, "base_delay": 0.01, "max_delay": 0.02}


def test_a_denied_account_is_reported_per_location_and_the_others_go_on(demo, run_module):
    accounts = [DEMO_ACCOUNTS[0], dict(DEMO_ACCOUNTS[1], external_id="wrong-id")]
    result = run_module(ec2_patch_scan, dict(ARGS, accounts=accounts, allow_partial=True))
    assert not result.failed, result.get("msg")
    # One entry per account/region of the denied account, each naming the role and what to check.
    assert sorted((e["account_id"], e["region"]) for e in result["errors"]) == sorted((OTHER_ACCOUNT, r) for r in DEMO_REGIONS)
    for error in result["errors"]:
        assert error["operation"] == "ec2:DescribeInstances" and error["instances"] == 0
        assert "could not assume arn:aws:iam::210987654321:role/CmsPatchingRole" in error["error"] and "external ID" in error["error"]
    assert {i["account_id"] for i in result["instances"]} == {OWN_ACCOUNT}
    assert result["summary"]["seen"] == 15
    assert "Could not scan 2 of 4 account/region pairs" in result["msg"]


def test_ssm_read_failure_keeps_the_instances_as_non_targets(demo, aws, run_module):
    aws.state.faults.add("throttle", operation="ssm:DescribeInstanceProperties", rate=1.0)
    result = run_module(ec2_patch_scan, dict(ARGS, retries=FAST_RETRIES, require_ssm_online=False))
    # Not allowed to be partial: the module fails, but no instance is lost.
    assert result.failed
    assert result["summary"]["seen"] == 30 and result["summary"]["targets"] == 0
    seen = by_name(result)
    # Rules that come first still decide (a stopped instance is "stopped"); every other one says its SSM status is unknown.
    assert seen["app-win-02"]["skip_code"] == "state"
    web = seen["web-01"]
    assert web["ssm_status"] == "Unknown" and web["skip_code"] == "ssm_unknown" and web["target"] is False
    assert web["skip_reason"] == "SSM status unknown (ssm:DescribeInstanceProperties failed in %s/%s); not patched without knowing it" % (
        web["account_id"],
        web["region"],
    )
    assert len(result["errors"]) == 4
    for error in result["errors"]:
        assert error["operation"] == "ssm:DescribeInstanceProperties"
        assert error["error"].startswith("ssm:DescribeInstanceProperties failed: ThrottlingException")
        assert "AWS kept failing after retries" in error["error"] and "reported with SSM status Unknown and not patched" in error["error"]
    assert sum(e["instances"] for e in result["errors"]) == 30


def test_describe_instances_failure_names_the_operation(demo, aws, run_module):
    aws.state.faults.add("throttle", operation="ec2:DescribeInstances", rate=1.0)
    result = run_module(ec2_patch_scan, dict(ARGS, retries=FAST_RETRIES, allow_partial=True))
    assert not result.failed and result["instances"] == []
    assert len(result["errors"]) == 4
    assert all(e["error"].startswith("ec2:DescribeInstances failed: RequestLimitExceeded") for e in result["errors"])


def test_many_candidates_cost_one_listing_per_location_not_one_call_per_200(demo, aws, run_module):
    """An AWX slice of a large landing zone has more than 200 hosts (one filter's values): each location is listed once
    with the landing zone's filters and the candidates are picked from it, with the same result as asking by ID."""
    known = [demo[name]["instance_id"] for name in ("web-01", "pay-eu-web-01", "app-win-02")]
    unknown = ["i-%017x" % n for n in range(1, 251)]
    aws.state.calls.reset()
    result = run_module(ec2_patch_scan, dict(ARGS, instance_ids=known + unknown))
    assert not result.failed, result.get("msg")
    assert sandbox_ops(aws)["ec2:DescribeInstances"] == 4  # 2 accounts x 2 regions; asking by ID took 2 calls in each
    found = {i["instance_id"]: i for i in result["instances"]}
    assert set(found) == set(known + unknown)
    assert [i for i in known if found[i]["skip_code"] == "not_found"] == []
    assert {found[i]["skip_code"] for i in unknown} == {"not_found"}
    assert found[demo["app-win-02"]["instance_id"]]["skip_code"] == "state"  # classified as in a full scan
    # An instance outside the landing zone's filters is not picked up by the listing (dev-01: another Environment).
    outside = demo["dev-01"]["instance_id"]
    result = run_module(ec2_patch_scan, dict(ARGS, instance_ids=known + unknown + [outside]))
    assert {i["instance_id"]: i["skip_code"] for i in result["instances"]}[outside] == "not_found"
    # No candidate at all (an empty inventory): nothing to ask for, and nothing found.
    aws.state.calls.reset()
    result = run_module(ec2_patch_scan, dict(ARGS, instance_ids=[]))
    assert not result.failed and result["instances"] == [] and "ec2:DescribeInstances" not in sandbox_ops(aws)


def test_candidates_are_not_called_missing_when_a_location_failed(demo, run_module):
    accounts = [DEMO_ACCOUNTS[0], dict(DEMO_ACCOUNTS[1], external_id="wrong-id")]
    wanted = [demo["web-01"]["instance_id"], demo["pay-eu-web-01"]["instance_id"]]
    result = run_module(ec2_patch_scan, dict(ARGS, accounts=accounts, instance_ids=wanted, allow_partial=True))
    # pay-eu-web-01 lives in the account that could not be scanned: it is not "not found", the location's error covers it.
    assert [i["instance_id"] for i in result["instances"]] == [demo["web-01"]["instance_id"]]


def test_a_controller_clock_too_far_from_aws_s_fails_naming_the_clock(demo, aws, run_module):
    # AWS refuses a request signed more than 15 minutes off its time (RequestExpired) whatever the credentials: say so, not "renew them".
    aws.state.update_settings(clock_skew_seconds=20 * 60)
    result = run_module(ec2_patch_scan, ARGS)
    assert result.failed
    assert "RequestExpired" in result["msg"], result["msg"]
    assert "AWS's clock (the Date of its answer) is 20 minutes ahead of this controller's" in result["msg"], result["msg"]
    assert "set the controller's clock right (NTP" in result["msg"] and "renew them" not in result["msg"]
