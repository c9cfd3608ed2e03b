"""Discovery's rules: the first matching rule decides why an instance is not a target."""

from botocore.exceptions import ClientError

from ansible_collections.cms.patching.plugins.module_utils._scan import classify, ec2_filters, explain, instance_record, summarize
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError

RULES = {"exclude_tags": {"Patch": "never"}, "include_tags": {}, "instance_states": ["running"], "platforms": ["linux", "windows"], "require_ssm_online": True}


def record(**overrides):
    instance = {
        "InstanceId": "i-0123456789abcdef0",
        "State": {"Name": "running"},
        "Tags": [{"Key": "Name", "Value": "web-1"}, {"Key": "Patch Group", "Value": "web"}],
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-1"}}],
    }
    instance.update(overrides.pop("instance", {}))
    info = overrides.pop("info", {"InstanceId": "i-0123456789abcdef0", "PingStatus": "Online", "PlatformName": "Amazon Linux"})
    return instance_record(instance, "123456789012", "eu-west-1", info)


def test_record_fields():
    rec = record()
    assert rec["name"] == "web-1" and rec["patch_group"] == "web" and rec["platform"] == "linux"
    assert rec["volumes"] == [{"device_name": "/dev/xvda", "volume_id": "vol-1"}]
    assert rec["ssm_status"] == "Online"
    assert record(instance={"Platform": "windows"})["platform"] == "windows"
    assert record(info=None)["ssm_status"] == "NotManaged"


def test_target():
    assert classify(record(), RULES) == (None, "")


def test_exclusion_wins_over_everything():
    rec = record(instance={"State": {"Name": "stopped"}, "Tags": [{"Key": "Patch", "Value": "never"}]}, info=None)
    code, reason = classify(rec, RULES)
    assert code == "excluded_by_tag" and reason == "excluded by tag Patch=never"


def test_include_tags_and_wildcard():
    rules = dict(RULES, include_tags={"Patch Group": "*"})
    assert classify(record(), rules)[0] is None
    rules = dict(RULES, include_tags={"Patch Group": ["db", "app"]})
    assert classify(record(), rules) == ("not_included", "lacks the include tag Patch Group=db|app")


def test_state_then_ssm():
    assert classify(record(instance={"State": {"Name": "stopped"}}), RULES) == ("state", "instance is stopped (targets must be running)")
    assert classify(record(info=None), RULES)[0] == "not_ssm_managed"
    code, reason = classify(record(info={"PingStatus": "ConnectionLost"}), RULES)
    assert code == "ssm_offline" and "ConnectionLost" in reason
    assert classify(record(info={"PingStatus": "ConnectionLost"}), dict(RULES, require_ssm_online=False))[0] is None


def test_platform_rule():
    assert classify(record(instance={"Platform": "windows"}), dict(RULES, platforms=["linux"]))[0] == "platform"


def test_filters_and_summary():
    assert ec2_filters({"tag:Env": "prod", "instance-type": ["a", "b"]}) == [
        {"Name": "instance-type", "Values": ["a", "b"]},
        {"Name": "tag:Env", "Values": ["prod"]},
    ]
    recs = [dict(record(), target=True, skip_code=None), dict(record(), target=False, skip_code="state"), dict(record(), target=False, skip_code="state")]
    assert summarize(recs) == {"seen": 3, "targets": 1, "skipped": {"state": 2}}


def test_unknown_ssm_status_is_never_a_target():
    rec = dict(record(), ssm_status="Unknown")
    code, reason = classify(rec, dict(RULES, require_ssm_online=False))
    assert code == "ssm_unknown"
    assert reason == "SSM status unknown (ssm:DescribeInstanceProperties failed in 123456789012/eu-west-1); not patched without knowing it"


def client_error(code, message="msg", status=400):
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeInstances")


def test_explain_names_the_failure_and_what_to_check():
    assert explain("ec2:DescribeInstances", client_error("UnauthorizedOperation", "not authorized"), "1", "eu-west-1") == (
        "ec2:DescribeInstances failed: UnauthorizedOperation: not authorized; check that the role used in account 1 allows ec2:DescribeInstances"
    )
    assert "check that region eu-west-1 is enabled in account 1" in explain("ec2:DescribeInstances", client_error("AuthFailure"), "1", "eu-west-1")
    assert "AWS kept failing after retries" in explain("ssm:DescribeInstanceInformation", client_error("InternalServerError", status=500), "1", "r")
    # Credentials: the session layer's message already says which role and what to check.
    assert explain("ec2:DescribeInstances", FleetError("could not assume arn:x"), "1", "r") == "could not assume arn:x"
