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
    assert "not a region botocore knows" in v.region_error("eu-wset-1")
    assert "not an AWS region name" in v.region_error("us_east_1")
    assert "not an AWS region name" in v.region_error("")


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
