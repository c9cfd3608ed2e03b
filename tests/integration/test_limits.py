"""--limit (AWX's Limit field) never cascades: with the demo's injected backup failure (web-03) and patch failure
(pay-web-02) inside the limit, the failed hosts fail alone, every other host of the limit is patched, retention runs,
the report is complete, and the host summary (PLAY RECAP) has one line per instance with its outcome.

--limit also removes the implicit localhost from every play, so these runs have no host that never fails: before,
the first gate play then failed all of its hosts and Ansible ended the playbook ("NO MORE HOSTS LEFT").
"""

import re

import yaml
from conftest import REPO, sent_instance_ids, sessions

RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.MULTILINE)


def recap(output):
    """{host: {ok, changed, unreachable, failed, skipped}} from the PLAY RECAP."""
    text = output[output.rindex("PLAY RECAP") :]
    keys = ("ok", "changed", "unreachable", "failed", "skipped")
    return {m.group(1): dict(zip(keys, map(int, m.groups()[1:]))) for m in RECAP.finditer(text)}


def instances(aws):
    """name -> {instance_id, account_id, region} of every demo instance."""
    found = {}
    for account, session in sessions(aws).items():
        for region in ("us-east-1", "eu-west-1"):
            ec2 = session.client("ec2", region_name=region, endpoint_url=aws.endpoint)
            for reservation in ec2.describe_instances()["Reservations"]:
                for instance in reservation["Instances"]:
                    name = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}.get("Name")
                    found[name] = {"instance_id": instance["InstanceId"], "account_id": account, "region": region}
    return found


def landing_zone(tmp_path, waves):
    """A copy of the demo landing zone with waves that fit the limit (the planning step refuses a canary outside it)."""
    config = yaml.safe_load((REPO / "inventories/demo/.landing_zone.yml").read_text())
    config["cms_patching_landing_zone"]["patching"]["waves"] = waves
    target = tmp_path / "lzs" / "demo"
    target.mkdir(parents=True)
    (target / ".landing_zone.yml").write_text(yaml.safe_dump(config))
    return {"CMS_PATCHING_LZ_PATH": str(tmp_path / "lzs")}


def assert_outcomes(run, aws, in_scope, failed):
    """Every instance in scope: a CSV row and a recap line; `failed` fail, the other targets are patched, the rest skipped."""
    assert run.rc == 2, run.output[-3000:]
    assert "Traceback" not in run.output and "NO MORE HOSTS LEFT" not in run.output
    rows = run.by_name()
    assert set(rows) == set(in_scope)
    ids = {name: rows[name]["instance_id"] for name in in_scope}
    summary = recap(run.output)
    patched = set()
    for name, row in rows.items():
        line = summary[ids[name]]
        if name in failed:
            assert line["failed"] == 1, (name, line)
            assert "fatal: [%s]" % ids[name] in run.output
        elif row["target"] == "true":
            assert row["backup_status"] == "verified" and row["patch_status"] == "success", (name, row)
            assert line["failed"] == 0 and line["changed"] >= 1, (name, line)
            patched.add(ids[name])
        else:
            assert line["failed"] == 0 and line["skipped"] >= 1, (name, line)
    assert sent_instance_ids(aws) == patched | {ids[n] for n in failed if rows[n]["backup_status"] == "verified"}
    # Retention ran after the failures.
    assert "Removed 0 pre-patch AMI(s)" in run.output
    return rows


OUTSIDE_THE_LANDING_ZONE = {"dev-01", "ci-runner-01", "pay-staging-01", "pay-eu-test-01"}


def test_limit_to_a_subset_of_hosts_patches_all_but_the_failed_ones(aws, playbook, tmp_path):
    # Both injected failures are in us-east-1 (web-03: backup, pay-web-02: patch), in different accounts.
    demo = instances(aws)
    env = landing_zone(tmp_path, [{"name": "canary", "names": ["web-01", "pay-web-01"]}, {"name": "rest"}])
    run = playbook("-i", "inventories/demo", "--limit", "region_us_east_1", env=env)
    in_scope = {name for name, i in demo.items() if i["region"] == "us-east-1"} - OUTSIDE_THE_LANDING_ZONE
    assert len(in_scope) == 17
    rows = assert_outcomes(run, aws, in_scope, failed={"web-03", "pay-web-02"})
    assert rows["web-03"]["backup_status"] == "failed" and rows["pay-web-02"]["patch_status"] == "failed"


def test_limit_to_one_account_group(aws, playbook, tmp_path):
    demo = instances(aws)
    # The demo's patch failure is in the other account: inject one in this account too.
    aws.state.faults.add("patch_fail", instance_id=demo["web-02"]["instance_id"])
    env = landing_zone(tmp_path, [{"name": "canary", "names": ["web-01"]}, {"name": "rest"}])
    run = playbook("-i", "inventories/demo", "--limit", "account_123456789012", env=env)
    in_scope = {name for name, i in demo.items() if i["account_id"] == "123456789012"} - OUTSIDE_THE_LANDING_ZONE
    assert len(in_scope) == 15
    rows = assert_outcomes(run, aws, in_scope, failed={"web-03", "web-02"})
    assert rows["web-02"]["patch_status"] == "failed" and rows["web-03"]["patch_status"] == "skipped"


def test_limit_to_a_single_host_whose_backup_fails(aws, playbook, tmp_path):
    demo = instances(aws)
    env = landing_zone(tmp_path, [{"name": "all"}])
    run = playbook("-i", "inventories/demo", "--limit", demo["web-03"]["instance_id"], env=env)
    assert run.rc == 2, run.output[-3000:]
    assert "NO MORE HOSTS LEFT" not in run.output
    # The one host of the run is failed, with the reason; nothing else is in the host summary.
    lines = recap(run.output)
    assert set(lines) == {demo["web-03"]["instance_id"]}
    assert lines[demo["web-03"]["instance_id"]]["failed"] == 1
    assert "no verified backup, so it is not patched" in run.output[run.output.index("fatal: [%s]" % demo["web-03"]["instance_id"]) :]
    [row] = run.rows()
    assert row["name"] == "web-03" and row["backup_status"] == "failed" and row["patch_status"] == "skipped"
    assert "Removed 0 pre-patch AMI(s)" in run.output
    assert sent_instance_ids(aws) == set()


def test_limit_to_a_single_host_whose_patch_fails(aws, playbook, tmp_path):
    demo = instances(aws)
    env = landing_zone(tmp_path, [{"name": "all"}])
    run = playbook("-i", "inventories/demo", "--limit", demo["pay-web-02"]["instance_id"], env=env)
    [row] = assert_outcomes(run, aws, {"pay-web-02"}, failed={"pay-web-02"}).values()
    assert row["backup_status"] == "verified" and row["patch_status"] == "failed"


def test_host_summary_of_failed_hosts_only(aws, playbook):
    """-e cms_patching_host_summary=failed: the per-host outcome task runs on the failed hosts only (large fleets)."""
    demo = instances(aws)
    run = playbook("--tags", "discovery,backup", "-e", "cms_patching_host_summary=failed")
    assert run.rc == 2, run.output[-3000:]
    lines = recap(run.output)
    web3 = demo["web-03"]["instance_id"]
    assert lines[web3]["failed"] == 1
    # Only the failed host and the hosts the run-once tasks ran on are listed - not the 30 instances.
    assert len(lines) <= 4 and all(line["failed"] == 0 for host, line in lines.items() if host != web3)
    assert len(run.rows()) == 30
