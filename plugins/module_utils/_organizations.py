# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A landing zone's accounts from AWS Organizations: the accounts of some OUs (recursively or not), filtered by account tags.

The OU tree is walked with ``ListAccountsForParent`` and ``ListChildren`` (ChildType ORGANIZATIONAL_UNIT), every page
followed by ``NextToken`` (Organizations may answer an empty page that still has a NextToken: the API reference of both
operations says to read until NextToken is null). Account tags come from ``ListTagsForResource``, asked only when a tag
filter is configured and only for active accounts. Both may be called only from the management account or a delegated
administrator: the caller's own credentials, or the ``management_role_arn`` assumed through the fleet session.

Every account found is accounted for: it becomes a member of the landing zone (with the role ``role_name`` to assume in
it), or it is *skipped* with the reason (not ACTIVE, excluded by an account tag or by ``exclude_accounts``), so the report
can say so.

API reference: https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListAccountsForParent.html,
API_ListChildren.html, API_ListTagsForResource.html, API_Account.html (``State``: PENDING_ACTIVATION, ACTIVE, SUSPENDED,
PENDING_CLOSURE, CLOSED; the older ``Status`` is read when ``State`` is absent).
"""

import re

from ansible_collections.cms.patching.plugins.module_utils import _validate as v
from ansible_collections.cms.patching.plugins.module_utils._retry import paginate
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError, describe_aws_error

# Organizations' own ID patterns (API_ListChildren ParentId): a root "r-" + 4..32 lower-case letters or digits; an OU
# "ou-" + 4..32 (its root's ID) + "-" + 8..32 lower-case letters or digits.
ROOT_ID_RE = re.compile(r"^r-[0-9a-z]{4,32}$")
OU_ID_RE = re.compile(r"^ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}$")
# IAM role names (IAM API reference, CreateRole RoleName): 1..64 of letters, digits and +=,.@_-.
ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
ACTIVE = "ACTIVE"


def parent_id_error(value):
    if isinstance(value, str) and (OU_ID_RE.match(value) or ROOT_ID_RE.match(value)):
        return None
    return "%r is not an OU or root ID: expected ou-<root>-<ou> (e.g. ou-ab12-cdef3456) or r-<root> (e.g. r-ab12), lower-case letters and digits" % (value,)


def role_name_error(value):
    if isinstance(value, str) and ROLE_NAME_RE.match(value):
        return None
    return (
        "%r is not an IAM role name: 1 to 64 letters, digits and + = , . @ _ - (a name, not an ARN: the ARN is built per account, "
        "e.g. CmsPatchingRole)" % (value,)
    )


def source_problems(source, regions, path="organization"):
    """Problems of an organization source (a dict with the module's / schema's keys), each naming the key."""
    problems = []
    parents = source.get("ous") or []
    if not parents:
        problems.append("%s.ous: give at least one OU or root ID" % path)
    for i, parent in enumerate(parents):
        error = parent_id_error(parent)
        if error:
            problems.append("%s.ous[%d]: %s" % (path, i, error))
    if len(set(parents)) != len(parents):
        problems.append("%s.ous: an OU is listed twice" % path)
    if source.get("role_name") is not None:
        error = role_name_error(source["role_name"])
        if error:
            problems.append("%s.role_name: %s" % (path, error))
    for key in ("external_id", "management_external_id"):
        if source.get(key) is not None:
            error = v.external_id_error(source[key])
            if error:
                problems.append("%s.%s: %s" % (path, key, error))
    for i, account_id in enumerate(source.get("exclude_accounts") or []):
        error = v.account_id_error(account_id)
        if error:
            problems.append("%s.exclude_accounts[%d]: %s" % (path, i, error))
    arn = source.get("management_role_arn")
    if arn:
        error = v.role_arn_error(arn)
        if error is None and regions:
            error = v.partition_error(arn, regions, v.ROLE_ARN_RE.match(arn).group(2))
        if error:
            problems.append("%s.management_role_arn: %s" % (path, error))
    elif source.get("management_external_id"):
        problems.append("%s.management_external_id: an external ID needs a management_role_arn to go with it" % path)
    return problems


def _matches(tags, key, wanted):
    """The instance tag rule of discovery, for account tags: the key is present with one of the values ('*' any)."""
    if key not in tags:
        return False
    values = wanted if isinstance(wanted, list) else [wanted]
    return "*" in values or tags[key] in values


def tag_skip_reason(tags, include_tags, exclude_tags):
    """Why an account's tags keep it out of the landing zone, or None."""
    for key, wanted in sorted((exclude_tags or {}).items()):
        if _matches(tags, key, wanted):
            return "excluded by account tag %s=%s" % (key, tags[key])
    for key, wanted in sorted((include_tags or {}).items()):
        if not _matches(tags, key, wanted):
            return "lacks the account tag %s=%s" % (key, "|".join(wanted) if isinstance(wanted, list) else wanted)
    return None


class Resolved:
    """The outcome of one resolution: member accounts (as FleetSession takes them) and skipped accounts (with the reason)."""

    def __init__(self):
        self.accounts = []
        self.skipped = []
        self.parents = {}  # account ID -> the OU or root it was found in

    def describe(self):
        """A printable summary: no external IDs."""
        return {
            "accounts": [{k: a.get(k) for k in ("account_id", "name", "parent_id", "role_arn")} for a in self.accounts],
            "skipped": list(self.skipped),
        }


