"""site.yml with a landing zone whose accounts come from AWS Organizations (an OU tree seeded in the sandbox)."""

import pathlib

import yaml

ROLE = "CmsPatchingRole"
PROD_A, NO_ROLE, SUSPENDED, NESTED = "333333333333", "555555555555", "444444444444", "666666666666"
REGIONS = ["us-east-1", "eu-west-1"]
ORG = {
    "role_name": ROLE,
    "external_id": "cms-org",
    "ous": [
        {
            "name": "workloads",
            "accounts": [
                {"id": PROD_A, "name": "prod-a"},
                {"id": NO_ROLE, "name": "no-role", "role": False},
                {"id": SUSPENDED, "name": "closed", "state": "SUSPENDED"},
            ],
            "ous": [{"name": "prod", "accounts": [{"id": NESTED, "name": "nested"}]}],
        }
    ],
}


def seed_org(aws):
    summary = aws.seed(
        {
            "organization": ORG,
            "regions": REGIONS,
            "tags": {"Environment": "org"},
            "instances": [
                {"name": "org-a-1", "account": "prod-a", "region": "us-east-1"},
                {"name": "org-a-2", "account": "prod-a", "region": "eu-west-1", "managed": None},
                {"name": "org-n-1", "account": "nested", "region": "eu-west-1"},
            ],
        }
    )
    aws.state.calls.reset()
    return summary["organization"]


def org_landing_zone(tmp_path, workloads_ou, **source):
    config = {
        "cms_patching_landing_zone": {
            "description": "accounts of the workloads OU",
            "organization": dict({"ous": [workloads_ou], "role_name": ROLE, "external_id": "cms-org"}, **source),
            "regions": REGIONS,
            "targets": {"filters": {"tag:Environment": "org"}},
        }
    }
    target = pathlib.Path(tmp_path) / "lzs" / "org"
    target.mkdir(parents=True)
    (target / ".landing_zone.yml").write_text(yaml.safe_dump(config))
    return {"CMS_PATCHING_LZ_PATH": str(pathlib.Path(tmp_path) / "lzs")}


def test_discovery_reports_every_account_of_the_ou(aws, playbook, tmp_path):
    org = seed_org(aws)
    run = playbook("--tags", "discovery", lz="org", env=org_landing_zone(tmp_path, org["ous"]["workloads"]))
    # The member without the role is a discovery error: the others are scanned, and the verdict fails the run at its end.
    assert run.rc == 2, run.output[-3000:]
    assert "discovery could not scan 2 account/region(s)" in run.output, run.output[-5000:]
    rows = run.rows()
    instances = {r["name"]: r for r in rows if r["instance_id"]}
    assert set(instances) == {"org-a-1", "org-a-2", "org-n-1"}
    assert instances["org-a-1"]["account_id"] == PROD_A and instances["org-a-1"]["target"] == "true"
    assert instances["org-n-1"]["account_id"] == NESTED and instances["org-n-1"]["target"] == "true"
    assert instances["org-a-2"]["target"] == "false" and instances["org-a-2"]["skip_reason"].startswith("not managed by SSM")
    accounts = [r for r in rows if not r["instance_id"]]
    no_role = sorted((r["account_id"], r["region"]) for r in accounts if r["error"])
    assert no_role == sorted((NO_ROLE, region) for region in REGIONS)
    assert all("could not assume arn:aws:iam::%s:role/%s" % (NO_ROLE, ROLE) in r["error"] for r in accounts if r["error"])
    suspended = [r for r in accounts if r["account_id"] == SUSPENDED]
    assert len(suspended) == 1 and suspended[0]["error"] == "" and suspended[0]["target"] == "false"
    assert suspended[0]["skip_reason"] == "account skipped: account is SUSPENDED in AWS Organizations, not ACTIVE"
    assert {r["account_id"] for r in rows} == {PROD_A, NO_ROLE, SUSPENDED, NESTED}
    ops = aws.state.calls.snapshot()["operations"]
    assert ops["organizations:ListAccountsForParent"] == 2 and ops["organizations:ListChildren"] == 2


def test_tags_config_prints_the_resolved_accounts(aws, playbook, tmp_path):
    org = seed_org(aws)
    run = playbook("--tags", "config", lz="org", env=org_landing_zone(tmp_path, org["ous"]["workloads"]))
    assert run.rc == 0, run.output[-3000:]
    assert "Show the accounts resolved from AWS Organizations (read with an AWS call" in run.output
    for account in (PROD_A, NO_ROLE, NESTED):
        assert '"account_id": "%s"' % account in run.output
    assert "account is SUSPENDED in AWS Organizations, not ACTIVE" in run.output
    assert "cms-org" not in run.output  # the external ID is masked in what is printed
    ops = aws.state.calls.snapshot()["operations"]
    assert set(ops) == {"organizations:ListAccountsForParent", "organizations:ListChildren"}


def test_backup_reaches_the_member_accounts_discovery_found(aws, playbook, tmp_path):
    org = seed_org(aws)
    env = org_landing_zone(tmp_path, org["ous"]["workloads"])
    run = playbook("--tags", "discovery,backup", "-e", "discovery_on_error=continue", lz="org", env=env)
    rows = {r["name"]: r for r in run.rows() if r["instance_id"]}
    # The later phases use the accounts resolved from the OUs (with their role): the members' targets get their AMIs.
    assert rows["org-a-1"]["backup_status"] == "verified" and rows["org-n-1"]["backup_status"] == "verified", run.output[-3000:]
    created = aws.state.calls.snapshot()["by_account"]
    assert created[PROD_A].get("ec2:CreateImage") == 1 and created[NESTED].get("ec2:CreateImage") == 1


def test_retention_alone_resolves_the_accounts_first(aws, playbook, tmp_path):
    org = seed_org(aws)
    env = org_landing_zone(tmp_path, org["ous"]["workloads"], exclude_accounts=[NO_ROLE])
    run = playbook("--tags", "retention", lz="org", env=env)
    assert run.rc == 0, run.output[-3000:]
    by_account = aws.state.calls.snapshot()["by_account"]
    # No scan ran: the OU was read, and retention looked for pre-patch AMIs in its members too.
    assert by_account["123456789012"]["organizations:ListAccountsForParent"] == 2
    assert "ec2:DescribeInstances" not in {op for ops in by_account.values() for op in ops}
    assert {account for account, ops in by_account.items() if "ec2:DescribeImages" in ops} == {PROD_A, NESTED}
