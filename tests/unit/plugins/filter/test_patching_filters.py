"""The filters the roles use between phases."""

import pathlib
import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cms.patching.plugins.filter import patching
from ansible_collections.cms.patching.plugins.filter.patching import (
    failed_hosts,
    held_back,
    instances_of,
    inventory_candidates,
    inventory_hosts,
    not_started,
    patch_waves,
    report_summary,
    wave_plan,
)

REPO = pathlib.Path(__file__).resolve().parents[4]
SCAN = {
    "instances": [
        {"instance_id": "i-00000001", "account_id": "111111111111", "region": "eu-west-1", "patch_group": "web tier", "target": True},
        {"instance_id": "i-00000002", "account_id": "111111111111", "region": "eu-west-1", "patch_group": "", "target": True},
        {"instance_id": "i-00000003", "account_id": "111111111111", "region": "eu-west-1", "target": False, "skip_reason": "stopped"},
    ]
}


def test_inventory_hosts_names_and_groups():
    hosts = inventory_hosts(SCAN["instances"], {"i-00000002": "web-2.example"})
    assert [h["name"] for h in hosts] == ["i-00000001", "web-2.example"]
    assert hosts[0]["groups"] == [
        "cms_patching_targets",
        "cms_patching_account_111111111111",
        "cms_patching_region_eu_west_1",
        "cms_patching_patch_group_web_tier",
    ]
    assert "cms_patching_patch_group_" not in " ".join(hosts[1]["groups"])


def test_instances_of_follows_host_order_and_refuses_unknown_hosts():
    host_map = {"i-00000001": "i-00000001", "i-00000002": "web-2.example"}
    assert [r["instance_id"] for r in instances_of(SCAN, ["web-2.example", "i-00000001"], host_map)] == ["i-00000002", "i-00000001"]
    with pytest.raises(AnsibleFilterError, match="no discovery record for host"):
        instances_of(SCAN, ["ghost"], host_map)


def test_inventory_candidates_reads_hostvars_only_for_hosts_not_named_by_id():
    class Vars(dict):
        asked = []

        def __getitem__(self, name):
            self.asked.append(name)
            return {"instance_id": "i-0000000a"} if name == "web-a" else {}

    hostvars = Vars()
    assert inventory_candidates(["localhost", "i-00000001", "web-a", "other"], hostvars) == {"i-00000001": "i-00000001", "i-0000000a": "web-a"}
    assert hostvars.asked == ["web-a", "other"]


def test_held_back_backup_and_patch():
    backup = {"instances": [{"instance_id": "i-1", "backup_status": "verified"}, {"instance_id": "i-2", "backup_status": "failed", "reason": "snapshot error"}]}
    assert held_back(backup, "backup", hosts={"i-2": "h2"}) == [
        {"instance_id": "i-2", "host": "h2", "reason": "no verified backup, so it is not patched: failed: snapshot error"}
    ]
    skipped = {"instances": [{"instance_id": "i-3", "backup_status": "skipped", "reason": "check mode"}]}
    assert held_back(skipped, "backup") and held_back(skipped, "backup", check_mode=True) == []
    waves = [
        {"instances": [{"instance_id": "i-1", "patch_status": "success", "post_checks": {"status": "failed", "reason": "health"}}]},
        {"instances": [{"instance_id": "i-2", "patch_status": "timed_out", "error": "late"}, {"instance_id": "i-4", "patch_status": "success"}]},
    ]
    assert [(h["instance_id"], h["reason"]) for h in held_back(waves, "patch")] == [
        ("i-1", "patched, but the post-patch checks failed: health"),
        ("i-2", "not patched: timed_out: late"),
    ]
    with pytest.raises(AnsibleFilterError):
        held_back(backup, "retention")


def test_failed_hosts_are_the_add_host_arguments_the_gates_used():
    backup = {"instances": [{"instance_id": "i-1", "backup_status": "verified"}, {"instance_id": "i-2", "backup_status": "failed", "reason": "snapshot error"}]}
    # As the gate's add_host had them: name item.host, groups [cms_patching_failed], failure "<id>: <reason>".
    assert failed_hosts(held_back(backup, "backup", hosts={"i-2": "h2"})) == [
        {"name": "h2", "groups": ["cms_patching_failed"], "cms_patching_failure": "i-2: no verified backup, so it is not patched: failed: snapshot error"}
    ]
    plan = [{"name": "rest", "instances": [{"instance_id": "i-2"}, {"instance_id": "i-3"}]}]
    # The waves that never started: "<id> was not patched: <why the run stopped>".
    assert failed_hosts(not_started(plan, [], {"i-3": "h3"}), "was not patched: wave canary failed") == [
        {"name": "i-2", "groups": ["cms_patching_failed"], "cms_patching_failure": "i-2 was not patched: wave canary failed"},
        {"name": "h3", "groups": ["cms_patching_failed"], "cms_patching_failure": "i-3 was not patched: wave canary failed"},
    ]
    assert failed_hosts([]) == []
    with pytest.raises(AnsibleFilterError, match="has no reason"):
        failed_hosts(not_started(plan, [], {}))
    with pytest.raises(AnsibleFilterError, match="expects the list"):
        failed_hosts({"instances": []})


