"""S3 through the sandbox's one endpoint: moto's S3, with every call counted and logged like the other services',
its faults answered in S3's own REST error format (the patch_report callback uploads reports there)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from sandbox_testkit import OTHER_ACCOUNT, OWN_ACCOUNT
from sandbox_testkit import OTHER_ROLE as ROLE


def test_objects_round_trip_with_their_encryption(client):
    s3 = client("s3")
    s3.create_bucket(Bucket="reports")
    s3.put_object(Bucket="reports", Key="demo/r1.csv", Body=b"a,b\n", ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/reports")
    s3.put_object(Bucket="reports", Key="demo/r1.json", Body=b"{}", ServerSideEncryption="AES256")
    csv_object = s3.get_object(Bucket="reports", Key="demo/r1.csv")
    assert csv_object["Body"].read() == b"a,b\n"
    assert (csv_object["ServerSideEncryption"], csv_object["SSEKMSKeyId"]) == ("aws:kms", "alias/reports")
    assert s3.head_object(Bucket="reports", Key="demo/r1.json")["ServerSideEncryption"] == "AES256"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="reports", Prefix="demo/")["Contents"]] == ["demo/r1.csv", "demo/r1.json"]


def test_s3_calls_are_counted_and_logged_by_operation_and_account(sandbox, client):
    s3 = client("s3")
    s3.create_bucket(Bucket="reports")
    s3.put_object(Bucket="reports", Key="k", Body=b"1")
    s3.get_object(Bucket="reports", Key="k")
    s3.list_objects_v2(Bucket="reports")
    assert sandbox.state.calls.snapshot()["operations"] == {"s3:CreateBucket": 1, "s3:PutObject": 1, "s3:GetObject": 1, "s3:ListObjectsV2": 1}
    logged = [(c["operation"], c["account"], c["write"]) for c in sandbox.state.calls.log()]
    assert ("s3:PutObject", OWN_ACCOUNT, True) in logged and ("s3:GetObject", OWN_ACCOUNT, False) in logged


def test_a_bucket_belongs_to_the_account_that_made_it(sandbox, client):
    credentials = client("sts").assume_role(RoleArn=ROLE, RoleSessionName="tests")["Credentials"]
    other = client(
        "s3", aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"]
    )
    other.create_bucket(Bucket="workload-reports")
    other.put_object(Bucket="workload-reports", Key="k", Body=b"1")
    assert [c["account"] for c in sandbox.state.calls.log() if c["operation"] == "s3:PutObject"] == [OTHER_ACCOUNT]


def test_a_throttled_s3_call_answers_slow_down_in_s3_format(sandbox, client):
    s3 = client("s3")
    s3.create_bucket(Bucket="reports")
    sandbox.state.faults.add("throttle", operation="s3:PutObject", every=1)
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket="reports", Key="k", Body=b"1")
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_an_injected_server_error_on_s3_answers_in_s3_format(sandbox, client):
    s3 = client("s3")
    s3.create_bucket(Bucket="reports")
    sandbox.state.update_settings(server_error_rate=1.0)
    try:
        with pytest.raises(ClientError) as raised:
            s3.put_object(Bucket="reports", Key="k", Body=b"1")
    finally:
        sandbox.state.update_settings(server_error_rate=0.0)
    assert raised.value.response["Error"]["Code"] in ("InternalError", "ServiceUnavailable")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
