"""AWS-RunPatchBaseline outcomes and the patch compliance APIs; outcomes are predictable from the instance id."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from sandbox.ssm.patch_catalog import missing_count

ONE_RUN = 4.0  # delivery + invocation + reboot


def _patch(ssm, sandbox, instance_ids, operation, **parameters):
    command = ssm.send_command(
        InstanceIds=instance_ids,
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": [operation], **{key: [value] for key, value in parameters.items()}},
    )["Command"]
    sandbox.state.clock.advance(ONE_RUN)
    return command["CommandId"]


def _states(ssm, instance_ids):
    return {state["InstanceId"]: state for state in ssm.describe_instance_patch_states(InstanceIds=instance_ids)["InstancePatchStates"]}


@pytest.fixture
def missing_some(launch_managed):
    """A managed Linux instance that misses at least one patch (the count comes from its id)."""
    for _attempt in range(10):
        candidates = [instance_id for instance_id in launch_managed(5) if missing_count(instance_id) > 0]
        if candidates:
            return candidates[0]
    raise AssertionError("no instance with missing patches in 50 tries")


def test_never_patched_instances_have_no_patch_state(ssm, launch_managed):
    assert ssm.describe_instance_patch_states(InstanceIds=launch_managed(1))["InstancePatchStates"] == []


def test_scan_reports_the_missing_patches_and_installs_nothing(sandbox, ssm, launch_managed):
    ids = launch_managed(4)
    _patch(ssm, sandbox, ids, "Scan")
    states = _states(ssm, ids)
    assert {instance_id: states[instance_id]["MissingCount"] for instance_id in ids} == {instance_id: missing_count(instance_id) for instance_id in ids}
    assert {state["Operation"] for state in states.values()} == {"Scan"}


def test_install_installs_the_missing_patches(sandbox, ssm, missing_some):
    _patch(ssm, sandbox, [missing_some], "Scan")
    before = _states(ssm, [missing_some])[missing_some]
    _patch(ssm, sandbox, [missing_some], "Install")
    after = _states(ssm, [missing_some])[missing_some]
    expected_installed = before["InstalledCount"] + missing_count(missing_some)
    assert (after["MissingCount"], after["InstalledCount"], after["InstalledPendingRebootCount"]) == (0, expected_installed, 0)
    assert (after["Operation"], after["RebootOption"]) == ("Install", "RebootIfNeeded")


def test_install_with_reboot_if_needed_reboots_the_instance(sandbox, ssm, missing_some):
    command_id = _patch(ssm, sandbox, [missing_some], "Install")
    assert [(reboot["instance_id"], reboot["command_id"]) for reboot in sandbox.state.describe()["reboots"]] == [(missing_some, command_id)]


def test_install_with_no_reboot_leaves_patches_pending_reboot(sandbox, ssm, missing_some):
    _patch(ssm, sandbox, [missing_some], "Install", RebootOption="NoReboot")
    state = _states(ssm, [missing_some])[missing_some]
    assert (state["InstalledPendingRebootCount"], state["MissingCount"]) == (missing_count(missing_some), 0)
    assert "LastNoRebootInstallOperationTime" in state
    assert sandbox.state.describe()["reboots"] == []


def test_a_later_reboot_if_needed_install_clears_the_pending_reboot(sandbox, ssm, missing_some):
    _patch(ssm, sandbox, [missing_some], "Install", RebootOption="NoReboot")
    _patch(ssm, sandbox, [missing_some], "Install")
    assert _states(ssm, [missing_some])[missing_some]["InstalledPendingRebootCount"] == 0


def test_patch_fail_ends_failed_with_exit_code_one_and_failed_patches(sandbox, ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    sandbox.state.faults.add("patch_fail", instance_id=instance_id)
    command_id = _patch(ssm, sandbox, [instance_id], "Install")
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id, PluginName="PatchLinux")
    assert (invocation["Status"], invocation["ResponseCode"]) == ("Failed", 1)
    assert "[ERROR]" in invocation["StandardOutputContent"] and "exit status 1" in invocation["StandardErrorContent"]
    assert _states(ssm, [instance_id])[instance_id]["FailedCount"] >= 1


def test_patch_timeout_ends_timed_out_without_changing_compliance(sandbox, ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    sandbox.state.faults.add("patch_timeout", instance_id=instance_id)
    command_id = _patch(ssm, sandbox, [instance_id], "Install")
    invocation = ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"][0]
    assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    assert _states(ssm, [instance_id]) == {}


def test_windows_uses_the_patch_windows_step_and_the_windows_summary(sandbox, ssm, launch_managed):
    (instance_id,) = launch_managed(1, image_id="ami-b7e93bce")
    command_id = _patch(ssm, sandbox, [instance_id], "Scan")
    output = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id, PluginName="PatchWindows")["StandardOutputContent"]
    assert output.startswith("Patch Summary for") and "OperationType" in output


def test_patch_group_comes_from_the_patch_group_tag(sandbox, ssm, launch_managed):
    (instance_id,) = launch_managed(1, tags={"Patch Group": "web"})
    _patch(ssm, sandbox, [instance_id], "Scan")
    assert _states(ssm, [instance_id])[instance_id]["PatchGroup"] == "web"


def test_describe_instance_patches_lists_the_missing_ones_after_a_scan(sandbox, ssm, missing_some):
    _patch(ssm, sandbox, [missing_some], "Scan")
    patches = ssm.describe_instance_patches(InstanceId=missing_some, Filters=[{"Key": "State", "Values": ["Missing"]}])["Patches"]
    assert len(patches) == missing_count(missing_some)


def test_describe_instance_patches_shows_them_installed_after_an_install(sandbox, ssm, missing_some):
    _patch(ssm, sandbox, [missing_some], "Scan")
    missing = {patch["KBId"] for patch in ssm.describe_instance_patches(InstanceId=missing_some, Filters=[{"Key": "State", "Values": ["Missing"]}])["Patches"]}
    _patch(ssm, sandbox, [missing_some], "Install")
    pages = ssm.get_paginator("describe_instance_patches").paginate(InstanceId=missing_some, Filters=[{"Key": "State", "Values": ["Installed"]}])
    installed = [patch for page in pages for patch in page["Patches"]]
    assert missing <= {patch["KBId"] for patch in installed}


def test_patch_states_for_more_than_fifty_instances_is_a_validation_error(ssm):
    with pytest.raises(ClientError) as raised:
        ssm.describe_instance_patch_states(InstanceIds=[f"i-{index:017x}" for index in range(51)])
    assert raised.value.response["Error"]["Code"] == "ValidationException"
