"""DescribeInstanceProperties: the managed registry at 1,000 nodes a page, its filters and limits, offline agents, and the
middleware's counting, faults and throttling applying to it (SSM API reference, DescribeInstanceProperties)."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sandbox_testkit import WINDOWS_AMI


def _ids(ssm, **kwargs):
    return [item["InstanceId"] for item in ssm.describe_instance_properties(**kwargs)["InstanceProperties"]]


def _ping(ssm, instance_id):
    items = ssm.describe_instance_properties(InstancePropertyFilterList=[{"key": "InstanceIds", "valueSet": [instance_id]}])["InstanceProperties"]
    return items[0]["PingStatus"] if items else None


def _code(call, *args, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(*args, **kwargs)
    return raised.value.response["Error"]["Code"]


@pytest.fixture
def unvalidated_ssm(sandbox):
    """A client that sends what botocore would refuse itself (MaxResults below the model's minimum), as another SDK may."""
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=False)
    return boto3.client("ssm", region_name="us-east-1", endpoint_url=sandbox.endpoint, config=config,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_unregistered_instances_are_not_listed(ssm, launch):
    launch(2)
    assert ssm.describe_instance_properties()["InstanceProperties"] == []


def test_one_page_holds_a_thousand_nodes_where_information_needs_fifty_a_page(sandbox, ssm, launch_managed):
    ids = launch_managed(120)
    sandbox.state.calls.reset()
    properties = list(ssm.get_paginator("describe_instance_properties").paginate(PaginationConfig={"PageSize": 1000}))
    information = list(ssm.get_paginator("describe_instance_information").paginate(PaginationConfig={"PageSize": 50}))
    assert [item["InstanceId"] for page in properties for item in page["InstanceProperties"]] == ids
    assert (len(properties), len(information)) == (1, 3)
    assert sandbox.state.calls.snapshot()["operations"] == {"ssm:DescribeInstanceProperties": 1, "ssm:DescribeInstanceInformation": 3}


def test_pages_by_max_results_with_next_token(ssm, launch_managed):
    ids = launch_managed(12)
    pages = list(ssm.get_paginator("describe_instance_properties").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(page["InstanceProperties"]) for page in pages] == [5, 5, 2]
    assert [item["InstanceId"] for page in pages for item in page["InstanceProperties"]] == ids


def test_a_token_it_did_not_issue_is_refused(ssm, launch_managed):
    launch_managed(1)
    assert _code(ssm.describe_instance_properties, NextToken="not-a-token") == "InvalidNextToken"


@pytest.mark.parametrize("max_results", [4, 1001])
def test_max_results_outside_five_to_a_thousand_is_a_validation_error(unvalidated_ssm, max_results):
    assert _code(unvalidated_ssm.describe_instance_properties, MaxResults=max_results) == "ValidationException"


@pytest.mark.parametrize("max_results", [5, 1000])
def test_max_results_bounds_are_accepted(ssm, launch_managed, max_results):
    launch_managed(6)
    assert len(_ids(ssm, MaxResults=max_results)) == min(6, max_results)


def test_properties_have_the_real_fields(ssm, launch_managed):
    (instance_id,) = launch_managed(1, image_id=WINDOWS_AMI, tags={"Name": "app-win"})
    node = ssm.describe_instance_properties()["InstanceProperties"][0]
    assert (node["InstanceId"], node["PlatformType"], node["ResourceType"], node["PingStatus"], node["Name"], node["InstanceState"]) == (
        instance_id, "Windows", "EC2Instance", "Online", "app-win", "running")
    assert node["PlatformName"].startswith("Microsoft Windows Server") and node["ComputerName"].startswith("EC2AMAZ-")
    assert {"LastPingDateTime", "AgentVersion", "PlatformVersion", "IPAddress", "RegistrationDate", "InstanceType", "LaunchTime",
            "AvailabilityZone", "SourceId", "SourceType"} <= set(node)
    # InstanceProperty has no IsLatestVersion (that is DescribeInstanceInformation's).
    assert "IsLatestVersion" not in node


def test_same_node_data_as_instance_information(ssm, launch_managed):
    launch_managed(3)
    information = ssm.describe_instance_information()["InstanceInformationList"]
    properties = ssm.describe_instance_properties()["InstanceProperties"]
    # (LastPingDateTime of an Online agent is "now": the two calls are moments apart.)
    shared = ("InstanceId", "PingStatus", "AgentVersion", "PlatformType", "PlatformName", "PlatformVersion", "ResourceType")
    assert [{k: i[k] for k in shared} for i in information] == [{k: p[k] for k in shared} for p in properties]


def test_offline_agents_are_listed_connection_lost(sandbox, ssm, launch_managed):
    online, offline = launch_managed(2)
    sandbox.state.faults.add("agent_offline", instance_id=offline)
    assert {node["InstanceId"]: node["PingStatus"] for node in ssm.describe_instance_properties()["InstanceProperties"]} == {
        online: "Online", offline: "ConnectionLost"}
    sandbox.state.set_agent(offline, online=True)
    assert _ping(ssm, offline) == "Online"


def test_stopped_is_connection_lost_and_terminated_inactive(ec2, ssm, launch_managed):
    stopped, terminated = launch_managed(2)
    ec2.stop_instances(InstanceIds=[stopped])
    ec2.terminate_instances(InstanceIds=[terminated])
    assert (_ping(ssm, stopped), _ping(ssm, terminated)) == ("ConnectionLost", "Inactive")


def test_filter_list_by_ping_status_platform_and_ids(ec2, ssm, launch_managed):
    linux_a, linux_b = launch_managed(2)
    (windows,) = launch_managed(1, image_id=WINDOWS_AMI)
    ec2.stop_instances(InstanceIds=[linux_b])
    assert _ids(ssm, InstancePropertyFilterList=[{"key": "PingStatus", "valueSet": ["ConnectionLost"]}]) == [linux_b]
    assert _ids(ssm, InstancePropertyFilterList=[{"key": "PlatformTypes", "valueSet": ["Windows"]}]) == [windows]
    both = [{"key": "PlatformTypes", "valueSet": ["Linux"]}, {"key": "InstanceIds", "valueSet": [linux_a, windows]}]
    assert _ids(ssm, InstancePropertyFilterList=both) == [linux_a]
    assert _ids(ssm, InstancePropertyFilterList=[{"key": "ResourceType", "valueSet": ["ManagedInstance"]}]) == []


def test_filters_with_operator(ssm, launch_managed, sandbox):
    old, new = launch_managed(2)
    (windows,) = launch_managed(1, image_id=WINDOWS_AMI)
    sandbox.state.register_managed([old], agent_version="3.2.582.0")
    assert _ids(ssm, FiltersWithOperator=[{"Key": "PlatformTypes", "Values": ["Windows"], "Operator": "NotEqual"}]) == [old, new]
    assert _ids(ssm, FiltersWithOperator=[{"Key": "InstanceIds", "Values": [new]}]) == [new]
    assert _ids(ssm, FiltersWithOperator=[{"Key": "AgentVersion", "Values": ["3.2."], "Operator": "BeginWith"}]) == [old]
    # Versions compare as numbers: 3.2.582.0 < 3.3.1142.0 < 3.10.0.0.
    assert _ids(ssm, FiltersWithOperator=[{"Key": "AgentVersion", "Values": ["3.3.0.0"], "Operator": "LessThan"}]) == [old]
    assert _ids(ssm, FiltersWithOperator=[{"Key": "AgentVersion", "Values": ["3.10.0.0"], "Operator": "LessThan"}]) == [old, new, windows]
    assert _ids(ssm, FiltersWithOperator=[{"Key": "AgentVersion", "Values": ["3.3.0.0"], "Operator": "GreaterThan"}]) == [new, windows]


def test_unknown_filter_key_is_refused(ssm):
    assert _code(ssm.describe_instance_properties, FiltersWithOperator=[{"Key": "Colour", "Values": ["blue"]}]) == "InvalidFilterKey"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"InstancePropertyFilterList": [{"key": "PingStatus", "valueSet": ["Sleeping"]}]},
        {"FiltersWithOperator": [{"Key": "PlatformTypes", "Values": ["Solaris"]}]},
        {"FiltersWithOperator": [{"Key": "AgentVersion", "Values": ["3.1", "3.2"], "Operator": "LessThan"}]},
    ],
)
def test_invalid_filter_values_are_refused(ssm, kwargs):
    assert _code(ssm.describe_instance_properties, **kwargs) == "InvalidInstancePropertyFilterValue"


