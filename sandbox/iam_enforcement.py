"""IAM enforcement: the collection's shipped policies (``iam/*.json``) attached to the demo's principals, and moto's
access control switched on, so a call the policies do not allow answers as AWS would (AccessDenied naming the action).

With the setting ``iam_enforcement: 1`` every AWS request that is not the seeder's own is authenticated (SigV4 with
the secret of a known IAM access key or assumed-role session) and authorised by moto's policy evaluation
(``moto.iam.access_control.IAMRequest``). The principals are created in moto's IAM on the first enforced request,
and again after a reset:

* the caller: IAM user ``cms-patching`` in 123456789012 (the account the demo reaches with the caller's own
  credentials), access key ``CALLER_CREDENTIALS``, with ``caller-assume-role.json`` and the phase policies;
* every role a scenario registered (the demo's ``CmsPatchingRole`` in 210987654321), with the phase policies;
* ``CmsInventoryReadOnly`` in every such account, with ``inventory-read-only.json``.

Every principal carries the tag ``cms:patching:lz`` (the policies pin the landing zone with
``${aws:PrincipalTag/cms:patching:lz}``). By default all four phase policies are attached; ``attach(["backup"])``
attaches only some, and ``remove_actions`` takes actions out of them (how the tests prove that each action is needed).

What moto 5.2.5 evaluates (moto/iam/access_control.py, read, not assumed): the Action element (with wildcards) of the
principal's inline and attached policies, Allow and explicit Deny. For EC2 and SSM the resource it checks is always
"*", so a statement scoped to ``arn:aws:ec2:*::image/*`` would never match; its Condition elements are checked only
against the ExternalId of AssumeRole. The sandbox therefore attaches each policy as moto can evaluate it: the same
statements and actions, with ``Resource: "*"`` and without ``Condition`` for every statement that names a non-STS
action (STS statements keep their role ARNs: moto matches AssumeRole against the RoleArn asked for). The resource and
tag conditions are proved separately by ``tests/unit/test_iam_policies.py`` against what a sandbox run touched.

moto's own switch (``INITIAL_NO_AUTH_ACTION_COUNT``) is process-wide and counts every request, the seeder's too; the
sandbox gates the same check on its setting and the seeder's ``X-Cms-Sandbox-Internal`` header instead, so seeding and
other moto users in the process are never authenticated.

Errors are answered in each service's format, as AWS does: EC2 ``UnauthorizedOperation`` (403, "You are not
authorized to perform this operation. User: ... is not authorized to perform: ec2:CreateImage ..."), SSM
``AccessDeniedException`` (400), STS and Auto Scaling ``AccessDenied`` (403).
"""

from __future__ import annotations

import copy
import json
import pathlib
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, InvalidClientTokenIdError, SignatureDoesNotMatchError
from moto.iam.access_control import IAMRequest
from moto.iam.exceptions import NoSuchEntity, NotFoundException
from moto.iam.models import iam_backends
from werkzeug.exceptions import HTTPException

from sandbox import moto_hooks, runtime
from sandbox.middleware import INTERNAL_HEADER

POLICY_DIR = pathlib.Path(__file__).resolve().parents[1] / "iam"
PHASES = ("discovery", "backup", "patching", "retention", "rollback")
CALLER_ACCOUNT = "123456789012"
CALLER_USER = "cms-patching"
# Fixed, so a client (ansible-playbook in another process) can be pointed at the caller before the user exists.
CALLER_CREDENTIALS = {"aws_access_key_id": "AKIACMSPATCHINGDEMO1", "aws_secret_access_key": "cms-patching-sandbox-caller-secret-0000001"}
INVENTORY_ROLE = "CmsInventoryReadOnly"
LZ_TAG = "cms:patching:lz"
DEFAULT_LZ = "demo"
_PARTITION = "aws"
_MISSING = (NoSuchEntity, NotFoundException)


class _Provisioned:
    lock = threading.RLock()
    phases: tuple[str, ...] = PHASES
    removed: frozenset[str] = frozenset()
    lz: str = DEFAULT_LZ


def load_policy(name: str) -> dict[str, Any]:
    """A shipped policy document by file stem (``backup`` -> iam/backup.json)."""
    with open(POLICY_DIR / f"{name}.json", encoding="utf-8") as handle:
        return json.load(handle)


