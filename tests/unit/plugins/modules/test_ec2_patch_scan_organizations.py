"""ec2_patch_scan with an organization source, against the sandbox's AWS Organizations: nested OUs, a suspended account,
a member without the role, a new account between two runs, account tag filters, the management role."""

import pytest
from conftest import OWN_ACCOUNT

from ansible_collections.cms.patching.plugins.module_utils._report import RunReport
from ansible_collections.cms.patching.plugins.modules import ec2_patch_scan

PROD_A, PROD_B, NO_ROLE, SUSPENDED, NESTED, SANDBOX_DEV = "333333333333", "444444444444", "555555555555", "666666666666", "777777777777", "888888888888"
ROLE = "CmsPatchingRole"
ORG = {
    "role_name": ROLE,
    "ous": [
        {
            "name": "workloads",
            "accounts": [
                {"id": PROD_A, "name": "prod-a", "tags": {"Env": "prod"}},
                {"id": NO_ROLE, "name": "no-role", "role": False, "tags": {"Env": "prod"}},
                {"id": SUSPENDED, "name": "closed", "state": "SUSPENDED", "tags": {"Env": "prod"}},
            ],
            "ous": [
                {
                    "name": "prod",
                    "accounts": [{"id": PROD_B, "name": "prod-b", "tags": {"Env": "prod", "Patching": "manual"}}],
                    "ous": [{"name": "deep", "accounts": [{"id": NESTED, "name": "nested", "tags": {"Env": "prod"}}]}],
                }
            ],
        },
        {"name": "sandbox", "accounts": [{"id": SANDBOX_DEV, "name": "sandbox-dev", "tags": {"Env": "dev"}}]},
    ],
}
REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture
def org(aws):
    """The OU tree seeded, with one instance in each member account that has the role: {"organization": ..., "instances": {...}}."""
    summary = aws.seed(
        {
            "organization": ORG,
            "regions": REGIONS,
            "tags": {"Environment": "org"},
            "instances": [
                {"name": "a-web", "account": "prod-a", "region": "us-east-1"},
                {"name": "b-web", "account": "prod-b", "region": "eu-west-1"},
                {"name": "n-web", "account": "nested", "region": "us-east-1"},
                {"name": "d-web", "account": "sandbox-dev", "region": "us-east-1"},
            ],
        }
    )
    aws.state.calls.reset()
    return summary


def args(org, **source):
    organization = dict(ous=[org["organization"]["ous"]["workloads"]], role_name=ROLE)
    organization.update(source)
    return dict(regions=REGIONS, organization=organization, allow_partial=True)


def accounts_of(result, key="instances"):
    return {i["account_id"] for i in result[key]}


def test_nested_ous_are_walked_and_every_account_is_accounted_for(org, aws, run_module):
    result = run_module(ec2_patch_scan, args(org))
    assert not result.failed, result.get("msg")
    # Members: the OU, its child and grandchild; not the sibling OU "sandbox".
    assert {a["account_id"] for a in result["accounts"]} == {PROD_A, NO_ROLE, PROD_B, NESTED}
    assert all(a["role_arn"] == "arn:aws:iam::%s:role/%s" % (a["account_id"], ROLE) for a in result["accounts"])
    assert {i["name"] for i in result["instances"]} == {"a-web", "b-web", "n-web"}
    assert {a["account_id"]: a["parent_id"] for a in result["organization_accounts"]}[NESTED] == org["organization"]["ous"]["workloads/prod/deep"]
    # The suspended account: skipped with the reason, never assumed.
    assert result["skipped_accounts"] == [
        {
            "account_id": SUSPENDED,
            "name": "closed",
            "parent_id": org["organization"]["ous"]["workloads"],
            "state": "SUSPENDED",
            "reason": "account is SUSPENDED in AWS Organizations, not ACTIVE",
        }
    ]
    assumed = [c for c in aws.state.calls.log() if c["operation"] == "sts:AssumeRole"]
    assert SUSPENDED not in {c["account"] for c in assumed}
    # The member without the role: AssumeRole refused, an error per region naming the role; the others were scanned.
    assert {(e["account_id"], e["region"]) for e in result["errors"]} == {(NO_ROLE, r) for r in REGIONS}
    assert all("could not assume arn:aws:iam::%s:role/%s" % (NO_ROLE, ROLE) in e["error"] and "AccessDenied" in e["error"] for e in result["errors"])
    ops = aws.state.calls.snapshot()["operations"]
    assert ops["organizations:ListAccountsForParent"] == 3 and ops["organizations:ListChildren"] == 3
    assert "organizations:ListTagsForResource" not in ops  # no tag filter, no tag reads


