"""Retries: throttling is retried with jittered backoff, mutating calls never retried on server errors, every call counted."""

import botocore.session
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from ansible_collections.cms.patching.plugins.module_utils._retry import CallStats, RetryingClient, RetryPolicy, error_code, is_transient, paginate


def client_and_stubber(service="ec2"):
    client = botocore.session.get_session().create_client(service, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def make(service="ec2", attempts=5):
    client, stubber = client_and_stubber(service)
    sleeps = []
    policy = RetryPolicy(max_attempts=attempts, base_delay=1.0, max_delay=8.0, sleep=sleeps.append)
    stats = CallStats()
    return RetryingClient(client, policy, stats), stubber, stats, sleeps


def test_throttling_is_retried_then_succeeds():
    wrapped, stubber, stats, sleeps = make()
    stubber.add_client_error("describe_images", service_error_code="RequestLimitExceeded", http_status_code=503)
    stubber.add_client_error("describe_images", service_error_code="RequestLimitExceeded", http_status_code=503)
    stubber.add_response("describe_images", {"Images": []})
    with stubber:
        assert wrapped.describe_images(Owners=["self"]) == {"Images": []}
    assert stats.calls == {"ec2:DescribeImages": 3} and stats.retries == {"ec2:DescribeImages": 2}
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0


def test_ssm_throttling_exception_is_retried():
    wrapped, stubber, stats, _sleeps = make("ssm")
    stubber.add_client_error("list_commands", service_error_code="ThrottlingException", http_status_code=400)
    stubber.add_response("list_commands", {"Commands": []})
    with stubber:
        wrapped.list_commands()
    assert stats.retries == {"ssm:ListCommands": 1}


def test_mutating_call_is_not_retried_on_a_server_error():
    wrapped, stubber, stats, sleeps = make()
    stubber.add_client_error("create_image", service_error_code="InternalError", http_status_code=500)
    with stubber, pytest.raises(ClientError):
        wrapped.create_image(InstanceId="i-01234567", Name="xyz")
    assert stats.calls == {"ec2:CreateImage": 1} and not sleeps


def test_mutating_call_is_retried_on_throttling():
    wrapped, stubber, stats, _sleeps = make()
    stubber.add_client_error("create_image", service_error_code="RequestLimitExceeded", http_status_code=503)
    stubber.add_response("create_image", {"ImageId": "ami-12345678"})
    with stubber:
        assert wrapped.create_image(InstanceId="i-01234567", Name="xyz")["ImageId"] == "ami-12345678"
    assert stats.calls == {"ec2:CreateImage": 2}


def test_read_call_is_retried_on_a_server_error():
    wrapped, stubber, stats, _sleeps = make()
    stubber.add_client_error("describe_snapshots", service_error_code="InternalError", http_status_code=500)
    stubber.add_response("describe_snapshots", {"Snapshots": []})
    with stubber:
        wrapped.describe_snapshots()
    assert stats.retries == {"ec2:DescribeSnapshots": 1}


def test_other_errors_are_raised_at_once():
    wrapped, stubber, stats, sleeps = make()
    stubber.add_client_error("describe_instances", service_error_code="UnauthorizedOperation", http_status_code=403)
    with stubber, pytest.raises(ClientError):
        wrapped.describe_instances()
    assert stats.calls == {"ec2:DescribeInstances": 1} and not sleeps


def test_gives_up_after_max_attempts():
    wrapped, stubber, stats, sleeps = make(attempts=3)
    for _attempt in range(3):
        stubber.add_client_error("describe_images", service_error_code="Throttling", http_status_code=400)
    with stubber, pytest.raises(ClientError):
        wrapped.describe_images()
    assert stats.calls == {"ec2:DescribeImages": 3} and len(sleeps) == 2


def test_connection_errors_retried_for_reads_only():
    calls = []

    class Fake:
        class meta:  # noqa: N801 - mimics botocore's client.meta
            method_to_api_mapping = {"describe_images": "DescribeImages", "send_command": "SendCommand"}

            class service_model:  # noqa: N801
                service_name = "ec2"

        def describe_images(self, **kwargs):
            calls.append("describe")
            if len(calls) == 1:
                raise EndpointConnectionError(endpoint_url="http://x")
            return {"Images": []}

        def send_command(self, **kwargs):
            calls.append("send")
            raise EndpointConnectionError(endpoint_url="http://x")

    wrapped = RetryingClient(Fake(), RetryPolicy(sleep=lambda s: None), CallStats())
    assert wrapped.describe_images() == {"Images": []}
    with pytest.raises(EndpointConnectionError):
        wrapped.send_command()
    assert calls == ["describe", "describe", "send"]


def test_backoff_ceiling_grows_and_is_capped():
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0)
    assert all(0 <= policy.delay(0) <= 1.0 for _sample in range(50))
    assert all(0 <= policy.delay(10) <= 4.0 for _sample in range(50))
    assert max(policy.delay(10) for _sample in range(200)) > 2.0


