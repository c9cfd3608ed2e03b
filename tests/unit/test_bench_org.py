"""bench_org's own logic (no sandbox): the OU tree it seeds and the AWX-style slices it cuts."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_org  # noqa: E402  pylint: disable=wrong-import-position


def _accounts(node):
    found = list(node.get("accounts") or [])
    for child in node.get("ous") or []:
        found += _accounts(child)
    return found


def test_the_tree_holds_every_member_once_under_workloads_plus_a_suspended_one_and_one_outside():
    spec = bench_org.organization_spec(200)
    [workloads] = [ou for ou in spec["ous"] if ou["name"] == "workloads"]
    members = _accounts(workloads)
    active = [a["id"] for a in members if a.get("state", "ACTIVE") == "ACTIVE"]
    assert sorted(active) == sorted(bench_org.member_id(i) for i in range(200))
    assert [a["id"] for a in members if a.get("state") == "SUSPENDED"] == ["399999999999"]
    # Nested: workloads / prod|nonprod / team-NN, at most ACCOUNTS_PER_TEAM per team.
    teams = [team for env in workloads["ous"] for team in env.get("ous") or []]
    assert len(teams) == 20 and all(len(team["accounts"]) <= bench_org.ACCOUNTS_PER_TEAM for team in teams)
    outside = [a["id"] for ou in spec["ous"] if ou["name"] != "workloads" for a in _accounts(ou)]
    assert outside and not set(outside) & set(active)


def test_slices_cut_every_nth_host_and_cover_each_host_exactly_once():
    rows = [{"instance_id": "i-%05d" % i, "region": "us-east-1", "account": "300000000000", "name": "n%d" % i} for i in range(103)]
    hosts = bench_org.inventory_of(rows)
    parts = [bench_org.slice_inventory(hosts, number, 4) for number in range(1, 5)]
    names = [name for part, _content in parts for name in part]
    assert sorted(names) == sorted(hosts) and len(names) == len(set(names))
    assert [len(part) for part, _content in parts] == [26, 26, 26, 25]
    first, content = parts[0]
    assert first[:2] == ["i-00000", "i-00004"]
    assert content["all"]["hosts"]["i-00004"] == {"instance_id": "i-00004", "region": "us-east-1", "account_id": "300000000000", "cms_patching_name": "n4"}
