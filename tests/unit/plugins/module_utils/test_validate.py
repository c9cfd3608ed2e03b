"""The identifier checks every module and the landing-zone loader rely on."""

import pytest

from ansible_collections.cms.patching.plugins.module_utils import _validate as v


@pytest.mark.parametrize("value", ["123456789012", "000000000001"])
def test_account_id_accepts_twelve_digits(value):
    assert v.account_id_error(value) is None


@pytest.mark.parametrize("value", ["12345678901", "1234567890123", "12345678901a", 123456789012, None])
def test_account_id_rejects_anything_else(value):
    assert "not an AWS account ID" in v.account_id_error(value)


def test_region_known_and_unknown():
    assert v.region_error("eu-west-1") is None
    assert v.region_error("us-gov-west-1") is None
    assert "not an AWS region name" in v.region_error("us_east_1") and "did you mean 'us-east-1'?" in v.region_error("us_east_1")
    assert "expected e.g. 'eu-west-1'" in v.region_error("mars")
    assert "not an AWS region name" in v.region_error("")


@pytest.mark.parametrize("region", ["eusc-de-east-1", "us-isob-east-1", "us-isof-south-1", "eu-isoe-west-1", "cn-northwest-1", "il-central-1"])
def test_every_region_botocore_knows_is_accepted(region):
    # The old REGION_RE refused eusc-de-east-1 and us-isob-east-1.
    assert v.region_error(region) is None


def test_every_region_of_botocores_data_is_accepted():
    import botocore.session

    session = botocore.session.get_session()
    regions = {r for p in session.get_available_partitions() for r in session.get_available_regions("ec2", partition_name=p)}
    assert len(regions) > 30
    assert [r for r in sorted(regions) if v.region_error(r)] == []


def test_a_region_newer_than_botocore_fits_its_partition_pattern_and_is_noted():
    # Not (yet) named in botocore's data, but shaped like the partition's regions: accepted, with a note.
    assert v.region_error("eusc-de-west-2") is None and v.partition_of("eusc-de-west-2") == "aws-eusc"
    assert v.region_error("us-isob-west-7") is None and v.partition_of("us-isob-west-7") == "aws-iso-b"
    note = v.region_note("eu-wset-1")
    assert "'eu-wset-1' is not one botocore names" in note and "did you mean 'eu-west-1'?" in note
    assert v.region_note("eu-west-1") is None


@pytest.mark.parametrize(
    "region,partition",
    [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("us-iso-east-1", "aws-iso"), ("eusc-de-east-1", "aws-eusc")],
)
def test_partition_of_uses_botocores_data(region, partition):
    assert v.partition_of(region) == partition


def test_role_arn_partition_must_match_the_regions():
    assert v.role_arn_error("arn:aws-eusc:iam::210987654321:role/R") is None
    assert "botocore does not know" in v.role_arn_error("arn:aws-moon:iam::210987654321:role/R")
    assert v.partition_error("arn:aws-cn:iam::210987654321:role/R", ["cn-north-1"], "210987654321") is None
    error = v.partition_error("arn:aws:iam::210987654321:role/R", ["cn-north-1", "cn-northwest-1"], "210987654321")
    assert "account 210987654321" in error and "arn:aws:iam::210987654321:role/R" in error
    assert "cn-north-1, cn-northwest-1" in error and "partition aws-cn" in error


def test_role_arn_must_match_its_account():
    assert v.role_arn_error("arn:aws:iam::210987654321:role/CmsPatchingRole", "210987654321") is None
    assert v.role_arn_error("arn:aws:iam::210987654321:role/path/to/Role", None) is None
    assert "belongs to account 210987654321, not to account 111111111111" in v.role_arn_error("arn:aws:iam::210987654321:role/R", "111111111111")
    assert "not an IAM role ARN" in v.role_arn_error("arn:aws:iam::21098765432:role/R")
    assert "not an IAM role ARN" in v.role_arn_error("arn:aws:iam::210987654321:user/R")


@pytest.mark.parametrize(
    "value,ok", [("i-0123456789abcdef0", True), ("i-01234567", True), ("i-0123", False), ("ami-01234567", False), ("i-0123456789ABCDEF0", False)]
)
def test_instance_ids(value, ok):
    assert (v.instance_id_error(value) is None) is ok


@pytest.mark.parametrize("value,ok", [("10", True), ("10%", True), ("100%", True), ("0", False), ("101%", False), ("abc", False), ("5%%", False)])
def test_max_concurrency_follows_the_ssm_pattern(value, ok):
    assert (v.rate_error(value) is None) is ok


@pytest.mark.parametrize("value,ok", [("0", True), ("0%", True), ("3", True), ("100%", True), ("-1", False), ("200%", False)])
def test_max_errors_allows_zero(value, ok):
    assert (v.rate_error(value, allow_zero=True) is None) is ok


def test_run_ids():
    assert v.run_id_error("20261127T180400Z-3f9a1c") is None
    assert v.run_id_error("-starts-with-dash") is not None
    assert v.run_id_error("x" * 65) is not None
    assert v.run_id_error("has space") is not None


def test_s3_urls_and_uuids():
    assert v.s3_url_error("s3://my-bucket/path/file.yaml") is None
    assert v.s3_url_error("https://example.com/baseline.json") is None
    assert v.s3_url_error("ftp://x") is not None
    assert v.uuid_error("2f0c7c7e-1b2a-4c3d-8e9f-0a1b2c3d4e5f") is None
    assert v.uuid_error("not-a-uuid") is not None


def test_external_id_error_never_echoes_the_value():
    message = v.external_id_error("x")
    assert message is not None and "'x'" not in message
