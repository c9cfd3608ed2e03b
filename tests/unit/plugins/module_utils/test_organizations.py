"""_organizations: the OU walk as the API reference describes it (pages, empty pages with a NextToken), without AWS."""

import pytest

from ansible_collections.cms.patching.plugins.module_utils import _organizations as org
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError


class PagedOrganizations:
    """A stub Organizations client: pages of at most 2 items, and an empty first page with a NextToken (AWS may answer that)."""

    def __init__(self, tree, accounts, tags=None):
        self.tree, self.accounts, self.tags, self.calls = tree, accounts, tags or {}, []

    def _page(self, items, key, token):
        start = int(token or -1)
        if start < 0:
            return {key: [], "NextToken": "0"}
        page = items[start : start + 2]
        return dict({key: page}, **({"NextToken": str(start + 2)} if start + 2 < len(items) else {}))

    def list_accounts_for_parent(self, ParentId, NextToken=None):
        self.calls.append(("ListAccountsForParent", ParentId))
        if ParentId not in self.tree:
            raise RuntimeError("ParentNotFoundException")
        return self._page([self.accounts[a] for a in self.tree[ParentId]["accounts"]], "Accounts", NextToken)

    def list_children(self, ParentId, ChildType, NextToken=None):
        self.calls.append(("ListChildren", ParentId))
        return self._page([{"Id": c, "Type": ChildType} for c in self.tree[ParentId]["ous"]], "Children", NextToken)

    def list_tags_for_resource(self, ResourceId, NextToken=None):
        self.calls.append(("ListTagsForResource", ResourceId))
        return self._page([{"Key": k, "Value": v} for k, v in self.tags.get(ResourceId, {}).items()], "Tags", NextToken)


def account(account_id, state="ACTIVE"):
    return {"Id": account_id, "Name": "n%s" % account_id[:2], "State": state}


IDS = ["%012d" % i for i in range(1, 8)]
TREE = {
    "ou-ab12-aaaaaaaa": {"accounts": IDS[:5], "ous": ["ou-ab12-bbbbbbbb", "ou-ab12-cccccccc", "ou-ab12-dddddddd"]},
    "ou-ab12-bbbbbbbb": {"accounts": [IDS[5]], "ous": []},
    "ou-ab12-cccccccc": {"accounts": [], "ous": []},
    "ou-ab12-dddddddd": {"accounts": [IDS[6]], "ous": ["ou-ab12-bbbbbbbb"]},
}
ACCOUNTS = {a: account(a) for a in IDS}
ACCOUNTS[IDS[2]] = account(IDS[2], "PENDING_CLOSURE")


def test_every_page_is_read_and_every_ou_once():
    client = PagedOrganizations(TREE, ACCOUNTS)
    resolved = org.resolve(client, {"ous": ["ou-ab12-aaaaaaaa", "ou-ab12-bbbbbbbb"], "role_name": "R"}, "aws-us-gov")
    assert [a["account_id"] for a in resolved.accounts] == [a for a in IDS if a != IDS[2]]
    assert resolved.accounts[0]["role_arn"] == "arn:aws-us-gov:iam::%s:role/R" % IDS[0]
    assert [(s["account_id"], s["reason"]) for s in resolved.skipped] == [(IDS[2], "account is PENDING_CLOSURE in AWS Organizations, not ACTIVE")]
    # ou-b is listed and nested twice: read once (its empty first page and its one account: 2 calls).
    assert sum(1 for c in client.calls if c == ("ListAccountsForParent", "ou-ab12-bbbbbbbb")) == 2
    # 5 accounts in pages of 2 after an empty first page: 4 calls.
    assert sum(1 for c in client.calls if c == ("ListAccountsForParent", "ou-ab12-aaaaaaaa")) == 4


def test_not_recursive_reads_only_the_listed_ous():
    client = PagedOrganizations(TREE, ACCOUNTS)
    resolved = org.resolve(client, {"ous": ["ou-ab12-aaaaaaaa"], "role_name": "R", "recursive": False}, "aws")
    assert {a["account_id"] for a in resolved.accounts} == set(IDS[:5]) - {IDS[2]}
    assert not [c for c in client.calls if c[0] == "ListChildren"]


def test_tag_rules_and_what_a_member_carries():
    tags = {IDS[0]: {"Env": "prod"}, IDS[1]: {"Env": "prod", "Patching": "manual"}, IDS[3]: {"Env": "dev"}}
    client = PagedOrganizations(TREE, ACCOUNTS, tags)
    source = {
        "ous": ["ou-ab12-aaaaaaaa"],
        "recursive": False,
        "role_name": "R",
        "include_tags": {"Env": ["prod", "staging"]},
        "exclude_tags": {"Patching": "*"},
        "external_id": "x-id",
        "duration_seconds": 1800,
    }
    resolved = org.resolve(client, source, "aws")
    assert resolved.accounts == [
        {
            "account_id": IDS[0],
            "name": "n00",
            "parent_id": "ou-ab12-aaaaaaaa",
            "role_arn": "arn:aws:iam::%s:role/R" % IDS[0],
            "external_id": "x-id",
            "duration_seconds": 1800,
        }
    ]
    reasons = {s["account_id"]: s["reason"] for s in resolved.skipped}
    assert reasons[IDS[1]] == "excluded by account tag Patching=manual"
    assert reasons[IDS[3]] == reasons[IDS[4]] == "lacks the account tag Env=prod|staging"
    assert ("ListTagsForResource", IDS[2]) not in client.calls  # a closing account's tags are not read


def test_explicit_accounts_win():
    client = PagedOrganizations(TREE, ACCOUNTS)
    resolved = org.resolve(client, {"ous": ["ou-ab12-bbbbbbbb"], "role_name": "R"}, "aws")
    listed = [{"account_id": IDS[5], "role_arn": "arn:aws:iam::%s:role/Own" % IDS[5]}]
    accounts, skipped = org.merge(listed, resolved)
    assert accounts == listed and skipped == []


def test_a_failed_read_names_the_call_the_parent_and_the_reader():
    client = PagedOrganizations(TREE, ACCOUNTS)
    with pytest.raises(FleetError) as info:
        org.resolve(client, {"ous": ["ou-ab12-zzzzzzzz"], "role_name": "R"}, "aws", reader="arn:aws:iam::1:role/Reader")
    assert "organizations:ListAccountsForParent failed for ou-ab12-zzzzzzzz" in str(info.value) and "arn:aws:iam::1:role/Reader" in str(info.value)


@pytest.mark.parametrize("value", ["ou-ab12-cdef3456", "r-ab12", "ou-abcdefgh12-cdef3456abcd"])
def test_parent_ids_accepted(value):
    assert org.parent_id_error(value) is None


@pytest.mark.parametrize("value", ["ou-AB12-cdef3456", "ou-ab1-cdef3456", "ou-ab12-cdef345", "r-ab1", "123456789012", "", None])
def test_parent_ids_refused(value):
    assert "is not an OU or root ID" in org.parent_id_error(value)


@pytest.mark.parametrize("value,ok", [("CmsPatchingRole", True), ("a+=,.@_-", True), ("x" * 64, True), ("x" * 65, False), ("role/x", False), ("", False)])
def test_role_names(value, ok):
    assert (org.role_name_error(value) is None) == ok
