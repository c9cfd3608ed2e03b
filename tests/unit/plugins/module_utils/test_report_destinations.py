"""Report destinations: one precedence (extra vars > environment > landing zone > defaults), checked before any AWS call,
and the S3 upload through the collection's session layer (against the sandbox's S3)."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from ansible_collections.cms.patching.plugins.module_utils import _report_dest as dest
from ansible_collections.cms.patching.plugins.module_utils import _report_upload
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError

LZ_FILE = "/srv/inventories/prod/landing_zone.yml"


def test_each_key_comes_from_the_highest_tier_that_gives_it():
    settings, origin = dest.resolve(
        extra={"cms_patching_report_dir": "/extra"},
        environ={"CMS_PATCHING_REPORT_DIR": "/env", "CMS_PATCHING_REPORT_FILE": "env-{run_id}.csv", "CMS_PATCHING_REPORT_S3_PREFIX": "env/{lz}"},
        lz={"dir": "/lz", "file_name": "lz.csv", "s3_bucket": "lz-bucket", "s3_prefix": "lz"},
        defaults={"dir": "./reports", "file_name": "{lz}-{run_id}.csv"},
        lz_source=LZ_FILE,
    )
    assert (settings["dir"], settings["file_name"], settings["s3_bucket"], settings["s3_prefix"]) == ("/extra", "env-{run_id}.csv", "lz-bucket", "env/{lz}")
    assert origin["dir"] == "extra var cms_patching_report_dir"
    assert origin["file_name"] == "environment variable CMS_PATCHING_REPORT_FILE"
    assert origin["s3_bucket"] == LZ_FILE + ": cms_patching_landing_zone.report.s3.bucket"
    # A bucket without an explicit encryption is written with SSE-S3.
    assert settings["s3_sse"] == "AES256"


def test_the_landing_zone_no_longer_overrides_the_environment():
    settings = dest.resolve(environ={"CMS_PATCHING_REPORT_DIR": "/job/artifacts"}, lz={"dir": "/lz"}, defaults={"dir": "./reports"})[0]
    assert settings["dir"] == "/job/artifacts"


@pytest.mark.parametrize(
    "tiers, expected",
    [
        ({"extra": {"cms_patching_report_file_name": "{lz}-{when}.csv"}}, "extra var cms_patching_report_file_name: unknown placeholder {when}"),
        ({"environ": {"CMS_PATCHING_REPORT_FILE": "{date}.csv"}}, "environment variable CMS_PATCHING_REPORT_FILE: unknown placeholder {date}"),
        ({"lz": {"file_name": "{lz"}}, LZ_FILE + ": cms_patching_landing_zone.report.file_name: is not a valid template"),
        ({"lz": {"file_name": "sub/{lz}.csv"}}, "report.file_name: 'sub/{lz}.csv' must be a plain file name"),
        ({"lz": {"s3_bucket": "b", "s3_sse": "aws:kms2"}}, "report.s3.sse: 'aws:kms2' is not one of AES256, aws:kms"),
        ({"lz": {"s3_bucket": "b", "s3_sse": "AES256", "s3_kms_key_id": "k"}}, "report.s3.kms_key_id: a KMS key needs s3 sse aws:kms"),
        ({"environ": {"CMS_PATCHING_REPORT_S3_PREFIX": "x"}}, "environment variable CMS_PATCHING_REPORT_S3_PREFIX: set without an S3 bucket"),
    ],
)
def test_a_bad_value_is_refused_naming_where_it_was_set(tiers, expected):
    with pytest.raises(dest.DestinationError) as raised:
        dest.resolve(lz_source=LZ_FILE, **tiers)
    assert expected in str(raised.value)


def test_names_keys_and_artifacts():
    settings = dest.resolve(lz={"dir": "/r", "s3_bucket": "b", "s3_prefix": "/cms/{lz}/{run_id}/", "s3_kms_key_id": "alias/k"})[0]
    assert settings["s3_sse"] == "aws:kms"
    assert dest.s3_keys(settings, "prod", "r1") == ("cms/prod/r1/prod-r1.csv", "cms/prod/r1/prod-r1.json")
    assert dest.describe(settings, "prod", "r1") == {
        "csv": "/r/prod-r1.csv",
        "json": "/r/prod-r1.json",
        "s3_csv": "s3://b/cms/prod/r1/prod-r1.csv",
        "s3_json": "s3://b/cms/prod/r1/prod-r1.json",
    }


ROLE = "arn:aws:iam::210987654321:role/CmsPatchingRole"
ACCOUNTS = [{"account_id": "123456789012"}, {"account_id": "210987654321", "role_arn": ROLE, "external_id": "cms-demo"}]


def _files(tmp_path):
    (tmp_path / "r.csv").write_text("run_id,lz\nr1,demo\n")
    (tmp_path / "r.json").write_text(json.dumps({"run_id": "r1"}))
    return [(str(tmp_path / "r.csv"), "p/r.csv"), (str(tmp_path / "r.json"), "p/r.json")]


def _s3(aws, account):
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    if account != "123456789012":
        creds = session.client("sts", region_name="us-east-1", endpoint_url=aws.endpoint).assume_role(
            RoleArn=ROLE, RoleSessionName="tests", ExternalId="cms-demo"
        )["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"]
        )
    return session.client("s3", region_name="us-east-1", endpoint_url=aws.endpoint)


def test_upload_reaches_the_bucket_account_by_its_role_with_sse_kms(aws, tmp_path):
    aws.seed("demo")
    _s3(aws, "210987654321").create_bucket(Bucket="workload-reports")
    settings = {"s3_bucket": "workload-reports", "s3_sse": "aws:kms", "s3_kms_key_id": "alias/reports", "s3_account_id": "210987654321"}
    uris = _report_upload.put_files(settings, _files(tmp_path), ACCOUNTS)
    assert uris == ["s3://workload-reports/p/r.csv", "s3://workload-reports/p/r.json"]
    got = _s3(aws, "210987654321").get_object(Bucket="workload-reports", Key="p/r.csv")
    assert got["Body"].read() == b"run_id,lz\nr1,demo\n"
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"], got["ContentType"]) == ("aws:kms", "alias/reports", "text/csv; charset=utf-8")
    # The role was assumed with its external ID, as the modules do, and the object went to that account.
    log = aws.state.calls.log()
    assert [c["account"] for c in log if c["operation"] == "s3:PutObject"] == ["210987654321", "210987654321"]
    assert any(c["operation"] == "sts:AssumeRole" for c in log)


def test_upload_with_own_credentials_defaults_to_the_first_account_and_sse_s3(aws, tmp_path):
    aws.seed("demo")
    _s3(aws, "123456789012").create_bucket(Bucket="reports")
    _report_upload.put_files({"s3_bucket": "reports", "s3_sse": "AES256"}, _files(tmp_path), ACCOUNTS)
    assert _s3(aws, "123456789012").head_object(Bucket="reports", Key="p/r.json")["ServerSideEncryption"] == "AES256"


def test_a_missing_bucket_is_a_fleet_error_naming_bucket_and_key(aws, tmp_path):
    aws.seed("demo")
    with pytest.raises(FleetError) as raised:
        _report_upload.put_files({"s3_bucket": "nowhere"}, _files(tmp_path), ACCOUNTS)
    assert str(raised.value).startswith("could not upload the report to s3://nowhere/p/r.csv: NoSuchBucket")


class FlakyS3:
    def __init__(self, failures):
        self.failures = failures
        self.requests = []

    def put_object(self, **request):
        self.requests.append(request)
        if len(self.requests) <= self.failures:
            raise ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "PutObject")
        return {}


def test_a_transient_put_is_sent_again_because_it_is_idempotent(tmp_path, monkeypatch):
    flaky = FlakyS3(failures=2)
    monkeypatch.setattr(_report_upload.FleetSession, "client", lambda self, *args: flaky)
    policy = RetryPolicy(max_attempts=5, sleep=lambda s: None)
    _report_upload.put_files({"s3_bucket": "b"}, _files(tmp_path)[:1], ACCOUNTS, policy=policy)
    assert len(flaky.requests) == 3 and {r["Key"] for r in flaky.requests} == {"p/r.csv"}
