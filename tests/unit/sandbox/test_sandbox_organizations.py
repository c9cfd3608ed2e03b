"""AWS Organizations in the sandbox: a seeded OU tree read through the endpoint, chosen account IDs, suspended accounts,
and AssumeRole refused for a role that does not exist in a member account (as AWS refuses it)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

from sandbox import Sandbox

SPEC = {
    "role_name": "CmsPatchingRole",
    "external_id": "org-ext",
    "accounts": [{"id": "111122223333", "name": "at-root"}],
    "ous": [
        {
            "name": "workloads",
            "accounts": [
                {"id": "333333333333", "name": "prod-a", "tags": {"Env": "prod"}},
                {"id": "444444444444", "name": "closed", "state": "SUSPENDED"},
                {"id": "555555555555", "name": "no-role", "role": False},
            ],
            "ous": [{"name": "prod", "accounts": [{"id": "666666666666"}]}],
        }
    ],
}


def arn(account: str, name: str = "CmsPatchingRole") -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def test_seeded_tree_is_served_through_the_endpoint(sandbox: Sandbox, client: Callable[..., Any]) -> None:
    summary = sandbox.seed_organization(SPEC)
    org = client("organizations")
    assert org.list_roots()["Roots"][0]["Id"] == summary["root"]
    workloads, prod = summary["ous"]["workloads"], summary["ous"]["workloads/prod"]
    children = org.list_children(ParentId=summary["root"], ChildType="ORGANIZATIONAL_UNIT")["Children"]
    assert [c["Id"] for c in children] == [workloads]
    accounts = {a["Id"]: a for a in org.list_accounts_for_parent(ParentId=workloads)["Accounts"]}
    assert set(accounts) == {"333333333333", "444444444444", "555555555555"}
    assert accounts["444444444444"]["State"] == "SUSPENDED" and accounts["333333333333"]["State"] == "ACTIVE"
    assert [a["Id"] for a in org.list_accounts_for_parent(ParentId=prod)["Accounts"]] == ["666666666666"]
    assert {a["Id"] for a in org.list_accounts_for_parent(ParentId=summary["root"])["Accounts"]} == {"123456789012", "111122223333"}
    assert org.list_tags_for_resource(ResourceId="333333333333")["Tags"] == [{"Key": "Env", "Value": "prod"}]
    page = org.list_accounts_for_parent(ParentId=workloads, MaxResults=2)
    assert len(page["Accounts"]) == 2 and page["NextToken"]


def test_assume_role_in_a_member_needs_the_role_to_exist(sandbox: Sandbox, client: Callable[..., Any]) -> None:
    sandbox.seed_organization(SPEC)
    sts = client("sts")
    assumed = sts.assume_role(RoleArn=arn("333333333333"), RoleSessionName="test", ExternalId="org-ext")
    assert assumed["AssumedRoleUser"]["Arn"].startswith("arn:aws:sts::333333333333:assumed-role/CmsPatchingRole/")
    for role in (arn("555555555555"), arn("333333333333", "NoSuchRole")):
        with pytest.raises(ClientError) as info:
            sts.assume_role(RoleArn=role, RoleSessionName="test", ExternalId="org-ext")
        assert info.value.response["Error"]["Code"] == "AccessDenied"
        assert f"not authorized to perform: sts:AssumeRole on resource: {role}" in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:  # the member's role wants the organization's external ID
        sts.assume_role(RoleArn=arn("333333333333"), RoleSessionName="test")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    # Outside an organization nothing changed: moto's lenient AssumeRole.
    assert sts.assume_role(RoleArn=arn("210987654321", "Anything"), RoleSessionName="test")["AssumedRoleUser"]


def test_reset_forgets_the_organization_and_its_strict_accounts(sandbox: Sandbox, client: Callable[..., Any]) -> None:
    sandbox.seed_organization(SPEC)
    sandbox.reset()
    assert client("sts").assume_role(RoleArn=arn("555555555555"), RoleSessionName="test")["AssumedRoleUser"]
    again = sandbox.seed_organization(SPEC)  # a new organization for the same management account
    assert set(again["accounts"]) == {"111122223333", "333333333333", "444444444444", "555555555555", "666666666666"}


def test_an_account_can_join_later(sandbox: Sandbox, client: Callable[..., Any]) -> None:
    summary = sandbox.seed_organization(SPEC)
    sandbox.add_organization_account(SPEC, {"id": "999999999999", "name": "late"}, summary["ous"]["workloads/prod"])
    ids = {a["Id"] for a in client("organizations").list_accounts_for_parent(ParentId=summary["ous"]["workloads/prod"])["Accounts"]}
    assert ids == {"666666666666", "999999999999"}


def test_a_scenario_with_an_organization_seeds_instances_in_members(sandbox: Sandbox) -> None:
    summary = sandbox.seed(
        {"organization": SPEC, "regions": ["us-east-1"], "instances": [{"name": "web", "account": "prod-a", "region": "us-east-1"}]}
    )
    assert summary["organization"]["accounts"]["333333333333"]["name"] == "prod-a"
    assert summary["instances"][0]["account"] == "333333333333"


def test_bad_organization_specs_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        sandbox.seed_organization({"accounts": [{"id": "12"}]})
    with pytest.raises(ValueError, match="unknown field"):
        sandbox.seed_organization({"ous": [{"name": "x", "acounts": []}]})
