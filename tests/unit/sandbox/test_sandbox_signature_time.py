"""A request signed more than 15 minutes from AWS's time is refused (RequestExpired), as AWS's "Common Errors" say."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


def _refused(call):
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    return error["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("skew", [16 * 60, -16 * 60])
def test_a_controller_clock_more_than_15_minutes_off_gets_request_expired_from_every_service(sandbox, client, skew):
    sandbox.state.update_settings(clock_skew_seconds=skew)
    sandbox.state.calls.reset()
    assert _refused(client("ec2").describe_instances) == ("RequestExpired", 400)
    assert _refused(client("ssm").list_commands) == ("RequestExpired", 400)
    assert _refused(client("sts").get_caller_identity) == ("RequestExpired", 400)
    assert _refused(lambda: client("s3").list_objects_v2(Bucket="any")) == ("RequestTimeTooSkewed", 403)
    # Refused before moto: logged as such, nothing carried out.
    assert {c["injected"] for c in sandbox.state.calls.log()} == {"request_expired"}


def test_within_15_minutes_the_skew_only_shows_in_aws_timestamps(sandbox, client):
    sandbox.state.update_settings(clock_skew_seconds=14 * 60)
    assert client("ec2").describe_instances()["Reservations"] == []
    assert client("sts").get_caller_identity()["Account"]


def test_a_window_of_zero_turns_the_check_off(sandbox, client):
    sandbox.state.update_settings(clock_skew_seconds=3600, signature_window_seconds=0)
    assert client("ec2").describe_instances()["Reservations"] == []


def test_the_scaled_clock_does_not_count_as_skew(sandbox, client):
    # time_scale makes waits short; it does not move AWS's clock away from the controller's.
    sandbox.state.update_settings(time_scale=60)
    sandbox.state.clock.advance(6 * 3600)
    assert client("ec2").describe_instances()["Reservations"] == []