def test_without_allow_partial_the_unassumable_member_fails_the_module_but_is_named(org, run_module):
    result = run_module(ec2_patch_scan, dict(args(org), allow_partial=False))
    assert result.failed and "%s/us-east-1" % NO_ROLE in result["msg"]
    assert {i["name"] for i in result["instances"]} == {"a-web", "b-web", "n-web"}


def test_the_report_has_a_row_for_every_account_of_the_ou(org, run_module):
    result = run_module(ec2_patch_scan, args(org))
    report = RunReport()
    report.add_discovery(result["instances"], errors=result["errors"], skipped_accounts=result["skipped_accounts"])
    rows = list(report.rows.values())
    assert {r["account_id"] for r in rows} == {PROD_A, NO_ROLE, SUSPENDED, PROD_B, NESTED}
    suspended = [r for r in rows if r["account_id"] == SUSPENDED]
    assert len(suspended) == 1 and suspended[0]["instance_id"] == "" and suspended[0]["error"] == ""
    assert suspended[0]["skip_reason"] == "account skipped: account is SUSPENDED in AWS Organizations, not ACTIVE"
    no_role = [r for r in rows if r["account_id"] == NO_ROLE]
    assert {r["region"] for r in no_role} == set(REGIONS) and all("AccessDenied" in r["error"] for r in no_role)
    summary = report.summary()
    assert summary["seen"] == 3 and sorted(summary["discovery_failed"]) == sorted("%s/%s" % (NO_ROLE, r) for r in REGIONS)


def test_a_new_account_in_the_ou_is_found_by_the_next_run(org, aws, run_module):
    first = run_module(ec2_patch_scan, args(org, recursive=False))
    assert {a["account_id"] for a in first["accounts"]} == {PROD_A, NO_ROLE}
    newcomer = "999999999999"
    aws.add_organization_account(ORG, {"id": newcomer, "name": "newcomer"}, org["organization"]["ous"]["workloads"])
    aws.seed(
        {
            "accounts": [{"id": newcomer, "role_arn": "arn:aws:iam::%s:role/%s" % (newcomer, ROLE)}],
            "regions": REGIONS,
            "instances": [{"name": "new-web", "account": newcomer, "region": "eu-west-1"}],
        }
    )
    second = run_module(ec2_patch_scan, args(org, recursive=False))
    assert {a["account_id"] for a in second["accounts"]} == {PROD_A, NO_ROLE, newcomer}
    assert "new-web" in {i["name"] for i in second["instances"]}
    assert newcomer not in accounts_of(first)


def test_account_tags_include_and_exclude(org, aws, run_module):
    root = org["organization"]["root"]
    result = run_module(ec2_patch_scan, args(org, ous=[root], include_tags={"Env": "prod"}, exclude_tags={"Patching": "manual"}))
    assert not result.failed, result.get("msg")
    # The management account (under the root, untagged) lacks Env=prod; sandbox-dev has Env=dev; prod-b is excluded.
    assert {a["account_id"] for a in result["accounts"]} == {PROD_A, NO_ROLE, NESTED}
    reasons = {s["account_id"]: s["reason"] for s in result["skipped_accounts"]}
    assert reasons == {
        OWN_ACCOUNT: "lacks the account tag Env=prod",
        SANDBOX_DEV: "lacks the account tag Env=prod",
        PROD_B: "excluded by account tag Patching=manual",
        SUSPENDED: "account is SUSPENDED in AWS Organizations, not ACTIVE",
    }
    assert {i["name"] for i in result["instances"]} == {"a-web", "n-web"}
    tag_reads = [c for c in aws.state.calls.log() if c["operation"] == "organizations:ListTagsForResource"]
    assert len(tag_reads) == 6  # every active account once; the suspended one is not asked


def test_explicit_accounts_win_and_exclude_accounts_skips(org, run_module):
    explicit = {"account_id": PROD_A, "role_arn": "arn:aws:iam::%s:role/%s" % (PROD_A, ROLE), "name": "listed"}
    result = run_module(ec2_patch_scan, dict(args(org, exclude_accounts=[NO_ROLE]), accounts=[explicit]))
    assert not result.failed, result.get("msg")
    assert result["accounts"][0] == explicit
    assert [a["account_id"] for a in result["accounts"]].count(PROD_A) == 1
    assert {s["account_id"]: s["reason"] for s in result["skipped_accounts"]}[NO_ROLE] == "listed in organization.exclude_accounts"
    assert result["errors"] == []
    assert PROD_A not in {a["account_id"] for a in result["organization_accounts"]}  # used as listed, not as a member


