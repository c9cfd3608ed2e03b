"""What a wave of a few hundred instances costs in AWS reads when ssm_patch_run returns for progress and is called again
(each call a new PatchRun, as each is a new module process), counted from the sandbox's call log (issue 7: API calls per
instance). The wave's run cache (_runcache) carries what one call read to the next."""

import os
import pathlib
import stat
import sys

import pytest
from fleet_helpers import patch_run as fleet_patch_run
from wave_reads import REGIONS as ALL_REGIONS
from wave_reads import operations, patch_wave, realistic_durations, seed_wave

from ansible_collections.cms.patching.plugins.module_utils._runcache import RunCache

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "benchmarks"))
from _call_floor import below_floor, call_floor, patch_commands  # noqa: E402  pylint: disable=wrong-import-position

# 60 in each of 2 regions: a location sends two commands (50 + 10). Two locations tell "per location" from "per call"
# as well as four did, at half the seeding (the fixture's AMIs and scan were most of this file's time).
REGIONS = ALL_REGIONS[:2]
COUNT = 60 * len(REGIONS)


@pytest.fixture
def wave(aws):
    fleet, instances = seed_wave(aws, count=COUNT, regions=REGIONS)
    # A scan (another run) leaves the patch state 'reboot' is measured against.
    fleet_patch_run(aws, fleet, instances, run_id="scan-1", operation="Scan", require_backup=False, max_concurrency="100%", lookback_hours=168).run()
    realistic_durations(aws)
    aws.state.calls.reset()
    return fleet, instances


def patch_sends(aws):
    """{instance_id: AWS-RunPatchBaseline commands of run-1 it was sent}, from the sandbox's own command records."""
    counts = {}
    for command in aws.state.commands.all():
        if command.document.name == "AWS-RunPatchBaseline" and "run=run-1 " in command.request["Comment"]:
            for instance_id in command.instance_ids():
                counts[instance_id] = counts.get(instance_id, 0) + 1
    return counts


def test_a_wave_with_progress_returns_reads_each_thing_about_once_and_keeps_reboot_right(aws, wave, tmp_path):
    fleet, instances = wave
    results, per_call = patch_wave(aws, fleet, instances, cache_root=tmp_path / "runs")
    assert len(per_call) >= 3  # the wave spanned several calls
    assert {r["patch_status"] for r in results} == {"success"} and {r["compliance"] for r in results} == {"COMPLIANT"}
    assert set(patch_sends(aws).values()) == {1} and len(patch_sends(aws)) == COUNT
    total = operations([c for calls in per_call for c in calls])
    commands = 2 * len(REGIONS)  # 50 + 10 per location
    # The gate: one DescribeImages per location, in the call that sent; the calls after it had nothing to send.
    assert operations(per_call[0]).get("ec2:DescribeImages") == len(REGIONS)
    assert [operations(calls).get("ec2:DescribeImages", 0) for calls in per_call[1:]] == [0] * (len(per_call) - 1)
    assert total["ssm:SendCommand"] == commands
    # Each command's invocations once, however many calls saw it finished.
    assert total["ssm:ListCommandInvocations"] == commands
    # Patch states: before the patch one read per command sent; after it full batches of 50 while the wave runs, then
    # the rest once it has ended, a few rounds more for the states the agents report late: about 2 per location.
    assert total["ssm:DescribeInstancePatchStates"] <= commands + 4 * len(REGIONS), total
    # The lower bound the benchmarks print beside their counts (benchmarks/_call_floor.py) holds for this wave's own
    # reads: if the module ever made fewer, the bound would be wrong and the benchmarks' "goal lies below it" with it.
    # Its patch reads only: the rows (this wave's results) also make the bound count discovery and retention, which a
    # patch module never does.
    sent_log = [entry for entry in aws.state.command_log() if "run=run-1 " in entry["comment"]]
    floor = call_floor(results, patch_commands(sent_log), assumed_accounts=0, post_checks=False)
    patch_reads = ("ssm:ListCommands", "ssm:SendCommand", "ssm:ListCommandInvocations", "ssm:DescribeInstancePatchStates")
    floor = {op: floor[op] for op in patch_reads}
    assert floor == {
        "ssm:ListCommands": 2 * len(REGIONS),
        "ssm:SendCommand": commands,
        "ssm:ListCommandInvocations": commands,
        "ssm:DescribeInstancePatchStates": 2 * commands,
    }
    assert not below_floor(total, floor), (total, floor)

    # reboot, from the same wave: the state before the patch is read once per instance, in the call that sent it; the
    # next calls take it from the run cache (without it, reboot was "unknown" after the first call).
    before = [c for c in per_call[0] if c["operation"] == "ssm:DescribeInstancePatchStates"]
    assert len(before) >= commands
    sent = {r["command_id"] for r in results}
    rebooted = {r["instance_id"] for r in aws.state.commands.reboots(aws.state.now()) if r["command_id"] in sent}
    assert rebooted  # the sandbox rebooted some: the test tells 'yes' from 'no'
    assert {r["instance_id"] for r in results if r["reboot"] == "yes"} == rebooted
    assert {r["reboot"] for r in results if r["instance_id"] not in rebooted} == {"no"}


