"""Run Command over sandbox time: concurrency, MaxErrors, cancellation, undeliverable agents, outputs.

Default settings: delivery 1 s, invocation 2 s, undeliverable after 5 s; tests move the clock with advance().
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

SCAN = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Scan"]}}
SHELL = {"DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["uptime"]}}
ONE_INVOCATION = 3.0  # delivery + invocation


def _invocations(ssm, command_id, details=False):
    return {item["InstanceId"]: item for item in ssm.list_command_invocations(CommandId=command_id, Details=details)["CommandInvocations"]}


def _statuses(ssm, command_id):
    return {instance_id: item["StatusDetails"] for instance_id, item in _invocations(ssm, command_id).items()}


def _command(ssm, command_id):
    return ssm.list_commands(CommandId=command_id)["Commands"][0]


def test_command_goes_pending_in_progress_success(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    command_id = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    seen = [_command(ssm, command_id)["Status"]]
    for step in (1.0, 2.0):
        sandbox.state.clock.advance(step)
        seen.append(_command(ssm, command_id)["Status"])
    assert seen == ["Pending", "InProgress", "Success"]


def test_max_concurrency_runs_at_most_that_many_at_once_in_order(sandbox, ssm, launch_managed):
    ids = launch_managed(5)
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="2", **SCAN)["Command"]["CommandId"]
    running_counts = []
    for _attempt in range(24):
        running_counts.append(sum(status == "InProgress" for status in _statuses(ssm, command_id).values()))
        sandbox.state.clock.advance(0.5)
    plugins = {instance_id: item["CommandPlugins"][1] for instance_id, item in _invocations(ssm, command_id, details=True).items()}
    starts = [plugins[instance_id]["ResponseStartDateTime"] for instance_id in ids]
    assert max(running_counts) == 2
    assert starts == sorted(starts) and starts[1] < starts[2]


def test_percentage_max_concurrency_is_taken_of_the_targets(sandbox, ssm, launch_managed):
    ids = launch_managed(4)
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="50%", **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(1.5)
    assert list(_statuses(ssm, command_id).values()) == ["InProgress", "InProgress", "Pending", "Pending"]


def test_exceeding_max_errors_terminates_what_has_not_started(sandbox, ssm, launch_managed):
    ids = launch_managed(4)
    sandbox.state.faults.add("command_fail", instance_id=ids[0])
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="1", MaxErrors="0", **SHELL)["Command"]["CommandId"]
    sandbox.state.clock.advance(10 * ONE_INVOCATION)
    command = _command(ssm, command_id)
    assert _statuses(ssm, command_id) == {ids[0]: "Failed", ids[1]: "Terminated", ids[2]: "Terminated", ids[3]: "Terminated"}
    assert (command["Status"], command["StatusDetails"], command["ErrorCount"], command["CompletedCount"]) == ("Failed", "Failed", 1, 4)


def test_errors_within_max_errors_let_the_rest_run(sandbox, ssm, launch_managed):
    ids = launch_managed(4)
    sandbox.state.faults.add("command_fail", instance_id=ids[1])
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="1", MaxErrors="1", **SHELL)["Command"]["CommandId"]
    sandbox.state.clock.advance(10 * ONE_INVOCATION)
    assert list(_statuses(ssm, command_id).values()) == ["Success", "Failed", "Success", "Success"]
    assert _command(ssm, command_id)["Status"] == "Failed"


def test_invocations_already_running_finish_when_max_errors_is_exceeded(sandbox, ssm, launch_managed):
    ids = launch_managed(3)
    sandbox.state.faults.add("command_fail", instance_id=ids[0])
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="2", MaxErrors="0", **SHELL)["Command"]["CommandId"]
    sandbox.state.clock.advance(10 * ONE_INVOCATION)
    assert list(_statuses(ssm, command_id).values()) == ["Failed", "Success", "Terminated"]


def test_cancel_command_cancels_everything_unfinished(sandbox, ssm, launch_managed):
    ids = launch_managed(3)
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="1", **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_INVOCATION + 1.5)
    ssm.cancel_command(CommandId=command_id)
    sandbox.state.clock.advance(30)
    assert list(_statuses(ssm, command_id).values()) == ["Success", "Cancelled", "Cancelled"]
    assert _command(ssm, command_id)["Status"] == "Cancelled"


def test_cancel_command_for_some_instances_leaves_the_others_running(sandbox, ssm, launch_managed):
    ids = launch_managed(3)
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="1", **SCAN)["Command"]["CommandId"]
    ssm.cancel_command(CommandId=command_id, InstanceIds=[ids[1]])
    sandbox.state.clock.advance(30)
    assert list(_statuses(ssm, command_id).values()) == ["Success", "Cancelled", "Success"]


def test_cancel_of_an_unknown_command_is_invalid_command_id(ssm):
    with pytest.raises(ClientError) as raised:
        ssm.cancel_command(CommandId="00000000-0000-0000-0000-000000000000")
    assert raised.value.response["Error"]["Code"] == "InvalidCommandId"


def test_an_offline_agent_makes_the_invocation_delayed_then_undeliverable(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    sandbox.state.set_agent(ids[0], online=False)
    command_id = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(1)
    delayed = _invocations(ssm, command_id)[ids[0]]["Status"]
    sandbox.state.clock.advance(5)
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[0], PluginName="PatchLinux")
    assert (delayed, invocation["Status"], invocation["StatusDetails"], invocation["ResponseCode"]) == ("Delayed", "Failed", "Undeliverable", -1)


def test_agent_going_offline_before_its_turn_makes_only_that_invocation_undeliverable(sandbox, ssm, launch_managed):
    ids = launch_managed(2)
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="1", **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(1.5)
    sandbox.state.faults.add("agent_offline", instance_id=ids[1])
    sandbox.state.clock.advance(30)
    command = _command(ssm, command_id)
    assert list(_statuses(ssm, command_id).values()) == ["Success", "Undeliverable"]
    assert (command["Status"], command["ErrorCount"], command["CompletedCount"]) == ("Success", 0, 2)


def test_instance_stopped_at_send_time_is_undeliverable(sandbox, ec2, ssm, launch_managed):
    ids = launch_managed(1)
    ec2.stop_instances(InstanceIds=ids)
    command_id = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(30)
    assert _statuses(ssm, command_id) == {ids[0]: "Undeliverable"}


def test_nothing_is_dispatched_after_the_delivery_timeout(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(invocation_seconds=20)
    ids = launch_managed(3)
    command_id = ssm.send_command(InstanceIds=ids, MaxConcurrency="1", TimeoutSeconds=30, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(100)
    command = _command(ssm, command_id)
    assert list(_statuses(ssm, command_id).values()) == ["Success", "Success", "DeliveryTimedOut"]
    assert (command["Status"], command["StatusDetails"], command["DeliveryTimedOutCount"]) == ("TimedOut", "DeliveryTimedOut", 1)


def test_shell_script_succeeds_with_output_ok(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    command_id = ssm.send_command(InstanceIds=ids, **SHELL)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_INVOCATION)
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[0])
    assert (invocation["Status"], invocation["PluginName"], invocation["StandardOutputContent"]) == ("Success", "aws:runShellScript", "ok\n")


def test_command_fail_fault_fails_a_shell_script_with_exit_code_one(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    sandbox.state.faults.add("command_fail", instance_id=ids[0])
    command_id = ssm.send_command(InstanceIds=ids, **SHELL)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_INVOCATION)
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[0])
    assert (invocation["Status"], invocation["ResponseCode"]) == ("Failed", 1)


def test_the_other_platforms_patch_steps_report_a_skipped_success(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    command_id = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_INVOCATION)
    plugins = {plugin["Name"]: plugin for plugin in _invocations(ssm, command_id, details=True)[ids[0]]["CommandPlugins"]}
    assert list(plugins) == ["PatchWindows", "PatchLinux", "PatchMacOS"]
    assert plugins["PatchWindows"]["Output"].startswith("Step execution skipped due to unsatisfied preconditions")
    assert "Operation type: Scan" in plugins["PatchLinux"]["Output"]


def test_unknown_plugin_name_is_invalid_plugin_name(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    command_id = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    with pytest.raises(ClientError) as raised:
        ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[0], PluginName="aws:runShellScript")
    assert raised.value.response["Error"]["Code"] == "InvalidPluginName"


def test_invocation_of_an_instance_outside_the_command_does_not_exist(ssm, launch_managed):
    first, second = launch_managed(2)
    command_id = ssm.send_command(InstanceIds=[first], **SCAN)["Command"]["CommandId"]
    with pytest.raises(ClientError) as raised:
        ssm.get_command_invocation(CommandId=command_id, InstanceId=second)
    assert raised.value.response["Error"]["Code"] == "InvocationDoesNotExist"


def test_list_commands_filters_by_status_and_execution_stage(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    done = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_INVOCATION)
    running = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    complete = ssm.list_commands(Filters=[{"key": "ExecutionStage", "value": "Complete"}])["Commands"]
    pending = ssm.list_commands(Filters=[{"key": "Status", "value": "Pending"}])["Commands"]
    assert ([c["CommandId"] for c in complete], [c["CommandId"] for c in pending]) == ([done], [running])


def test_list_commands_pages_newest_first(ssm, launch_managed):
    ids = launch_managed(1)
    sent = [ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"] for _attempt in range(3)]
    pages = list(ssm.get_paginator("list_commands").paginate(PaginationConfig={"PageSize": 2}))
    assert [[c["CommandId"] for c in page["Commands"]] for page in pages] == [sent[::-1][:2], sent[::-1][2:]]


def test_list_commands_by_instance_id(ssm, launch_managed):
    first, second = launch_managed(2)
    mine = ssm.send_command(InstanceIds=[first], **SCAN)["Command"]["CommandId"]
    ssm.send_command(InstanceIds=[second], **SCAN)
    assert [c["CommandId"] for c in ssm.list_commands(InstanceId=first)["Commands"]] == [mine]


def test_command_executed_waiter_works_with_fast_settings(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(command_delivery_seconds=0.05, invocation_seconds=0.05)
    ids = launch_managed(1)
    command_id = ssm.send_command(InstanceIds=ids, **SHELL)["Command"]["CommandId"]
    ssm.get_waiter("command_executed").wait(CommandId=command_id, InstanceId=ids[0], WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[0])["Status"] == "Success"
