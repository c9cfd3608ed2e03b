"""Retries: throttling is retried with jittered backoff, mutating calls never retried on server errors, every call counted."""

import botocore.session
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from ansible_collections.cms.patching.plugins.module_utils._retry import CallStats, RetryingClient, RetryPolicy, paginate


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