def test_malformed_instance_id_is_refused_and_an_unknown_one_matches_nothing(ssm, launch_managed):
    launch_managed(1)
    assert _code(ssm.describe_instance_properties, InstancePropertyFilterList=[{"key": "InstanceIds", "valueSet": ["web-01"]}]) == "InvalidInstanceId"
    assert _ids(ssm, InstancePropertyFilterList=[{"key": "InstanceIds", "valueSet": ["i-0123456789abcdef0"]}]) == []


def test_at_most_forty_values_per_filter_and_forty_filters(ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    forty = [instance_id] + ["i-%017x" % n for n in range(39)]
    assert _ids(ssm, InstancePropertyFilterList=[{"key": "InstanceIds", "valueSet": forty}]) == [instance_id]
    too_many_values = [{"key": "InstanceIds", "valueSet": forty + ["i-%017x" % 99]}]
    assert _code(ssm.describe_instance_properties, InstancePropertyFilterList=too_many_values) == "ValidationException"
    too_many_filters = [{"Key": "PingStatus", "Values": ["Online"]}] * 41
    assert _code(ssm.describe_instance_properties, FiltersWithOperator=too_many_filters) == "ValidationException"


def test_counted_logged_failed_and_throttled_like_any_operation(sandbox, ssm, launch_managed):
    launch_managed(1)
    sandbox.state.calls.reset()
    ssm.describe_instance_properties()
    sandbox.state.faults.add("throttle", operation="ssm:DescribeInstanceProperties", every=1, count=1)
    throttled = _code(ssm.describe_instance_properties)
    sandbox.state.update_settings(server_error_rate=1)
    failed = _code(ssm.describe_instance_properties)
    sandbox.state.update_settings(server_error_rate=0)
    log = [(entry["operation"], entry["write"], entry["status"], entry["injected"]) for entry in sandbox.state.calls.log()]
    assert (throttled, failed) == ("ThrottlingException", "InternalServerError")
    assert log == [
        ("ssm:DescribeInstanceProperties", False, 200, None),
        ("ssm:DescribeInstanceProperties", False, 400, "throttled"),
        ("ssm:DescribeInstanceProperties", False, 500, "server_error"),
    ]


def test_access_denied_fault_refuses_one_operation_as_a_policy_without_it(sandbox, ec2, ssm, launch_managed):
    launch_managed(1)
    sandbox.state.faults.add("access_denied", operation="ssm:DescribeInstanceProperties")
    sandbox.state.calls.reset()
    with pytest.raises(ClientError) as raised:
        ssm.describe_instance_properties()
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDeniedException", 400)
    assert "is not authorized to perform: ssm:DescribeInstanceProperties" in error["Error"]["Message"]
    # Only that action: the older call still answers, and so does EC2.
    assert len(ssm.describe_instance_information()["InstanceInformationList"]) == 1
    sandbox.state.faults.add("access_denied", operation="ec2:DescribeImages")
    assert _code(ec2.describe_images, Owners=["self"]) == "UnauthorizedOperation"
    log = [(entry["operation"], entry["status"], entry["injected"]) for entry in sandbox.state.calls.log()]
    assert log == [
        ("ssm:DescribeInstanceProperties", 400, "access_denied"),
        ("ssm:DescribeInstanceInformation", 200, None),
        ("ec2:DescribeImages", 403, "access_denied"),
    ]