def test_paginate_follows_next_token():
    wrapped, stubber, stats, _sleeps = make()
    stubber.add_response("describe_images", {"Images": [{"ImageId": "ami-1"}], "NextToken": "t"})
    stubber.add_response("describe_images", {"Images": [{"ImageId": "ami-2"}]}, {"NextToken": "t", "MaxResults": 5})
    with stubber:
        assert [i["ImageId"] for i in paginate(wrapped.describe_images, "Images", MaxResults=5)] == ["ami-1", "ami-2"]
    assert stats.as_dict()["total"] == 2


def _client_error(code, status):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_is_transient_covers_every_services_server_errors_but_not_throttling_or_client_errors():
    from botocore.exceptions import EndpointConnectionError

    from ansible_collections.cms.patching.plugins.module_utils._retry import is_transient

    assert is_transient(_client_error("InternalError", 500))  # EC2
    assert is_transient(_client_error("InternalServerError", 500))  # SSM
    assert is_transient(_client_error("ServiceUnavailable", 503))  # STS / S3
    assert is_transient(_client_error("SomethingNew", 502))  # any 5xx
    assert is_transient(EndpointConnectionError(endpoint_url="https://ec2"))
    assert not is_transient(_client_error("RequestLimitExceeded", 503))  # throttled: rejected before AWS acted
    assert not is_transient(_client_error("InvalidInstanceId", 400))


def test_server_clock_follows_the_date_header_not_the_controller_clock():
    from ansible_collections.cms.patching.plugins.module_utils._retry import ServerClock

    ticks = [1000.0]
    clock = ServerClock(monotonic=lambda: ticks[0])
    assert clock.now() is None
    clock.observe({"ResponseMetadata": {"HTTPHeaders": {"date": "Tue, 01 Dec 2026 12:00:00 GMT"}}})
    base = 1796126400.0  # 2026-12-01T12:00:00Z
    assert clock.now() == base
    ticks[0] += 7.5
    assert clock.now() == base + 7.5
    # An older answer (a slow call that started earlier) never moves AWS time back.
    clock.observe({"ResponseMetadata": {"HTTPHeaders": {"date": "Tue, 01 Dec 2026 11:59:00 GMT"}}})
    assert clock.now() == base + 7.5
    clock.observe({"ResponseMetadata": {"HTTPHeaders": {"date": "not a date"}}})
    assert clock.now() == base + 7.5


def test_ssm_internal_server_error_is_retried_for_reads():
    wrapped, stubber, stats, sleeps = make("ssm")
    stubber.add_client_error("describe_instance_information", service_error_code="InternalServerError", http_status_code=500)
    stubber.add_response("describe_instance_information", {"InstanceInformationList": []})
    with stubber:
        assert wrapped.describe_instance_information() == {"InstanceInformationList": []}
    assert stats.retries == {"ssm:DescribeInstanceInformation": 1} and len(sleeps) == 1


