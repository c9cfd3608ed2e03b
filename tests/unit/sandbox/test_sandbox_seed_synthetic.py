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