def test_accounts_only_lists_without_scanning(org, aws, run_module):
    result = run_module(ec2_patch_scan, dict(args(org), accounts_only=True))
    assert not result.failed and result["accounts_only"] is True and result["instances"] == []
    assert {a["account_id"] for a in result["organization_accounts"]} == {PROD_A, NO_ROLE, PROD_B, NESTED}
    ops = aws.state.calls.snapshot()["operations"]
    assert set(ops) == {"organizations:ListAccountsForParent", "organizations:ListChildren"}


def test_organizations_read_through_a_management_role(org, aws, run_module):
    # The management account's own role (the sandbox lets the caller assume it): the read goes through AssumeRole.
    reader = "arn:aws:iam::%s:role/OrgReader" % OWN_ACCOUNT
    result = run_module(ec2_patch_scan, dict(args(org, management_role_arn=reader), accounts_only=True))
    assert not result.failed, result.get("msg")
    assert {a["account_id"] for a in result["accounts"]} == {PROD_A, NO_ROLE, PROD_B, NESTED}
    assert [c["account"] for c in aws.state.calls.log() if c["operation"] == "sts:AssumeRole"] == [OWN_ACCOUNT]
    assert result["api_calls"]["calls"]["organizations:ListAccountsForParent"] == 3


def test_an_unknown_ou_fails_naming_it_and_the_reader(org, run_module):
    result = run_module(ec2_patch_scan, args(org, ous=["ou-zzzz-zzzzzzzz"]))
    assert result.failed
    assert "organizations:ListAccountsForParent failed for ou-zzzz-zzzzzzzz" in result["msg"] and "the caller's credentials" in result["msg"]


def test_bad_organization_input_is_refused_before_any_call(aws, run_module):
    result = run_module(
        ec2_patch_scan,
        dict(regions=REGIONS, organization=dict(ous=["ou-AB12-x", "r-ab12"], role_name="arn:aws:iam::1:role/x", management_external_id="abc")),
    )
    assert result.failed
    problems = result["problems"]
    assert any(p.startswith("organization.ous[0]: 'ou-AB12-x' is not an OU or root ID") for p in problems)
    assert any(p.startswith("organization.role_name: 'arn:aws:iam::1:role/x' is not an IAM role name") for p in problems)
    assert "organization.management_external_id: an external ID needs a management_role_arn to go with it" in problems
    assert aws.state.calls.snapshot()["total"] == 0


def test_neither_accounts_nor_organization_is_refused(aws, run_module):
    result = run_module(ec2_patch_scan, dict(regions=REGIONS))
    assert result.failed and "accounts: give at least one account, or an organization source" in result["problems"]


def test_the_shipped_policy_grants_exactly_the_organizations_calls_made(org, aws, run_module):
    import json
    import pathlib

    policy = json.loads((pathlib.Path(__file__).resolve().parents[4] / "iam" / "organizations-read.json").read_text())
    granted = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    run_module(ec2_patch_scan, dict(args(org, include_tags={"Env": "*"}), accounts_only=True))
    made = {c["operation"] for c in aws.state.calls.log() if c["operation"].startswith("organizations:")}
    assert made == granted


def test_a_member_without_instances_still_gets_a_report_row(org, aws, run_module):
    empty = "121212121212"
    aws.add_organization_account(ORG, {"id": empty, "name": "empty"}, org["organization"]["ous"]["workloads"])
    result = run_module(ec2_patch_scan, args(org))
    assert result["empty_accounts"] == [{"account_id": empty, "name": "empty", "parent_id": org["organization"]["ous"]["workloads"]}]
    report = RunReport()
    report.add_discovery(result["instances"], errors=result["errors"], skipped_accounts=result["skipped_accounts"], empty_accounts=result["empty_accounts"])
    row = report.rows["account:%s" % empty]
    assert row["skip_reason"] == "account scanned: no instance of the landing zone found in its regions" and row["error"] == ""
    assert report.summary()["seen"] == 3
    # Narrowed to candidates (an inventory, --limit), an account without one of them is not "empty".
    narrowed = run_module(ec2_patch_scan, dict(args(org), instance_ids=[i["instance_id"] for i in result["instances"]][:1]))
    assert narrowed["empty_accounts"] == []


def test_a_throttled_organizations_read_is_retried(org, aws, run_module):
    aws.state.faults.add("throttle", operation="organizations:ListAccountsForParent", count=2)
    result = run_module(ec2_patch_scan, dict(args(org), accounts_only=True, retries={"base_delay": 0.01, "max_delay": 0.02}))
    assert not result.failed, result.get("msg")
    assert {a["account_id"] for a in result["accounts"]} == {PROD_A, NO_ROLE, PROD_B, NESTED}
    assert result["api_calls"]["retries"] == {"organizations:ListAccountsForParent": 2}