def test_not_started_lists_the_instances_of_waves_without_results():
    plan = [{"name": "canary", "instances": [{"instance_id": "i-1"}]}, {"name": "rest", "instances": [{"instance_id": "i-2"}, {"instance_id": "i-3"}]}]
    results = [{"instances": [{"instance_id": "i-1"}]}]
    assert not_started(plan, results, {"i-3": "h3"}) == [{"instance_id": "i-2", "host": "i-2"}, {"instance_id": "i-3", "host": "h3"}]


def test_report_summary_matches_the_csv_numbers():
    results = {
        "scan": SCAN,
        "backup": {
            "instances": [{"instance_id": "i-00000001", "backup_status": "verified"}, {"instance_id": "i-00000002", "backup_status": "failed", "reason": "x"}]
        },
        "patch": [{"instances": [{"instance_id": "i-00000001", "patch_status": "success"}]}],
    }
    summary = report_summary(results, lz="demo", run_id="r1")
    assert summary["lz"] == "demo" and summary["run_id"] == "r1" and summary["seen"] == 3 and summary["targets"] == 2
    assert summary["backup"]["verified"] == 1 and summary["backup"]["failed"] == 1 and summary["backup"]["skipped"] == 1
    assert summary["patch"]["success"] == 1 and summary["patch"]["skipped"] == 2 and summary["errors"] == 1


WAVE_SCAN = {
    "instances": [
        {"instance_id": "i-00000001", "name": "web-01", "target": True},
        {"instance_id": "i-00000002", "name": "web-02", "target": True},
        {"instance_id": "i-00000003", "name": "db-01", "target": True},
        {"instance_id": "i-00000004", "name": "old-01", "target": False, "skip_reason": "instance is stopped"},
    ]
}


def test_patch_waves_refuses_what_is_not_a_list_of_instances():
    with pytest.raises(AnsibleFilterError, match="patch_waves expects a list of instances"):
        patch_waves([{"name": "web-01"}], [{"name": "all"}])


def test_wave_plan_lines_and_no_problem():
    result = wave_plan(WAVE_SCAN, [{"name": "canary", "names": ["web-02"]}, {"name": "rest"}])
    assert result["problems"] == [] and result["warnings"] == []
    assert result["lines"] == ["wave canary: 1 instance: web-02", "wave rest: 2 instances: web-01, db-01"]
    assert [w["name"] for w in result["plan"]] == ["canary", "rest"]


def test_wave_plan_names_the_wave_the_unknown_name_and_the_closest_target():
    result = wave_plan(WAVE_SCAN, [{"name": "canary", "names": ["web-2", "old-01"]}, {"name": "rest"}])
    assert result["problems"] == [
        "cms_patching_landing_zone.patching.waves[0] (wave 'canary').names: no target has the name web-2 (did you mean web-02 or web-01?); "
        "old-01 is not a target (instance is stopped)"
    ]
    # The plan is still shown (canary empty, so dropped): the problem is what stops the run.
    assert result["lines"] == ["wave rest: 3 instances: web-01, web-02, db-01"]


def test_wave_plan_with_no_target_says_so():
    result = wave_plan({"instances": [WAVE_SCAN["instances"][3]]}, [{"name": "all"}])
    assert result == {"plan": [], "lines": ["no target: nothing to patch"], "problems": [], "warnings": []}
    with pytest.raises(AnsibleFilterError, match="run discovery first"):
        wave_plan(None, [{"name": "all"}])


def test_report_summary_counts_the_locations_discovery_could_not_scan():
    scan = dict(SCAN, errors=[{"account_id": "222222222222", "region": "eu-west-1", "operation": "ec2:DescribeInstances", "error": "denied"}])
    summary = report_summary({"scan": scan}, lz="demo", run_id="r1")
    assert summary["seen"] == 3 and summary["errors"] == 1 and summary["discovery_failed"] == ["222222222222/eu-west-1"]