def as_moto_evaluates(policy: dict[str, Any], remove_actions: Iterable[str] = ()) -> dict[str, Any]:
    """The policy as moto can evaluate it (see the module docstring), minus ``remove_actions``; statements left without
    an action are dropped."""
    removed = {action.lower() for action in remove_actions}
    statements = []
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        actions = [action for action in actions if action.lower() not in removed]
        if not actions:
            continue
        projected = copy.deepcopy(statement)
        projected["Action"] = actions
        if not all(action.lower().startswith("sts:") for action in actions):
            projected["Resource"] = "*"
            projected.pop("Condition", None)
        statements.append(projected)
    return {"Version": policy["Version"], "Statement": statements}


def _policies(names: Iterable[str], remove_actions: Iterable[str]) -> dict[str, str]:
    documents = {}
    for name in names:
        projected = as_moto_evaluates(load_policy(name), remove_actions)
        if projected["Statement"]:
            documents[f"cms-patching-{name}"] = json.dumps(projected)
    return documents


def _iam(account: str) -> Any:
    return iam_backends[account][_PARTITION]


def _set_policies(put: Any, delete: Any, existing: Iterable[str], wanted: dict[str, str]) -> None:
    for name in list(existing):
        if name not in wanted:
            delete(name)
    for name, document in wanted.items():
        put(name, document)


def _ensure_caller(lz: str) -> None:
    iam = _iam(CALLER_ACCOUNT)
    try:
        iam.get_user(CALLER_USER)
        return
    except _MISSING:
        pass
    iam.create_user(region_name="us-east-1", user_name=CALLER_USER, tags=[{"Key": LZ_TAG, "Value": lz}])
    key = iam.create_access_key(CALLER_USER)
    # moto generates a random key id; the sandbox's caller has a known one (moto looks keys up by id in both places).
    del iam.access_keys[key.physical_resource_id]
    key.access_key_id = CALLER_CREDENTIALS["aws_access_key_id"]
    key.secret_access_key = CALLER_CREDENTIALS["aws_secret_access_key"]
    iam.access_keys[key.physical_resource_id] = key


def _trust_policy(external_id: str | None) -> str:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{CALLER_ACCOUNT}:user/{CALLER_USER}"},
        "Action": "sts:AssumeRole",
    }
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _ensure_role(account: str, name: str, external_id: str | None, lz: str) -> None:
    iam = _iam(account)
    try:
        iam.get_role(name)
    except _MISSING:
        iam.create_role(
            role_name=name,
            assume_role_policy_document=_trust_policy(external_id),
            path="/",
            permissions_boundary=None,
            description="cms.patching sandbox principal (iam_enforcement)",
            tags=[{"Key": LZ_TAG, "Value": lz}],
            max_session_duration="3600",
        )


def _landing_zone_roles() -> list[tuple[str, str, str | None]]:
    """(account, role name, external id) of every role the running sandbox's scenario registered."""
    roles = []
    for arn, entry in runtime.current().roles.describe().items():
        roles.append((arn.split(":")[4], arn.rsplit("/", 1)[1], entry.get("external_id")))
    return roles


def _apply() -> None:
    """Make moto's IAM hold exactly the principals and policies asked for (idempotent)."""
    phases, removed, lz = _Provisioned.phases, _Provisioned.removed, _Provisioned.lz
    phase_policies = _policies(phases, removed)
    iam = _iam(CALLER_ACCOUNT)
    _ensure_caller(lz)
    iam.tag_user(CALLER_USER, [{"Key": LZ_TAG, "Value": lz}])
    caller_policies = dict(phase_policies, **_policies(["caller-assume-role"], removed))
    _set_policies(
        lambda n, d: iam.put_user_policy(CALLER_USER, n, d),
        lambda n: iam.delete_user_policy(CALLER_USER, n),
        iam.list_user_policies(CALLER_USER),
        caller_policies,
    )
    for account, name, external_id in _landing_zone_roles():
        role_iam = _iam(account)
        for role in (name, INVENTORY_ROLE):
            _ensure_role(account, role, external_id if role == name else None, lz)
            role_iam.tag_role(role, [{"Key": LZ_TAG, "Value": lz}])
        _set_policies(
            lambda n, d, r=name, b=role_iam: b.put_role_policy(r, n, d),
            lambda n, r=name, b=role_iam: b.delete_role_policy(r, n),
            role_iam.list_role_policies(name),
            phase_policies,
        )
        _set_policies(
            lambda n, d, b=role_iam: b.put_role_policy(INVENTORY_ROLE, n, d),
            lambda n, b=role_iam: b.delete_role_policy(INVENTORY_ROLE, n),
            role_iam.list_role_policies(INVENTORY_ROLE),
            _policies(["inventory-read-only"], removed),
        )