def test_ssm_send_command_is_not_retried_on_internal_server_error():
    wrapped, stubber, stats, sleeps = make("ssm")
    stubber.add_client_error("send_command", service_error_code="InternalServerError", http_status_code=500)
    with stubber, pytest.raises(ClientError):
        wrapped.send_command(DocumentName="AWS-RunPatchBaseline", InstanceIds=["i-01234567"])
    assert stats.calls == {"ssm:SendCommand": 1} and not sleeps


def test_sts_service_unavailable_is_retried_for_assume_role_and_get_caller_identity():
    # AssumeRole creates nothing: it is as safe to repeat as a read.
    wrapped, stubber, stats, _sleeps = make("sts")
    stubber.add_client_error("assume_role", service_error_code="ServiceUnavailable", http_status_code=503)
    stubber.add_response(
        "assume_role",
        {
            "Credentials": {"AccessKeyId": "ASIAEXAMPLEEXAMPLE", "SecretAccessKey": "s" * 20, "SessionToken": "t" * 20, "Expiration": "2030-01-01T00:00:00Z"},
            "AssumedRoleUser": {"AssumedRoleId": "AROA:x", "Arn": "arn:aws:sts::210987654321:assumed-role/R/x"},
        },
    )
    stubber.add_client_error("get_caller_identity", service_error_code="ServiceUnavailable", http_status_code=503)
    stubber.add_response("get_caller_identity", {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/u", "UserId": "AIDA"})
    with stubber:
        wrapped.assume_role(RoleArn="arn:aws:iam::210987654321:role/R", RoleSessionName="xy")
        wrapped.get_caller_identity()
    assert stats.retries == {"sts:AssumeRole": 1, "sts:GetCallerIdentity": 1}


class _FlakyConnection:
    """A botocore-like client whose first call of each method raises the given network error."""

    class meta:  # noqa: N801 - mimics botocore's client.meta
        method_to_api_mapping = {"describe_instances": "DescribeInstances", "create_image": "CreateImage"}

        class service_model:  # noqa: N801
            service_name = "ec2"

    def __init__(self, error):
        self.error = error
        self.calls = []

    def _call(self, name):
        self.calls.append(name)
        if self.calls.count(name) == 1:
            raise self.error
        return {"ok": name}

    def describe_instances(self, **kwargs):
        return self._call("describe_instances")

    def create_image(self, **kwargs):
        return self._call("create_image")


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"),
    ],
    ids=["EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError"],
)
def test_network_errors_are_transient_retried_for_reads_and_never_for_writes(error):
    fake = _FlakyConnection(error)
    stats = CallStats()
    wrapped = RetryingClient(fake, RetryPolicy(sleep=lambda s: None), stats)
    assert is_transient(error)
    assert wrapped.describe_instances() == {"ok": "describe_instances"}
    with pytest.raises(type(error)):
        wrapped.create_image(InstanceId="i-01234567", Name="n")
    assert fake.calls == ["describe_instances", "describe_instances", "create_image"]
    assert stats.retries == {"ec2:DescribeInstances": 1}


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException", "RequestExpired"])
@pytest.mark.parametrize("operation", ["describe_images", "create_tags"])
def test_expired_credentials_renew_once_and_repeat_the_call_reads_and_writes_alike(code, operation):
    wrapped, stubber, stats, sleeps = make()
    renewals = []
    wrapped = RetryingClient(wrapped._client, wrapped._policy, stats, on_expired=lambda exc, started, again: renewals.append((error_code(exc), again)))
    params = {"describe_images": {}, "create_tags": {"Resources": ["ami-12345678"], "Tags": [{"Key": "k", "Value": "v"}]}}[operation]
    stubber.add_client_error(operation, service_error_code=code, http_status_code=400)
    stubber.add_response(operation, {"Images": []} if operation == "describe_images" else {})
    with stubber:
        getattr(wrapped, operation)(**params)
        stubber.assert_no_pending_responses()
    assert renewals == [(code, False)]
    assert sum(stats.calls.values()) == 2 and not sleeps