def test_inventory_hosts_skipped_gives_the_instances_that_are_not_targets():
    # The playbook adds these too (group cms_patching_skipped), so the host summary lists every instance seen.
    hosts = inventory_hosts(SCAN["instances"], {"i-00000003": "old.example"}, skipped=True)
    assert [h["name"] for h in hosts] == ["old.example"]
    assert hosts[0]["groups"][0] == "cms_patching_skipped" and "cms_patching_targets" not in hosts[0]["groups"]
    assert hosts[0]["instance_id"] == "i-00000003"


# A whole discovery record: what the reducing filters below are given.
DISCOVERY_RECORD = {
    "instance_id": "i-0123456789abcdef0",
    "account_id": "123456789012",
    "region": "eu-west-1",
    "name": "web-01",
    "platform": "windows",
    "tags": {"Name": "web-01", "Patch Group": "web"},
    "volumes": [{"device_name": "/dev/xvda", "volume_id": "vol-1"}],
    "ssm_status": "Online",
}


def test_command_targets_keep_only_what_a_run_command_module_reads():
    record = dict(DISCOVERY_RECORD)
    partial = {"instance_id": "i-0fedcba9876543210", "account_id": "123456789012", "region": "us-east-1"}
    assert patching.command_targets([record, partial]) == [
        {"instance_id": "i-0123456789abcdef0", "account_id": "123456789012", "region": "eu-west-1", "name": "web-01", "platform": "windows"},
        partial,
    ]
    assert record["tags"] and record["volumes"]  # the records themselves are left as they were
    with pytest.raises(AnsibleFilterError, match="command_targets expects a list of instances"):
        patching.command_targets([{"name": "web-01"}])
    # Every field ssm_patch_run reads of an instance is kept (a field it starts reading must be added here too).
    source = (REPO / "plugins/module_utils/_patch.py").read_text() + (REPO / "plugins/module_utils/_checks.py").read_text()
    read = set(re.findall(r'\b(?:i|item|instance|member)(?:\["|\.get\(")([a-z_]+)"', source))
    assert {"instance_id", "account_id", "region", "name", "platform"} <= read
    assert read - {"wave", "_read", "_read_error"} <= set(patching.COMMAND_TARGET_KEYS), read


def test_backup_targets_keep_only_what_the_backup_module_reads():
    record = dict(DISCOVERY_RECORD)
    assert patching.backup_targets([record]) == [{k: record[k] for k in ("instance_id", "account_id", "region", "name", "platform", "volumes")}]
    with pytest.raises(AnsibleFilterError, match="backup_targets expects a list of instances"):
        patching.backup_targets("i-0123456789abcdef0")
    # Every field the backup module reads of an instance is kept (a field it starts reading must be added here too).
    source = (REPO / "plugins/module_utils/_backup.py").read_text() + (REPO / "plugins/modules/ami_backup_verified.py").read_text()
    read = set(re.findall(r'\b(?:inst|item|instance)(?:\["|\.get\(")([a-z_]+)"', source))
    assert {"instance_id", "account_id", "region", "name", "volumes"} <= read
    assert read <= set(patching.BACKUP_TARGET_KEYS), read


def test_patch_waves_targets_only_plans_on_whole_records_and_keeps_what_the_rollback_module_reads():
    canary = dict(DISCOVERY_RECORD)
    other = dict(DISCOVERY_RECORD, instance_id="i-0fedcba9876543210", name="db-01", platform="linux")
    waves = [{"name": "canary", "names": ["web-01"]}, {"name": "rest"}]
    whole = patch_waves([other, canary], waves)
    reduced = patch_waves([other, canary], waves, targets_only=True)
    # The same waves, chosen on the whole records (names, tags); each instance then as command_targets gives it.
    assert [(w["name"], [i["instance_id"] for i in w["instances"]]) for w in reduced] == [
        (w["name"], [i["instance_id"] for i in w["instances"]]) for w in whole
    ] == [("canary", ["i-0123456789abcdef0"]), ("rest", ["i-0fedcba9876543210"])]
    assert whole[0]["instances"][0]["tags"]  # by default the records stay whole
    assert [w["instances"] for w in reduced] == [patching.command_targets(w["instances"]) for w in whole]
    # Every field the rollback module reads of an instance is kept (the after-wave rollback is given the plan's instances).
    source = (REPO / "plugins/module_utils/_rollback.py").read_text() + (REPO / "plugins/modules/ec2_rollback.py").read_text()
    read = set(re.findall(r'\b(?:rb\.instance|item|instance|target)(?:\["|\.get\(")([a-z_]+)"', source))
    assert {"instance_id", "account_id", "region", "name"} <= read, read
    assert read <= set(patching.COMMAND_TARGET_KEYS), read
