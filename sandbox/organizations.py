"""AWS Organizations in the sandbox: seed an OU tree with accounts of chosen IDs, tags, states and roles.

moto 5.2.5 serves Organizations (CreateOrganization, ListRoots, ListChildren, ListAccountsForParent with MaxResults /
NextToken, ListTagsForResource, CloseAccount...) through the sandbox's endpoint as it is; what it lacks for a
landing zone, this module adds:

- chosen account IDs (moto draws random ones), so a scenario's instances can live in a member account;
- a member's patching role as an IAM role of that account (moto creates only OrganizationAccountAccessRole), or none
  (``role: false``); the account is registered with ``RoleRegistry.require_existing`` so that AssumeRole of a role
  that does not exist there is refused with AccessDenied, as AWS answers (STS API reference, AssumeRole: "the
  requested role does not exist" is reported as AccessDenied "not authorized to perform: sts:AssumeRole");
- suspended accounts (``state: SUSPENDED``: moto's CloseAccount, which goes to SUSPENDED at once).

The spec (a scenario's ``organization`` key, or ``seed(state, spec)``)::

    management_account: "123456789012"     # the caller's account by default: it reads the organization
    role_name: CmsPatchingRole             # created in every member account unless the account says role: false
    external_id: cms-org                   # optional: the role's trust policy wants it
    accounts: [...]                        # accounts directly under the root
    ous:
      - name: workloads
        accounts: [{id: "333333333333", name: prod-a, tags: {Env: prod}}, {id: "444444444444", state: SUSPENDED},
                   {id: "555555555555", role: false}]
        ous: [{name: prod, accounts: [...]}]

The summary names the root and every OU by path (``workloads/prod``) with its ID.
"""

from __future__ import annotations

import json
from typing import Any

from moto.iam.models import iam_backends
from moto.organizations.models import organizations_backends

DEFAULT_MANAGEMENT = "123456789012"
_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
_ACCOUNT_KEYS = {"id", "name", "tags", "state", "role"}
_OU_KEYS = {"name", "accounts", "ous"}


def member_accounts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every account of the tree that has the role, as a scenario account (id, alias, role_arn, external_id)."""
    found = []

    def walk(node: dict[str, Any]) -> None:
        for account in node.get("accounts") or []:
            if account.get("role", True) and str(account.get("state", "ACTIVE")).upper() == "ACTIVE":
                entry = {"id": str(account["id"]), "role_arn": _role_arn(str(account["id"]), spec)}
                if account.get("name"):
                    entry["alias"] = account["name"]
                if spec.get("external_id"):
                    entry["external_id"] = spec["external_id"]
                found.append(entry)
        for child in node.get("ous") or []:
            walk(child)

    walk(spec)
    return found


def _role_arn(account_id: str, spec: dict[str, Any]) -> str:
    return f"arn:aws:iam::{account_id}:role/{spec.get('role_name', 'CmsPatchingRole')}"


def _backend(management: str) -> Any:
    return organizations_backends[management]["aws"]


def seed(state: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Create the organization (if the management account has none) and the tree; return {root, ous, accounts}."""
    management = str(spec.get("management_account", DEFAULT_MANAGEMENT))
    backend = _backend(management)
    if backend.org is None:
        # moto keeps its member -> management map across resets; entries of an earlier organization would make a new one refuse.
        for member, (owner, _partition) in list(organizations_backends.master_accounts.items()):
            if owner == management:
                organizations_backends.master_accounts.pop(member, None)
        backend.create_organization(region="us-east-1", FeatureSet="ALL")
    root = next(ou.id for ou in backend.ou if ou.type == "ROOT")
    summary: dict[str, Any] = {"management_account": management, "root": root, "ous": {}, "accounts": {}}
    _add_children(state, backend, spec, spec, root, "", summary)
    return summary


def _add_children(state: Any, backend: Any, spec: dict[str, Any], node: dict[str, Any], parent_id: str, path: str, summary: dict[str, Any]) -> None:
    for account in node.get("accounts") or []:
        add_account(state, spec, account, parent_id, summary)
    for child in node.get("ous") or []:
        unknown = set(child) - _OU_KEYS
        if unknown:
            raise ValueError(f"organization OU {child.get('name')!r}: unknown field(s) {sorted(unknown)}; known: {sorted(_OU_KEYS)}")
        ou_id = backend.create_organizational_unit(Name=str(child["name"]), ParentId=parent_id)["OrganizationalUnit"]["Id"]
        child_path = f"{path}/{child['name']}" if path else str(child["name"])
        summary["ous"][child_path] = ou_id
        _add_children(state, backend, spec, child, ou_id, child_path, summary)


def add_account(state: Any, spec: dict[str, Any], account: dict[str, Any], parent_id: str, summary: dict[str, Any] | None = None) -> str:
    """Create one account under parent_id (an OU or root ID) with the given ID; e.g. a new account joining between two runs."""
    unknown = set(account) - _ACCOUNT_KEYS
    if unknown:
        raise ValueError(f"organization account {account.get('id')!r}: unknown field(s) {sorted(unknown)}; known: {sorted(_ACCOUNT_KEYS)}")
    account_id = str(account["id"])
    if not (len(account_id) == 12 and account_id.isdigit()):
        raise ValueError(f"organization account id must be 12 digits, got {account_id!r}")
    management = str(spec.get("management_account", DEFAULT_MANAGEMENT))
    backend = _backend(management)
    name = str(account.get("name") or f"account-{account_id}")
    tags = [{"Key": str(k), "Value": str(v)} for k, v in (account.get("tags") or {}).items()]
    status = backend.create_account(AccountName=name, Email=f"{account_id}@example.org", Tags=tags)["CreateAccountStatus"]
    created = backend.get_account_by_id(status["AccountId"])
    # moto draws the ID; the scenario's is the one instances and roles use.
    organizations_backends.master_accounts.pop(created.id, None)
    created.id = account_id
    organizations_backends.master_accounts[account_id] = (management, "aws")
    created.parent_id = parent_id
    if str(account.get("state", "ACTIVE")).upper() == "SUSPENDED":
        created.close()
    elif str(account.get("state", "ACTIVE")).upper() != "ACTIVE":
        raise ValueError(f"organization account {account_id}: state must be ACTIVE or SUSPENDED")
    state.roles.require_existing(account_id)
    if account.get("role", True):
        role_arn = _role_arn(account_id, spec)
        iam = iam_backends[account_id]["global"]
        role_name = role_arn.rsplit("/", 1)[1]
        try:
            iam.get_role(role_name)
        except Exception:  # pylint: disable=broad-except  # moto's NoSuchEntity: not there yet
            iam.create_role(role_name, _TRUST, "/", None, "patching role of an organization member", [], "3600")
        state.roles.register(role_arn, spec.get("external_id"))
    if summary is not None:
        summary["accounts"][account_id] = {"name": name, "parent_id": parent_id, "state": created.state, "role": bool(account.get("role", True))}
    return account_id
