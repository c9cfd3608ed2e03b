"""Synthetic fleets and scenario loading errors."""

from __future__ import annotations

import pytest
from sandbox_testkit import OTHER_ACCOUNT, OWN_ACCOUNT


def test_synthetic_fleet_spreads_instances_over_accounts_regions_and_reservations(sandbox, client):
    summary = sandbox.seed(
        {"synthetic": {"count": 40, "accounts": [OWN_ACCOUNT, OTHER_ACCOUNT], "regions": ["us-east-1", "eu-west-1"], "managed_ratio": 0.75, "reservations": 8}}
    )
    assert {cell: counts["instances"] for cell, counts in summary["counts"].items()} == {
        f"{account}/{region}": 10 for account in (OWN_ACCOUNT, OTHER_ACCOUNT) for region in ("eu-west-1", "us-east-1")
    }
    assert sum(counts["managed"] for counts in summary["counts"].values()) == 30
    reservations = client("ec2").describe_instances()["Reservations"]
    assert sorted(len(reservation["Instances"]) for reservation in reservations) == [5, 5]


def test_unknown_scenario_name_is_an_error(sandbox):
    with pytest.raises(ValueError):
        sandbox.seed("no-such-scenario")


def test_the_benchmark_fleet_scenario_file_is_a_valid_synthetic_spec():
    from sandbox.seeding.scenario import SyntheticSpec, load  # pylint: disable=import-outside-toplevel

    spec = load("fleet-1000")
    assert isinstance(spec, SyntheticSpec) and (spec.count, len(spec.accounts), spec.regions) == (1000, 2, ("us-east-1", "eu-west-1"))


def _patch_states(client, instance_ids):
    ssm = client("ssm")
    found = {}
    for start in range(0, len(instance_ids), 50):
        for state in ssm.describe_instance_patch_states(InstanceIds=instance_ids[start : start + 50], MaxResults=50)["InstancePatchStates"]:
            found[state["InstanceId"]] = state
    return found


@pytest.mark.parametrize("profile", ["fast", "aws"])
def test_a_patch_scanned_fleet_has_a_scan_state_for_every_running_managed_instance(sandbox, client, profile):
    # The aws profile's scans take up to 15 minutes and report a minute later; its 1 % server errors stay off for
    # this test's own reads, which are not retried.
    sandbox.state.update_settings(realism=profile, server_error_rate=0)
    spec = {"count": 60, "accounts": [OWN_ACCOUNT], "regions": ["us-east-1"], "managed_ratio": 0.9, "stopped_ratio": 0.1, "patch_scanned": True}
    rows = sandbox.seed({"synthetic": spec})["instances"]
    scanned = [r["instance_id"] for r in rows if r["managed"] and r["state"] == "running"]
    others = [r["instance_id"] for r in rows if r["instance_id"] not in scanned]
    assert scanned and others
    states = _patch_states(client, [r["instance_id"] for r in rows])
    # What AWS reports after a scan: the operation, and the patches it found missing (nothing was installed by it).
    assert sorted(states) == sorted(scanned)
    assert {s["Operation"] for s in states.values()} == {"Scan"}
    assert any(s["MissingCount"] > 0 for s in states.values())
    # The scan's commands are the sandbox's own seeding: nothing of it is in the call log a benchmark counts.
    assert not sandbox.state.calls.snapshot()["operations"].get("ssm:SendCommand")


def test_a_fresh_synthetic_fleet_has_no_patch_state(sandbox, client):
    rows = sandbox.seed({"synthetic": {"count": 10, "accounts": [OWN_ACCOUNT], "regions": ["us-east-1"], "managed_ratio": 1.0}})["instances"]
    assert _patch_states(client, [r["instance_id"] for r in rows]) == {}
