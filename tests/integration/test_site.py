"""site.yml on the sandbox: the three phases chained, the gates, the CSV, and what reached AWS."""

from conftest import calls, sent_instance_ids, write_calls

from ansible_collections.cms.patching.plugins.module_utils._report import COLUMNS


def test_full_run_patches_only_behind_a_verified_backup(aws, playbook):
    run = playbook()
    # Two hosts fail on purpose (the demo's injected faults): Ansible's status for failed hosts is 2.
    assert run.rc == 2, run.output[-3000:]
    assert "Traceback" not in run.output
    rows = run.by_name()
    assert len(rows) == 30
    with open(run.csv_path, encoding="utf-8") as handle:
        assert handle.readline().strip() == ",".join(COLUMNS)
    for row in rows.values():
        if row["patch_status"] == "success":
            assert row["backup_status"] == "verified" and row["ami_id"].startswith("ami-") and row["snapshot_ids"]
        if row["target"] == "false":
            assert row["backup_status"] == "skipped" and row["patch_status"] == "skipped" and row["skip_reason"]
    # The injected backup failure is never patched, and says why.
    web3 = rows["web-03"]
    assert (web3["backup_status"], web3["patch_status"]) == ("failed", "skipped")
    assert "backup failed" in web3["error"] and "is failed" in web3["error"]
    assert rows["web-03"]["instance_id"] not in sent_instance_ids(aws)
    # The injected patch failure is reported with its error.
    pay2 = rows["pay-web-02"]
    assert pay2["backup_status"] == "verified" and pay2["patch_status"] == "failed" and pay2["error"]
    assert sum(r["patch_status"] == "success" for r in rows.values()) == 19
    # Rows of instances skipped at discovery are there too.
    assert rows["legacy-01"]["skip_reason"] == "excluded by tag Patch=never"
    assert rows["batch-01"]["patch_status"] == "skipped"
    # The summary and the per-host failures name the reasons.
    assert "30 seen, 21 targets; backup: 20 verified, 1 failed, 9 skipped; patch: 19 success, 1 failed, 10 skipped" in run.output
    assert "fatal: [%s]" % web3["instance_id"] in run.output and "fatal: [%s]" % pay2["instance_id"] in run.output
    assert calls(aws)["ec2:CreateImage"] == 21


