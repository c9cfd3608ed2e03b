"""DescribeInstanceInformation: the managed registry, derived ping status, filters and paging."""

from __future__ import annotations

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError
from sandbox_testkit import WINDOWS_AMI


def _ping(ssm, instance_id):
    items = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])["InstanceInformationList"]
    return items[0]["PingStatus"] if items else None


def test_unregistered_instances_are_not_managed(ssm, launch):
    launch(2)
    assert ssm.describe_instance_information()["InstanceInformationList"] == []


def test_registered_running_instance_with_agent_online_is_online(ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    assert _ping(ssm, instance_id) == "Online"


def test_stopped_instance_is_connection_lost(ec2, ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    ec2.stop_instances(InstanceIds=[instance_id])
    assert _ping(ssm, instance_id) == "ConnectionLost"


def test_agent_offline_is_connection_lost_and_back_online_when_it_returns(sandbox, ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    sandbox.state.set_agent(instance_id, online=False)
    lost = _ping(ssm, instance_id)
    sandbox.state.set_agent(instance_id, online=True)
    assert (lost, _ping(ssm, instance_id)) == ("ConnectionLost", "Online")


def test_agent_offline_fault_is_connection_lost(sandbox, ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    sandbox.state.faults.add("agent_offline", instance_id=instance_id)
    assert _ping(ssm, instance_id) == "ConnectionLost"


def test_terminated_instance_is_inactive(ec2, ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert _ping(ssm, instance_id) == "Inactive"


def test_information_has_the_real_fields(ssm, launch_managed):
    (instance_id,) = launch_managed(1, image_id=WINDOWS_AMI)
    info = ssm.describe_instance_information()["InstanceInformationList"][0]
    assert (info["InstanceId"], info["PlatformType"], info["ResourceType"], info["IsLatestVersion"]) == (instance_id, "Windows", "EC2Instance", True)
    assert info["ComputerName"].startswith("EC2AMAZ-") and info["PlatformName"].startswith("Microsoft Windows Server")
    assert {"LastPingDateTime", "AgentVersion", "PlatformVersion", "IPAddress", "AssociationStatus"} <= set(info)


def test_legacy_filter_list_filters_by_platform(ssm, launch_managed):
    launch_managed(2)
    windows = launch_managed(1, image_id=WINDOWS_AMI)
    items = ssm.describe_instance_information(InstanceInformationFilterList=[{"key": "PlatformTypes", "valueSet": ["Windows"]}])["InstanceInformationList"]
    assert [item["InstanceId"] for item in items] == windows


def test_filters_by_ping_status(ec2, ssm, launch_managed):
    online, stopped = launch_managed(2)
    ec2.stop_instances(InstanceIds=[stopped])
    items = ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])["InstanceInformationList"]
    assert [item["InstanceId"] for item in items] == [stopped]
    assert online != stopped


def test_both_filter_styles_at_once_are_rejected(ssm, launch_managed):
    launch_managed(1)
    with pytest.raises(ClientError) as raised:
        ssm.describe_instance_information(
            InstanceInformationFilterList=[{"key": "PingStatus", "valueSet": ["Online"]}], Filters=[{"Key": "PingStatus", "Values": ["Online"]}]
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def test_unknown_filter_key_is_rejected(ssm):
    with pytest.raises(ClientError) as raised:
        ssm.describe_instance_information(Filters=[{"Key": "Colour", "Values": ["blue"]}])
    assert raised.value.response["Error"]["Code"] == "InvalidFilterKey"


def test_pages_by_max_results_with_next_token(ssm, launch_managed):
    ids = launch_managed(12)
    pages = list(ssm.get_paginator("describe_instance_information").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(page["InstanceInformationList"]) for page in pages] == [5, 5, 2]
    assert [item["InstanceId"] for page in pages for item in page["InstanceInformationList"]] == ids


def test_max_results_above_fifty_is_a_validation_error(ssm):
    with pytest.raises(ClientError) as raised:
        ssm.describe_instance_information(MaxResults=51)
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def test_managed_and_agent_endpoints_register_and_take_the_agent_offline(sandbox, ssm, launch):
    (instance_id,) = launch(1)

    def post(path, body):
        request = urllib.request.Request(f"{sandbox.endpoint}/_sandbox/{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    assert post("managed", {"instance_ids": [instance_id]}) == {"registered": [instance_id]}
    post("agent", {"instance_id": instance_id, "online": False})
    assert _ping(ssm, instance_id) == "ConnectionLost"
