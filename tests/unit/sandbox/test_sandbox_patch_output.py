"""AWS-RunPatchBaseline output of realistic length, and the re-run after a reboot (setting ``realistic_output``)."""

from __future__ import annotations

import re

import pytest
from sandbox_testkit import WINDOWS_AMI

from sandbox.ssm.patch_catalog import missing_count

REBOOT_IF_NEEDED = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"]}}
NO_REBOOT = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Install"], "RebootOption": ["NoReboot"]}}
# What a client might look for to decide that the instance rebooted (cms.patching's own pattern among them).
REBOOT_TEXT = re.compile(r"(?i)(reboot(ing)? (the )?(instance|node|system)|initiating reboot|exit code (194|3010)|rebooted|reboot is required)")
ONE_RUN = 5.0  # delivery + invocation + reboot, and a little
TRUNCATED = "\n---Output truncated---"


def _needing_patches(launch_managed, **options):
    instance_id = next(instance_id for instance_id in launch_managed(8, **options) if missing_count(instance_id) > 0)
    return instance_id


def _outputs(ssm, command_id, instance_id, plugin):
    full = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id, PluginName=plugin)
    listed = ssm.list_command_invocations(CommandId=command_id, InstanceId=instance_id, Details=True)["CommandInvocations"][0]
    cut = next(item for item in listed["CommandPlugins"] if item["Name"] == plugin)
    return full, cut


def test_without_the_setting_the_output_is_the_short_summary(sandbox, ssm, launch_managed):
    instance_id = _needing_patches(launch_managed)
    command_id = ssm.send_command(InstanceIds=[instance_id], **REBOOT_IF_NEEDED)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_RUN)
    full, cut = _outputs(ssm, command_id, instance_id, "PatchLinux")
    assert len(full["StandardOutputContent"]) < 2500 and cut["Output"] == full["StandardOutputContent"]


@pytest.mark.parametrize("platform,plugin,options", [("Linux", "PatchLinux", {}), ("Windows", "PatchWindows", {"image_id": WINDOWS_AMI})])
def test_a_reboot_install_ends_with_the_re_run_s_long_output_that_says_nothing_of_a_reboot(sandbox, ssm, launch_managed, platform, plugin, options):
    sandbox.state.update_settings(realistic_output=True)
    instance_id = _needing_patches(launch_managed, **options)
    command_id = ssm.send_command(InstanceIds=[instance_id], **REBOOT_IF_NEEDED)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_RUN)
    full, cut = _outputs(ssm, command_id, instance_id, plugin)
    stdout = full["StandardOutputContent"]

    assert [reboot["instance_id"] for reboot in sandbox.state.describe()["reboots"]] == [instance_id]
    assert (full["Status"], full["ResponseCode"]) == ("Success", 0)
    assert 2500 < len(stdout) <= 24000
    assert REBOOT_TEXT.search(stdout) is None
    assert "nothing to install" in stdout.lower() or "no updates to install" in stdout.lower()
    assert len(cut["Output"]) == 2500 and cut["Output"].endswith(TRUNCATED)
    assert cut["Output"][: 2500 - len(TRUNCATED)] == stdout[: 2500 - len(TRUNCATED)]


def test_a_no_reboot_install_shows_the_yum_transaction(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(realistic_output=True)
    instance_id = _needing_patches(launch_managed)
    command_id = ssm.send_command(InstanceIds=[instance_id], **NO_REBOOT)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_RUN)
    full, cut = _outputs(ssm, command_id, instance_id, "PatchLinux")
    stdout = full["StandardOutputContent"]
    assert sandbox.state.describe()["reboots"] == []
    assert "Complete!" in stdout and "Installation Succeeded" in stdout and len(stdout) > 2500
    assert cut["Output"].endswith(TRUNCATED)


def test_a_failed_install_keeps_its_error_stream(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(realistic_output=True)
    instance_id = _needing_patches(launch_managed)
    sandbox.state.faults.add("patch_fail", instance_id=instance_id)
    command_id = ssm.send_command(InstanceIds=[instance_id], **REBOOT_IF_NEEDED)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_RUN)
    full, _cut = _outputs(ssm, command_id, instance_id, "PatchLinux")
    assert (full["Status"], full["ResponseCode"]) == ("Failed", 1)
    assert "failed to run commands: exit status 1" in full["StandardErrorContent"]


def test_the_aws_profile_turns_it_on(sandbox):
    sandbox.state.update_settings(realism="aws")
    assert sandbox.state.settings.realistic_output is True