def test_discovery_tag_makes_no_write_call(aws, playbook):
    run = playbook("--tags", "discovery", env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"})
    assert run.rc == 0, run.output[-3000:]
    assert write_calls(aws) == {}
    # The same summary as the CSV goes to set_stats (AWX keeps it as the job's artifacts).
    stats = run.output[run.output.index("CUSTOM STATS") :]
    assert '"cms_patching"' in stats and '"seen": 30' in stats and '"targets": 21' in stats
    rows = run.rows()
    assert len(rows) == 30
    assert {r["backup_status"] for r in rows if r["target"] == "true"} == {"not_run"}
    # Each target says why its phases did not run, and a phase that was not asked for is no error.
    assert {r["error"] for r in rows if r["target"] == "true"} == {"backup phase not run: not part of this run (--tags discovery)"}
    assert "; 0 with errors" in run.output


def test_config_tag_validates_and_prints_without_aws(aws, playbook):
    run = playbook("--tags", "config")
    assert run.rc == 0, run.output[-3000:]
    assert aws.state.calls.snapshot()["total"] == 0
    assert "arn:aws:iam::210987654321:role/CmsPatchingRole" in run.output
    assert "cms-demo" not in run.output and "********" in run.output
    assert not list(run.report_dir.glob("*.csv")) if run.report_dir.exists() else True


def test_unknown_landing_zone_names_the_known_ones(aws, playbook):
    run = playbook(lz="prod")
    assert run.rc != 0
    assert "unknown landing zone 'prod': known landing zones are demo, example" in run.output
    assert "Traceback" not in run.output
    assert aws.state.calls.snapshot()["total"] == 0


def test_missing_lz_says_how_to_give_one(aws, playbook):
    run = playbook(lz=None)
    assert run.rc != 0 and "no landing zone given: run with -e lz=<name>" in run.output


def test_malformed_landing_zone_names_file_and_key(aws, playbook, tmp_path):
    bad = tmp_path / "lzs" / "broken" / "group_vars" / "all"
    bad.mkdir(parents=True)
    (bad / "landing_zone.yml").write_text(
        "cms_patching_landing_zone:\n  accounts:\n    - account_id: '123456789012'\n      role_arn: arn:aws:iam::123:role/x\n  regions: [eu-west-nine]\n"
        "  patching:\n    max_errors: lots\n"
    )
    run = playbook(lz="broken", env={"CMS_PATCHING_LZ_PATH": str(tmp_path / "lzs")})
    assert run.rc != 0
    path = str(bad / "landing_zone.yml")
    assert "%s: cms_patching_landing_zone.accounts[0].role_arn" % path in run.output
    # A region that fits a partition's pattern (eu-west-9) is accepted with a warning (newer than botocore); this one fits none.
    assert "%s: cms_patching_landing_zone.regions[0]: 'eu-west-nine' is not an AWS region name" % path in run.output
    assert "%s: cms_patching_landing_zone.patching.max_errors" % path in run.output
    assert aws.state.calls.snapshot()["total"] == 0


def test_inventory_hosts_are_the_candidates_and_limit_narrows(aws, playbook):
    run = playbook("-i", "inventories/demo", "--limit", "account_210987654321", "--tags", "discovery,backup")
    assert run.rc == 0, run.output[-3000:]
    rows = run.rows()
    assert len(rows) == 15 and {r["account_id"] for r in rows} == {"210987654321"}
    assert {r["backup_status"] for r in rows if r["target"] == "true"} == {"verified"}
    by_account = aws.state.calls.snapshot()["by_account"]
    assert "ec2:CreateImage" not in by_account.get("123456789012", {})
    assert by_account["210987654321"]["ec2:CreateImage"] == 11


def test_same_run_id_resumes_without_new_amis_or_commands(aws, playbook):
    first = playbook("-e", "run_id=20261127T100000Z-resume")
    assert first.rc == 2
    before = calls(aws)
    amis = {r["instance_id"]: r["ami_id"] for r in first.rows()}
    second = playbook("-e", "run_id=20261127T100000Z-resume")
    after = calls(aws)
    assert second.rc == 2
    assert after["ec2:CreateImage"] == before["ec2:CreateImage"]
    assert after["ssm:SendCommand"] == before["ssm:SendCommand"]
    assert {r["instance_id"]: r["ami_id"] for r in second.rows()} == amis


def test_check_mode_writes_nothing(aws, playbook):
    run = playbook("--check")
    assert run.rc == 0, run.output[-3000:]
    assert write_calls(aws) == {}
    rows = run.by_name()
    assert rows["web-01"]["backup_status"] == "skipped" and rows["web-01"]["patch_status"] == "skipped"
    # What the run would do is the plan, in its own column; a dry run reports no errors.
    assert "would send AWS-RunPatchBaseline" in rows["web-01"]["plan"] and "AMI" in rows["web-01"]["plan"]
    assert {r["error"] for r in rows.values()} == {""}
    assert all(r["plan"] for r in rows.values() if r["target"] == "true")
    assert "; 0 with errors" in run.output


def test_verify_backup_creates_nothing(aws, playbook):
    assert playbook("--tags", "discovery,backup").rc == 2
    creates = calls(aws)["ec2:CreateImage"]
    run = playbook("--tags", "verify_backup")
    assert calls(aws)["ec2:CreateImage"] == creates
    rows = run.by_name()
    assert rows["web-01"]["backup_status"] == "verified"
    assert rows["web-03"]["backup_status"] == "failed"
    assert run.rc == 2


def test_a_failing_canary_wave_stops_the_run(aws, playbook, tmp_path):
    import yaml

    source = (pathlib_repo() / "inventories/demo/.landing_zone.yml").read_text()
    config = yaml.safe_load(source)
    config["cms_patching_landing_zone"]["patching"]["waves"] = [{"name": "canary", "names": ["pay-web-02", "pay-web-01"]}, {"name": "rest"}]
    config["cms_patching_landing_zone"]["patching"]["max_failure_rate"] = 0
    # Both canaries at once: rate control is wave-wide, and at the demo's 50% one would wait for the other - the failed
    # pay-web-02 first spends the wave's error budget (max_errors 50% of 2) and pay-web-01 would never be sent.
    config["cms_patching_landing_zone"]["patching"]["max_concurrency"] = "100%"
    target = tmp_path / "lzs" / "canary"
    target.mkdir(parents=True)
    (target / ".landing_zone.yml").write_text(yaml.safe_dump(config))
    run = playbook(lz="canary", env={"CMS_PATCHING_LZ_PATH": str(tmp_path / "lzs")})
    assert run.rc == 2
    rows = run.by_name()
    assert rows["pay-web-02"]["patch_status"] == "failed" and rows["pay-web-01"]["patch_status"] == "success"
    assert rows["web-01"]["patch_status"] == "not_run"
    assert "the run stopped after wave canary: 1 of 2 patched instances failed (50.0% > 0%)" in rows["web-01"]["error"]
    assert sent_instance_ids(aws) == {rows["pay-web-02"]["instance_id"], rows["pay-web-01"]["instance_id"]}


def landing_zone(tmp_path, name, change):
    """A copy of the demo landing zone, changed by change(config), under tmp_path/lzs/<name>; returns CMS_PATCHING_LZ_PATH's env."""
    import yaml

    config = yaml.safe_load((pathlib_repo() / "inventories/demo/.landing_zone.yml").read_text())
    change(config["cms_patching_landing_zone"])
    target = tmp_path / "lzs" / name
    target.mkdir(parents=True)
    (target / ".landing_zone.yml").write_text(yaml.safe_dump(config))
    return {"CMS_PATCHING_LZ_PATH": str(tmp_path / "lzs")}


def wrong_external_id(lz):
    lz["accounts"][1]["external_id"] = "not-the-right-one"


def refused_with_own_canary(lz):
    """The second account refuses the role; the canary wave names only an instance of the first account. The planning
    step stops a run whose wave names an instance discovery did not find as a target (the demo's canary pay-eu-web-01
    is in the refused account), before any backup: that stop is test_waves' subject, not this test's."""
    wrong_external_id(lz)
    lz["patching"]["waves"] = [{"name": "canary", "names": ["web-01"]}, {"name": "rest"}]


def test_an_account_that_refuses_the_role_is_reported_and_the_others_are_patched(aws, playbook, tmp_path):
    # Retention is left out: it cannot reach that account either and would fail (and end the playbook) on its own.
    run = playbook("--skip-tags", "retention", lz="refused", env=landing_zone(tmp_path, "refused", refused_with_own_canary))
    assert run.rc == 2, run.output[-3000:]
    assert "Traceback" not in run.output
    rows = run.rows()
    locations = {r["region"]: r for r in rows if r["instance_id"] == ""}
    # One row per account/region of the refused account, naming the failure and what to check.
    assert set(locations) == {"us-east-1", "eu-west-1"}
    for region, row in locations.items():
        assert row["account_id"] == "210987654321"
        assert row["error"].startswith("discovery failed in 210987654321/%s: could not assume arn:aws:iam::210987654321:role/CmsPatchingRole" % region)
        assert "AccessDenied" in row["error"] and "external ID" in row["error"]
    # Every instance of the other account has its row, and its targets went through backup and patching.
    instances = {r["name"]: r for r in rows if r["instance_id"]}
    assert len(instances) == 15 and {r["account_id"] for r in instances.values()} == {"123456789012"}
    assert instances["web-01"]["patch_status"] == "success" and instances["web-01"]["error"] == ""
    assert all(r["error"] for r in instances.values() if r["target"] == "true" and "not_run" in (r["backup_status"], r["patch_status"]))
    assert "210987654321" not in calls_by_account(aws) or "ec2:CreateImage" not in calls_by_account(aws)["210987654321"]
    # The summary counts and names them; the run fails at its end so the job shows it.
    assert "discovery failed in 210987654321/us-east-1, 210987654321/eu-west-1" in run.output
    assert "discovery could not scan 2 account/region(s), whose instances were not patched: 210987654321/us-east-1: could not assume" in run.output
    assert "15 seen, 10 targets; backup: 9 verified, 1 failed, 5 skipped; patch: 9 success, 6 skipped; 3 with errors" in run.output


def test_discovery_on_error_stop_ends_the_run_and_every_target_says_why(aws, playbook, tmp_path):
    run = playbook("-e", "discovery_on_error=stop", lz="refused", env=landing_zone(tmp_path, "refused", wrong_external_id))
    assert run.rc == 2, run.output[-3000:]
    rows = run.rows()
    assert len([r for r in rows if r["instance_id"] == ""]) == 2 and len([r for r in rows if r["instance_id"]]) == 15
    reason = "backup phase did not run: the run stopped after discovery failed in 210987654321/us-east-1, 210987654321/eu-west-1"
    assert {r["error"] for r in rows if r["target"] == "true"} == {reason}
    assert write_calls(aws) == {}


def calls_by_account(aws):
    return aws.state.calls.snapshot()["by_account"]


def pathlib_repo():
    import pathlib

    return pathlib.Path(__file__).resolve().parents[2]


def test_retention_keeps_the_current_and_young_backups(aws, playbook):
    first = playbook("--tags", "discovery,backup")
    assert first.rc == 2
    amis = {r["ami_id"] for r in first.rows() if r["ami_id"]}
    run = playbook("--tags", "retention", "--check")
    assert run.rc == 0, run.output[-3000:]
    assert "Would remove 0 pre-patch AMI(s), kept %d" % len(amis) in run.output
    run = playbook("--tags", "retention")
    assert run.rc == 0 and "Removed 0 pre-patch AMI(s)" in run.output
    assert "ec2:DeregisterImage" not in calls(aws)


def test_opt_in_strategy_adds_the_hosts_in_the_controller_with_the_same_outcome(aws, playbook):
    # -e cms_patching_outcome_strategy=cms.patching.linear_outcome: the discovery, backup and patching plays add their
    # hosts through cms.patching.add_hosts in the controller; the gates, the outcome and the report are unchanged.
    run = playbook("-e", "cms_patching_outcome_strategy=cms.patching.linear_outcome")
    assert run.rc == 2, run.output[-3000:]
    assert "Traceback" not in run.output
    rows = run.by_name()
    assert len(rows) == 30 and sum(r["patch_status"] == "success" for r in rows.values()) == 19
    web3, pay2 = rows["web-03"], rows["pay-web-02"]
    assert (web3["backup_status"], web3["patch_status"]) == ("failed", "skipped") and pay2["patch_status"] == "failed"
    # The add_host loop of roles/discovery/tasks/add_hosts.yml had no item each time it came: the targets, the other
    # instances, the backup gate (web-03) and the patching gate (pay-web-02).
    loops = [part for part in run.output.split("TASK [") if part.startswith("cms.patching.discovery : Add the hosts left to one")]
    assert len(loops) == 4 and not [part for part in loops if "(item=" in part], loops
    recap = run.output[run.output.rindex("PLAY RECAP") :]
    # Every instance is a host of the run (30 and localhost); the held-back ones fail with their gate's reason.
    assert len([line for line in recap.splitlines() if ": ok=" in line]) == 31, recap
    assert "fatal: [%s]" % web3["instance_id"] in run.output and "%s: no verified backup, so it is not patched" % web3["instance_id"] in run.output
    assert "fatal: [%s]" % pay2["instance_id"] in run.output and "%s: not patched: failed" % pay2["instance_id"] in run.output
