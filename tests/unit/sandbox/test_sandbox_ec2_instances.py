"""DescribeInstances paging and platform fields, DescribeInstanceStatus, DescribeLaunchTemplateVersions."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from moto.ec2.models import ec2_backends
from sandbox_testkit import LINUX_AMI, OWN_ACCOUNT, WINDOWS_AMI


def _page_sizes(ec2, **options):
    sizes = []
    for page in ec2.get_paginator("describe_instances").paginate(**options):
        sizes.append([len(reservation["Instances"]) for reservation in page["Reservations"]])
    return sizes


def test_max_results_counts_instances_and_never_splits_a_reservation(ec2, launch):
    for count in (3, 3, 2, 4):
        launch(count)
    assert _page_sizes(ec2, PaginationConfig={"PageSize": 6}) == [[3, 3], [2, 4]]


def test_a_reservation_larger_than_max_results_is_returned_whole(ec2, launch):
    launch(7)
    launch(1)
    assert _page_sizes(ec2, PaginationConfig={"PageSize": 5}) == [[7], [1]]


def test_without_max_results_every_instance_comes_in_one_page(ec2):
    # moto stops at 100 reservations; 120 one-instance reservations, made through moto's backend for speed.
    backend = ec2_backends[OWN_ACCOUNT]["us-east-1"]
    for _attempt in range(120):
        backend.run_instances(LINUX_AMI, 1, None, [], is_instance_type_default=True)
    response = ec2.describe_instances()
    assert len(response["Reservations"]) == 120
    assert "NextToken" not in response


def test_max_results_with_instance_ids_is_an_invalid_combination(ec2, launch):
    ids = launch(1)
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances(InstanceIds=ids, MaxResults=5)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_max_results_below_five_is_rejected(ec2):
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances(MaxResults=2)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_an_invalid_next_token_is_a_400_not_a_500(ec2, launch):
    launch(1)
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances(MaxResults=5, NextToken="garbage")
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_platform_filter_returns_only_windows_instances(ec2, launch):
    launch(2)
    windows = launch(1, image_id=WINDOWS_AMI)
    reservations = ec2.describe_instances(Filters=[{"Name": "platform", "Values": ["windows"]}])["Reservations"]
    assert [instance["InstanceId"] for reservation in reservations for instance in reservation["Instances"]] == windows


def test_linux_instances_have_no_platform_but_platform_details(ec2, launch):
    launch(1)
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]
    assert "Platform" not in instance
    assert instance["PlatformDetails"] == "Linux/UNIX"


def test_windows_instances_report_platform_windows_and_windows_details(ec2, launch):
    launch(1, image_id=WINDOWS_AMI)
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]
    assert (instance["Platform"], instance["PlatformDetails"], instance["UsageOperation"]) == ("windows", "Windows", "RunInstances:0002")


def test_rhel_instances_report_their_billing_product(ec2, launch):
    launch(1, image_id="ami-bb9a6bc2")
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]
    assert instance["PlatformDetails"] == "Red Hat Enterprise Linux"


def test_platform_details_filter(ec2, launch):
    launch(1)
    rhel = launch(1, image_id="ami-bb9a6bc2")
    reservations = ec2.describe_instances(Filters=[{"Name": "platform-details", "Values": ["Red Hat Enterprise Linux"]}])["Reservations"]
    assert [instance["InstanceId"] for reservation in reservations for instance in reservation["Instances"]] == rhel


def test_running_instances_have_ok_status_checks(ec2, launch):
    ids = launch(1)
    status = ec2.describe_instance_status(InstanceIds=ids)["InstanceStatuses"][0]
    assert (status["InstanceStatus"]["Status"], status["SystemStatus"]["Status"]) == ("ok", "ok")


def test_status_impaired_fault_makes_the_instance_check_impaired(sandbox, ec2, launch):
    healthy, sick = launch(2)
    sandbox.state.faults.add("status_impaired", instance_id=sick)
    statuses = {item["InstanceId"]: item["InstanceStatus"]["Status"] for item in ec2.describe_instance_status(InstanceIds=[healthy, sick])["InstanceStatuses"]}
    assert statuses == {healthy: "ok", sick: "impaired"}


def test_launch_template_versions_for_all_templates_lists_each_version_once(ec2):
    ec2.create_launch_template(LaunchTemplateName="one", LaunchTemplateData={"ImageId": "ami-11111111"})
    ec2.create_launch_template(LaunchTemplateName="two", LaunchTemplateData={"ImageId": "ami-22222222"})
    ec2.create_launch_template_version(LaunchTemplateName="two", LaunchTemplateData={"ImageId": "ami-33333333"})
    versions = ec2.describe_launch_template_versions(Versions=["$Latest", "$Default"])["LaunchTemplateVersions"]
    assert sorted(version["LaunchTemplateData"]["ImageId"] for version in versions) == ["ami-11111111", "ami-22222222", "ami-33333333"]


def test_launch_template_versions_pages_past_moto_default_of_fifteen(ec2):
    for index in range(20):
        ec2.create_launch_template(LaunchTemplateName=f"t{index}", LaunchTemplateData={"ImageId": "ami-11111111"})
    pages = ec2.get_paginator("describe_launch_template_versions").paginate(Versions=["$Latest"], PaginationConfig={"PageSize": 7})
    assert sum(len(page["LaunchTemplateVersions"]) for page in pages) == 20
