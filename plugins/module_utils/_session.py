# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one place that creates AWS sessions and assumes roles.

A landing zone spans several accounts.  Each account is reached either with
the caller's own credentials (no ``role_arn``; the caller must *be* that
account, which is checked once with GetCallerIdentity so a wrong profile
cannot scan or patch the wrong account under the right name) or by
``sts:AssumeRole`` with an optional external ID.  Credentials are assumed once
per module run and cached in memory; they are never returned or logged.

Clients are created under a lock (boto3 sessions are not thread-safe, clients
are) and cached per (service, account, region), wrapped so every call is
retried and counted.
"""

import threading

from ansible_collections.cms.patching.plugins.module_utils._retry import CallStats, RetryingClient, RetryPolicy, ServerClock, error_code

try:
    import boto3
    import botocore.config
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
except ImportError:
    HAS_BOTO3 = False


DEFAULT_SESSION_NAME = "cms-patching"


class FleetError(Exception):
    """An error a user can act on; its message is shown as the module's msg."""


def describe_aws_error(exc):
    """'Code: message' for a botocore error, without request IDs or credentials."""
    if isinstance(exc, FleetError):
        return str(exc)
    if HAS_BOTO3 and isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return "%s: %s" % (err.get("Code", "Unknown"), err.get("Message", str(exc)))
    return "%s: %s" % (type(exc).__name__, exc)


class FleetSession:
    """Sessions and retrying clients for every account of a landing zone.

    ``accounts`` is a list of dicts with ``account_id`` and optionally
    ``role_arn``, ``external_id`` and ``session_name``.
    """

    def __init__(self, connection, accounts, session_name=DEFAULT_SESSION_NAME, policy=None, stats=None):
        self._connection = dict(connection)
        self._accounts = {str(a["account_id"]): a for a in accounts}
        self._session_name = session_name or DEFAULT_SESSION_NAME
        self.policy = policy or RetryPolicy()
        self.stats = stats or CallStats()
        # AWS's clock, from the Date of every answer: compare AWS timestamps with this, never with time.time().
        self.server_clock = ServerClock()
        self._lock = threading.Lock()
        self._sessions = {}
        self._clients = {}
        self._base = None
        self._caller_account = None

    @classmethod
    def from_module(cls, module, accounts, session_name=None, policy=None):
        """Build from an AnsibleAWSModule's standard connection options."""
        # Imported here so module_utils stay importable without amazon.aws's boto3 checks.
        from ansible_collections.amazon.aws.plugins.module_utils.botocore import get_aws_connection_info

        region, endpoint_url, params = get_aws_connection_info(module)
        connection = dict(
            region=region,
            endpoint_url=endpoint_url,
            profile_name=params.get("profile_name"),
            aws_access_key_id=params.get("aws_access_key_id"),
            aws_secret_access_key=params.get("aws_secret_access_key"),
            aws_session_token=params.get("aws_session_token"),
            verify=params.get("verify"),
            config=params.get("aws_config"),
        )
        return cls(connection, accounts, session_name=session_name, policy=policy)

    @property
    def default_region(self):
        return self._connection.get("region") or "us-east-1"

    def account(self, account_id):
        try:
            return self._accounts[str(account_id)]
        except KeyError:
            raise FleetError(
                "account %s is not in the accounts given to this module (known: %s)" % (account_id, ", ".join(sorted(self._accounts)) or "none")
            ) from None

    def client(self, service, account_id, region):
        """A retrying, counted client for service in account_id/region."""
        key = (service, str(account_id), region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                session = self._session_for(str(account_id))
                client = RetryingClient(self._raw_client(session, service, region), self.policy, self.stats, self.server_clock)
                self._clients[key] = client
            return client

    def _raw_client(self, session, service, region):
        config = botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=50,
            user_agent_extra="cms.patching",
        )
        if self._connection.get("config") is not None:
            config = config.merge(self._connection["config"])
        return session.client(
            service,
            region_name=region,
            endpoint_url=self._connection.get("endpoint_url") or None,
            verify=self._connection.get("verify"),
            config=config,
        )

    def _base_session(self):
        if self._base is None:
            conn = self._connection
            try:
                self._base = boto3.session.Session(
                    profile_name=conn.get("profile_name") or None,
                    aws_access_key_id=conn.get("aws_access_key_id") or None,
                    aws_secret_access_key=conn.get("aws_secret_access_key") or None,
                    aws_session_token=conn.get("aws_session_token") or None,
                )
            except BotoCoreError as exc:
                raise FleetError("could not create an AWS session from the given credentials/profile: %s" % describe_aws_error(exc)) from None
        return self._base

    def _base_client(self, service):
        return RetryingClient(self._raw_client(self._base_session(), service, self.default_region), self.policy, self.stats, self.server_clock)

    def _session_for(self, account_id):
        session = self._sessions.get(account_id)
        if session is not None:
            return session
        account = self.account(account_id)
        if account.get("role_arn"):
            session = self._assume(account)
        else:
            self._check_caller_is(account_id)
            session = self._base_session()
        self._sessions[account_id] = session
        return session

    def _check_caller_is(self, account_id):
        if self._caller_account is None:
            try:
                self._caller_account = self._base_client("sts").get_caller_identity()["Account"]
            except (ClientError, BotoCoreError) as exc:
                raise FleetError(
                    "could not identify the caller's AWS account (sts:GetCallerIdentity): %s; check the credentials" % describe_aws_error(exc)
                ) from None
        if self._caller_account != account_id:
            raise FleetError(
                "account %s has no role_arn, so the caller's own credentials are used, but they belong to account %s; "
                "give the account a role_arn or run with credentials of account %s" % (account_id, self._caller_account, account_id)
            )

    def _assume(self, account):
        request = dict(
            RoleArn=account["role_arn"],
            RoleSessionName=account.get("session_name") or self._session_name,
            DurationSeconds=int(account.get("duration_seconds") or 3600),
        )
        if account.get("external_id"):
            request["ExternalId"] = account["external_id"]
        try:
            response = self._base_client("sts").assume_role(**request)
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(
                "could not assume %s for account %s: %s; check that the role's trust policy allows the caller%s"
                % (account["role_arn"], account["account_id"], describe_aws_error(exc), " and the external ID" if account.get("external_id") else "")
            ) from None
        assumed_arn = response.get("AssumedRoleUser", {}).get("Arn", "")
        if ":%s:" % account["account_id"] not in assumed_arn:
            raise FleetError("assuming %s returned a session for %s, not for account %s" % (account["role_arn"], assumed_arn, account["account_id"]))
        creds = response["Credentials"]
        return boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )


def is_error(exc, *codes):
    """True when exc is an AWS ClientError with one of the given codes."""
    return error_code(exc) in codes
