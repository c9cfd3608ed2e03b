"""The logs tests of invariants read: every accepted SendCommand, and the peak number of invocations InProgress at once."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

SHELL = {"DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["uptime"]}}
PATCH = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Install"]}}


def _get(sandbox, path):
    with urllib.request.urlopen(f"{sandbox.endpoint}/_sandbox/{path}", timeout=10) as response:
        return json.loads(response.read())


def test_command_log_lists_every_accepted_send_command_in_order(sandbox, ssm, client, launch_managed):
    ids = launch_managed(2)
    first = ssm.send_command(InstanceIds=ids, Comment="cms.patching run=r1 lz=demo wave-1", **PATCH)["Command"]
    with pytest.raises(ClientError):
        ssm.send_command(InstanceIds=ids + ["i-0123456789abcdef0"], Comment="rejected", **PATCH)
    second = ssm.send_command(InstanceIds=ids[:1], Comment="post-check", **SHELL)["Command"]

    log = sandbox.state.command_log()

    assert [(entry["command_id"], entry["document"], entry["instance_ids"], entry["comment"]) for entry in log] == [
        (first["CommandId"], "AWS-RunPatchBaseline", ids, "cms.patching run=r1 lz=demo wave-1"),
        (second["CommandId"], "AWS-RunShellScript", ids[:1], "post-check"),
    ]
    assert (log[0]["account"], log[0]["region"], log[0]["parameters"]) == ("123456789012", "us-east-1", {"Operation": ["Install"]})
    assert log[0]["requested_at"] == pytest.approx(first["RequestedDateTime"].timestamp(), abs=0.001)
    assert _get(sandbox, "commands/log")["commands"] == json.loads(json.dumps(log))


def test_command_log_covers_every_account_and_region(sandbox, client, launch):
    ec2_eu = client("ec2", region="eu-west-1")
    ids = launch(1, ec2_client=ec2_eu, image_id=ec2_eu.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
    sandbox.state.register_managed(ids)
    client("ssm", region="eu-west-1").send_command(InstanceIds=ids, **PATCH)
    assert [(entry["region"], entry["instance_ids"]) for entry in sandbox.state.command_log()] == [("eu-west-1", ids)]


def test_peak_in_progress_counts_invocations_running_at_once(sandbox, ssm, launch_managed):
    ids = launch_managed(5)
    ssm.send_command(InstanceIds=ids, MaxConcurrency="2", Comment="wave-1", **SHELL)
    sandbox.state.clock.advance(60)
    assert sandbox.state.peak_in_progress()["peak"] == 2


def test_peak_in_progress_adds_up_overlapping_commands_with_the_comment(sandbox, ssm, launch_managed):
    ids = launch_managed(7)
    ssm.send_command(InstanceIds=ids[:3], Comment="run=r1 wave-1", **SHELL)
    ssm.send_command(InstanceIds=ids[3:6], Comment="run=r1 wave-1", **SHELL)
    ssm.send_command(InstanceIds=ids[6:], Comment="run=r1 wave-2", **SHELL)
    sandbox.state.clock.advance(60)
    assert sandbox.state.peak_in_progress("wave-1")["peak"] == 6
    assert sandbox.state.peak_in_progress("wave-2")["peak"] == 1
    assert sandbox.state.peak_in_progress()["peak"] == 7
    query = urllib.parse.urlencode({"comment_contains": "wave-1"})
    assert _get(sandbox, f"concurrency?{query}")["peak"] == 6


def test_peak_in_progress_ignores_what_has_not_started_yet(sandbox, ssm, launch_managed):
    ids = launch_managed(3)
    ssm.send_command(InstanceIds=ids, **SHELL)
    assert sandbox.state.peak_in_progress()["peak"] == 0  # still Pending (delivery takes 1 s)
    sandbox.state.clock.advance(1.5)
    assert sandbox.state.peak_in_progress()["peak"] == 3


def test_invocations_one_after_another_do_not_overlap(sandbox, ssm, launch_managed):
    ids = launch_managed(3)
    ssm.send_command(InstanceIds=ids, MaxConcurrency="1", **SHELL)
    sandbox.state.clock.advance(60)
    assert sandbox.state.peak_in_progress()["peak"] == 1