def test_without_the_run_cache_every_call_reads_from_aws_and_the_outcome_is_the_same(aws, wave):
    fleet, instances = wave
    results, per_call = patch_wave(aws, fleet, instances, cache_root=None)
    assert len(per_call) >= 3
    assert {r["patch_status"] for r in results} == {"success"} and {r["compliance"] for r in results} == {"COMPLIANT"}
    assert set(patch_sends(aws).values()) == {1}
    # Without it the look-up bound comes from the gate, which every call then reads, as before.
    assert all(operations(calls).get("ec2:DescribeImages", 0) == len(REGIONS) for calls in per_call)


def test_the_gate_is_read_only_where_instances_wait_to_be_sent(aws, wave, tmp_path):
    fleet, instances = wave
    # 60 slots: the first round fills them with one location's 60 instances; the call returns at once (wait=False).
    options = dict(max_concurrency="60", lookback_hours=168, poll_interval=30)
    cache = RunCache("demo", "run-1", "rest", root=str(tmp_path / "runs"))
    first = fleet_patch_run(aws, fleet, instances, wave="rest", **options)
    first.cache = cache
    first.run(wait=False)
    sent = {(loc[1]) for loc, _ids in first.planned}
    assert len(sent) == 1
    aws.state.clock.advance(30)
    logged = len(aws.state.calls.log())
    second = fleet_patch_run(aws, fleet, instances, wave="rest", **options)
    second.cache = cache
    second.run(wait=False)
    gate_regions = sorted(c["region"] for c in aws.state.calls.log()[logged:] if c["operation"] == "ec2:DescribeImages")
    assert gate_regions == sorted(set(REGIONS) - sent)


def test_a_location_where_every_command_has_finished_is_not_listed_again(aws, tmp_path):
    fleet, instances = seed_wave(aws, count=8)
    assert {i["region"] for i in instances} == set(ALL_REGIONS)
    offline = instances[0]  # stays Delayed until the wave's deadline: its location is listed every round until then
    aws.state.update_settings(undeliverable_seconds=10**6)
    aws.state.faults.add("agent_offline", instance_id=offline["instance_id"])
    aws.state.calls.reset()
    results, per_call = patch_wave(aws, fleet, instances, cache_root=tmp_path / "runs", progress_interval=60, wait_timeout=600)
    assert len(per_call) >= 3
    assert {r["patch_status"] for r in results if r["instance_id"] != offline["instance_id"]} == {"success"}
    assert results[0]["patch_status"] == "undeliverable"
    # The first call saw the other three locations' commands finish and read them; the later calls list only the fourth.
    assert {c["region"] for c in per_call[0] if c["operation"] == "ssm:ListCommands"} == set(ALL_REGIONS)
    assert {c["region"] for calls in per_call[1:] for c in calls if c["operation"] == "ssm:ListCommands"} == {offline["region"]}
    assert {c["region"] for calls in per_call[1:] for c in calls if c["operation"] == "ssm:ListCommandInvocations"} <= {offline["region"]}


def test_the_run_cache_is_private_and_gone_when_the_wave_ends(aws, wave, tmp_path):
    fleet, instances = wave
    root = tmp_path / "runs"
    cache = RunCache("demo", "run-1", "rest", root=str(root))
    run = fleet_patch_run(aws, fleet, instances, wave="rest", lookback_hours=168, poll_interval=30, max_concurrency="100%")
    run.cache = cache
    run.run(progress_interval=60)
    assert os.path.exists(cache.path)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700 and stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600
    assert cache.load()["since"]  # the look-up bound per location
    results, _per_call = patch_wave(aws, fleet, instances, cache_root=root)
    assert {r["patch_status"] for r in results} == {"success"}
    assert not os.path.exists(cache.path)


def test_a_corrupt_run_cache_falls_back_to_reading_from_aws(aws, wave, tmp_path):
    fleet, instances = wave
    root = tmp_path / "runs"
    cache = RunCache("demo", "run-1", "rest", root=str(root))
    run = fleet_patch_run(aws, fleet, instances, wave="rest", lookback_hours=168, poll_interval=30, max_concurrency="100%")
    run.cache = cache
    run.run(progress_interval=60)
    data = cache.load()
    data["states"] = {instances[0]["instance_id"]: {"InstalledCount": "many"}}  # not a patch state
    cache.save(data)
    logged = len(aws.state.calls.log())
    results, _per_call = patch_wave(aws, fleet, instances, cache_root=root)
    # The whole file is ignored: the first call after it reads the gate again (for the look-up bound) and every state.
    assert operations(aws.state.calls.log()[logged:]).get("ec2:DescribeImages") == len(REGIONS)
    assert {r["patch_status"] for r in results} == {"success"} and {r["compliance"] for r in results} == {"COMPLIANT"}
    assert set(patch_sends(aws).values()) == {1}