def test_expired_again_after_renewal_is_handed_to_the_session_which_raises():
    from ansible_collections.cms.patching.plugins.module_utils._errors import FleetError

    wrapped, stubber, stats, _sleeps = make()
    seen = []

    def on_expired(exc, started, again):
        seen.append(again)
        if again:
            raise FleetError("still expired")

    wrapped = RetryingClient(wrapped._client, wrapped._policy, stats, on_expired=on_expired)
    stubber.add_client_error("describe_images", service_error_code="ExpiredToken", http_status_code=400)
    stubber.add_client_error("describe_images", service_error_code="ExpiredToken", http_status_code=400)
    with stubber, pytest.raises(FleetError, match="still expired"):
        wrapped.describe_images()
    assert seen == [False, True] and stats.calls == {"ec2:DescribeImages": 2}


def test_without_a_session_hook_expired_credentials_are_raised():
    wrapped, stubber, stats, _sleeps = make()
    stubber.add_client_error("describe_images", service_error_code="ExpiredToken", http_status_code=400)
    with stubber, pytest.raises(ClientError):
        wrapped.describe_images()
    assert stats.calls == {"ec2:DescribeImages": 1}


def test_an_error_answer_moves_the_server_clock_too():
    from ansible_collections.cms.patching.plugins.module_utils._retry import ServerClock

    client, stubber = client_and_stubber()
    clock = ServerClock(monotonic=lambda: 0.0)
    wrapped = RetryingClient(client, RetryPolicy(sleep=lambda s: None), CallStats(), clock)
    stubber.add_client_error(
        "describe_images",
        service_error_code="UnauthorizedOperation",
        http_status_code=403,
        response_meta={"HTTPHeaders": {"date": "Tue, 01 Dec 2026 12:00:00 GMT"}},
    )
    with stubber, pytest.raises(ClientError):
        wrapped.describe_images()
    assert clock.now() == 1796126400.0


def test_every_call_checks_for_a_cancel_first(monkeypatch):
    from ansible_collections.cms.patching.plugins.module_utils import _cancel

    wrapped, stubber, stats, _sleeps = make()
    stubber.add_response("describe_images", {"Images": []})
    with stubber:
        wrapped.describe_images()
    monkeypatch.setitem(_cancel._state, "reason", "received SIGTERM")
    with stubber, pytest.raises(_cancel.Cancelled, match="cancelled: received SIGTERM"):
        wrapped.create_image(InstanceId="i-01234567", Name="n")
    # The cancelled call was never made (the stubber had no answer queued for it) nor counted.
    assert stats.calls == {"ec2:DescribeImages": 1}


def test_default_backoff_sleep_is_interruptible():
    from ansible_collections.cms.patching.plugins.module_utils import _cancel

    assert RetryPolicy().sleep is _cancel.sleep


def test_idempotent_writes_are_retried_after_a_server_error_other_writes_are_not():
    from botocore.exceptions import ClientError

    from ansible_collections.cms.patching.plugins.module_utils._retry import CallStats, RetryingClient, RetryPolicy

    class Fake:
        class meta:  # noqa: N801  pylint: disable=invalid-name,too-few-public-methods
            service_model = type("M", (), {"service_name": "ec2"})()
            method_to_api_mapping = {"create_tags": "CreateTags", "create_image": "CreateImage"}

        def __init__(self):
            self.calls = []

        def _fail_once(self, name):
            self.calls.append(name)
            if self.calls.count(name) == 1:
                raise ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, name)
            return {}

        def create_tags(self, **kwargs):
            return self._fail_once("create_tags")

        def create_image(self, **kwargs):
            return self._fail_once("create_image")

    fake = Fake()
    client = RetryingClient(fake, RetryPolicy(sleep=lambda s: None), CallStats())
    assert client.create_tags(Resources=["ami-1"], Tags=[]) == {}
    assert fake.calls == ["create_tags", "create_tags"]
    # CreateImage may have made an AMI: the caller looks before sending it again.
    with pytest.raises(ClientError):
        client.create_image(InstanceId="i-1", Name="n")
    assert fake.calls.count("create_image") == 1