def _provisioned() -> bool:
    """True when the caller and every registered role exist (a reset wipes moto's IAM)."""
    try:
        _iam(CALLER_ACCOUNT).get_user(CALLER_USER)
        for account, name, _external_id in _landing_zone_roles():
            _iam(account).get_role(name)
    except _MISSING:
        return False
    return True


def ensure() -> None:
    """Create the principals if they are missing; after a reset they come back with every phase policy."""
    with _Provisioned.lock:
        if _provisioned():
            return
        if not _iam(CALLER_ACCOUNT).users:
            # Nothing left of an earlier attach(): moto was reset, so the default (all phases) applies again.
            _Provisioned.phases, _Provisioned.removed, _Provisioned.lz = PHASES, frozenset(), DEFAULT_LZ
        _apply()


def attach(phases: Iterable[str] = PHASES, remove_actions: Iterable[str] = (), lz: str = DEFAULT_LZ) -> None:
    """Attach only these phase policies (file stems under iam/), without ``remove_actions``, to the caller and the
    landing zone's roles; lasts until the next reset. Does not switch enforcement on (the setting does)."""
    phases = tuple(phases)
    unknown = [name for name in phases if not (POLICY_DIR / f"{name}.json").is_file()]
    if unknown:
        raise ValueError(f"no policy file iam/<name>.json for: {', '.join(unknown)}")
    with _Provisioned.lock:
        _Provisioned.phases, _Provisioned.removed, _Provisioned.lz = phases, frozenset(remove_actions), lz
        _apply()


class _JsonError(HTTPException):
    """An error of a JSON-protocol service (SSM): moto words its IAM errors in XML, which botocore cannot parse there."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__()
        self.code = 400
        self.description = json.dumps({"__type": code, "message": message})


# What SSM answers for a key it does not know and for a bad signature (moto: InvalidClientTokenId / SignatureDoesNotMatch).
_JSON_AUTH_ERRORS = {
    InvalidClientTokenIdError: ("UnrecognizedClientException", "The security token included in the request is invalid."),
    SignatureDoesNotMatchError: (
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
    ),
}


class _Denied(HTTPException):
    """AWS's answer to an unauthorised call, in the service's own error format."""

    def __init__(self, service: str, principal_arn: str, action: str, resource: str) -> None:
        super().__init__()
        request_id = str(uuid.uuid4())
        on_resource = f" on resource: {resource}" if resource != "*" else ""
        because = f"User: {principal_arn} is not authorized to perform: {action}{on_resource} because no identity-based policy allows the {action} action"
        if service == "ec2":
            self.code = 403
            self.description = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code>'
                f"<Message>You are not authorized to perform this operation. {because}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>"
            )
        elif service == "ssm":
            self.code = 400
            self.description = json.dumps({"__type": "AccessDeniedException", "message": because})
        else:
            self.code = 403
            self.description = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{because}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            )


def _setting_on() -> bool:
    try:
        return bool(runtime.current().settings.iam_enforcement)
    except RuntimeError:  # no sandbox serving in this process
        return False


def authorize(self: Any, resource: str = "*") -> None:
    """Replaces moto's ``_authenticate_and_authorize_normal_action``: with the setting on, the body of its
    ``_authenticate_and_authorize_action`` (IAMRequest: signature, then the policies) for every request but the
    seeder's; with it off, moto's own (which honours ``INITIAL_NO_AUTH_ACTION_COUNT`` as before)."""
    if not _setting_on():
        moto_hooks.original(ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action")(self, resource)
        return
    if self.headers.get(INTERNAL_HEADER):
        return
    ensure()
    path = self.raw_path + ("?" + self.uri.split("?", 1)[1] if "?" in self.uri else "")
    try:
        request = IAMRequest(
            account_id=self.current_account,
            method=self.method,
            path=path,
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=self._get_action(),  # pylint: disable=protected-access
        )
        request.check_signature()
    except (InvalidClientTokenIdError, SignatureDoesNotMatchError) as error:  # the keys of _JSON_AUTH_ERRORS
        if self.headers.get("X-Amz-Target"):
            raise _JsonError(*_JSON_AUTH_ERRORS[type(error)]) from None
        raise
    try:
        request.check_action_permitted(resource)
    except AccessDeniedError:
        # pylint: disable-next=protected-access
        raise _Denied(request._service, request._access_key.arn, request._action, resource) from None


def install() -> None:
    moto_hooks.replace(ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action", authorize)