class Walker:
    """Reads the OU tree through one retrying Organizations client."""

    def __init__(self, client, reader):
        self.client = client
        self.reader = reader  # "the caller's credentials" or the management role's ARN, for messages

    def _call(self, operation, parent, pages):
        try:
            return list(pages())
        except FleetError:
            raise
        except Exception as exc:  # pylint: disable=broad-except  # every Organizations failure becomes one clear FleetError
            raise FleetError(
                "organizations:%s failed for %s: %s; check that %s is an ID of the organization and that %s may read it (the management "
                "account, or a delegated administrator, with organizations:ListAccountsForParent, ListChildren and ListTagsForResource)"
                % (operation, parent, describe_aws_error(exc), parent, self.reader)
            ) from None

    def accounts(self, parent):
        return self._call("ListAccountsForParent", parent, lambda: paginate(self.client.list_accounts_for_parent, "Accounts", ParentId=parent))

    def child_ous(self, parent):
        children = self._call("ListChildren", parent, lambda: paginate(self.client.list_children, "Children", ParentId=parent, ChildType="ORGANIZATIONAL_UNIT"))
        return [child["Id"] for child in children]

    def tags(self, account_id):
        pages = self._call("ListTagsForResource", account_id, lambda: paginate(self.client.list_tags_for_resource, "Tags", ResourceId=account_id))
        return {t["Key"]: t.get("Value", "") for t in pages}


def state_of(account):
    return account.get("State") or account.get("Status") or ""


def resolve(client, source, partition, reader="the caller's credentials"):
    """Walk the source's OUs through ``client`` (a retrying Organizations client); return a Resolved.

    An OU reached twice (listed, and nested in another listed OU) is read once; so is an account.
    """
    walker = Walker(client, reader)
    resolved = Resolved()
    excluded = set(source.get("exclude_accounts") or [])
    tag_rules = source.get("include_tags") or source.get("exclude_tags")
    pending = list(source["ous"])
    seen_parents, seen_accounts = set(), set()
    while pending:
        parent = pending.pop(0)
        if parent in seen_parents:
            continue
        seen_parents.add(parent)
        for account in walker.accounts(parent):
            account_id = account["Id"]
            if account_id in seen_accounts:
                continue
            seen_accounts.add(account_id)
            resolved.parents[account_id] = parent
            name = account.get("Name", "")
            reason = None
            state = state_of(account)
            if state != ACTIVE:
                reason = "account is %s in AWS Organizations, not ACTIVE" % (state or "of unknown state")
            elif account_id in excluded:
                reason = "listed in organization.exclude_accounts"
            elif tag_rules:
                reason = tag_skip_reason(walker.tags(account_id), source.get("include_tags"), source.get("exclude_tags"))
            if reason:
                resolved.skipped.append({"account_id": account_id, "name": name, "parent_id": parent, "state": state, "reason": reason})
                continue
            member = {
                "account_id": account_id,
                "name": name,
                "parent_id": parent,
                "role_arn": "arn:%s:iam::%s:role/%s" % (partition or "aws", account_id, source["role_name"]),
            }
            for key in ("external_id", "duration_seconds", "session_name"):
                if source.get(key) is not None:
                    member[key] = source[key]
            resolved.accounts.append(member)
        if source.get("recursive", True):
            pending.extend(walker.child_ous(parent))
    resolved.accounts.sort(key=lambda a: a["account_id"])
    resolved.skipped.sort(key=lambda a: a["account_id"])
    return resolved


def merge(explicit, resolved):
    """The landing zone's accounts: the explicit ones first (they win: their role, their external ID), then the OU's others.

    An account listed explicitly is a member even if the OU walk skipped it (the operator named it).
    """
    named = {str(a["account_id"]) for a in explicit}
    accounts = [dict(a) for a in explicit] + [a for a in resolved.accounts if a["account_id"] not in named]
    skipped = [s for s in resolved.skipped if s["account_id"] not in named]
    return accounts, skipped


def organizations_client(fleet, source, region):
    """(retrying Organizations client, who reads) for the source: the management role's when given, else the caller's own.

    Organizations has one endpoint per partition (us-east-1 for aws); botocore routes any region of the partition to it.
    """
    arn = source.get("management_role_arn")
    if not arn:
        return fleet.caller_client("organizations", region), "the caller's credentials"
    account_id = v.ROLE_ARN_RE.match(arn).group(2)
    reader = {"account_id": account_id, "role_arn": arn}
    if source.get("management_external_id"):
        reader["external_id"] = source["management_external_id"]
    return fleet.sibling([reader]).client("organizations", account_id, region), arn


def resolve_accounts(fleet, explicit, source, regions):
    """(accounts, skipped, members found in the OUs and not listed); registers the accounts with the fleet so they can be scanned."""
    region = regions[0]
    client, reader = organizations_client(fleet, source, region)
    resolved = resolve(client, source, v.partition_of(region), reader)
    accounts, skipped = merge(explicit, resolved)
    fleet.add_accounts(accounts)
    named = {str(a["account_id"]) for a in explicit}
    # An account also listed explicitly is used with its listed settings, so it is not shown as an organization member.
    return accounts, skipped, [m for m in resolved.describe()["accounts"] if m["account_id"] not in named]


def empty_accounts(members, records, errors):
    """The members (as Resolved.describe gives them) with no instance and no scan error: {account_id, name, parent_id}."""
    busy = {r["account_id"] for r in records} | {e["account_id"] for e in errors}
    return [{k: m[k] for k in ("account_id", "name", "parent_id")} for m in members if m["account_id"] not in busy]
