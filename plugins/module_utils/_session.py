# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one place that creates AWS sessions and assumes roles.

A landing zone spans several accounts.  Each account is reached either with
the caller's own credentials (no ``role_arn``; the caller must *be* that
account, which is checked once with GetCallerIdentity so a wrong profile
cannot scan or patch the wrong account under the right name) or by
``sts:AssumeRole`` with an optional external ID.  Credentials are kept in
memory only; they are never returned or logged.

Assumed-role credentials renew themselves for any run length: they are
botocore refreshable credentials whose refresh calls AssumeRole again
(through the retry policy).  botocore renews them in its advisory window
(trying, without blocking other threads) and at the latest in its mandatory
window (blocking every call until new credentials are in), so no call is
signed with credentials that expired.  botocore's windows (15 / 10 minutes
before expiry) are meant for hour-long sessions: with 15-minute credentials
they would re-assume on every call, so they are scaled to the lifetime (a
quarter / a sixth of it, at most 15 / 10 minutes).  Expiry is judged on AWS's
clock (the ``Date`` of its answers, see ``ServerClock``), not on the
controller's.  Should AWS still answer ``ExpiredToken`` (clock skew), the
call is repeated once after a forced renewal (see ``RetryingClient``).
AssumeRole: https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
(DurationSeconds 900 to the role's maximum of up to 43,200; role chaining
limits it to 3,600).

Every module call is a process of its own, so the run's processes share their
STS answers through a file cache (``_credential_cache``, like the AWS CLI's
``~/.aws/cli/cache``): a role assumed by one process is reused by the next
while it has enough time left (``REUSE_MARGIN``), and so is the caller's
account from GetCallerIdentity.  Reused credentials are refreshable like new
ones; if AWS refuses them (``ExpiredToken``, ``RequestExpired``, or
``InvalidClientTokenId`` / ``AuthFailure`` / ``UnrecognizedClientException``
for a session revoked since) the entry is dropped and the role assumed again,
once, and the call repeated.

STS is called in the partition of the account's regions, at the Regional
endpoint of the module's region when it is in that partition, else of the
first region the account is used in (never the global endpoint: an aws-cn,
aws-us-gov, aws-iso* or aws-eusc account cannot be reached through
us-east-1).  Partitions come from botocore's own data, and a role ARN whose
partition is not that of the regions is refused before any call.
Regional STS endpoints: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_region-endpoints.html

Clients are created lazily, when a location is first worked on, and cached
per (service, account, region), wrapped so every call is retried, counted and
checked for a cancel.  An account's role is assumed when its first client is
asked for, under that account's own lock (boto3 sessions are not thread-safe,
clients are), so the workers of a bounded pool (``_fanout.fan_out``) reach their
accounts side by side and an account that never gets work is never assumed.

Hundreds of accounts in one module process (an organization's landing zone)
must not cost hundreds of copies of the same data: every session shares one
botocore data loader (without it each account's session parses the EC2 and SSM
models again, about 27 MiB and 0.7 s of CPU per account), and every client of a
service shares one client class (botocore otherwise builds a method and a
docstring per operation for each client, about 1.3 MiB and 30 ms per EC2
client) and one service model (botocore otherwise makes one per client, and
for AWS's own endpoints builds a model object for every operation in each; the
pool's threads making their first clients at once also each parsed the model
file again and kept the copy).  Measured with botocore 1.44
(benchmarks/bench_sessions.py): a module process with EC2 and SSM clients in
200 accounts x 3 regions peaks at about 185 MiB after 4 s (458 MiB and 7 s with
a service model per client), where one loader and client class per account made
60 accounts x 3 regions take 2.1 GiB and 96 s.  Each client still copies its
session's tree of event handlers, so the sessions register only the built-in
handlers of the services this collection calls (FLEET_SERVICES): an EC2 and
SSM client pair then takes about 126 KiB instead of 265 (tracemalloc).

Every client of one endpoint (``https://ec2.eu-west-1.amazonaws.com``: one per
service and region, whatever the account) shares one HTTP session, so one pool
of connections per endpoint, not per account.  botocore gives each client its
own: its own TLS context, which loads the whole CA bundle (about 0.66 MiB with
certifi's) on its first connection, its own idle connections and its own TLS
handshakes.  With 200 accounts x 3 regions x 2 services that was 1,200 CA
stores in one module process; a request is signed with its account's
credentials before it is sent, so a connection does not belong to an account.
"""

import datetime
import email.utils
import threading
import time
import weakref

from ansible_collections.cms.patching.plugins.module_utils import _validate as v
from ansible_collections.cms.patching.plugins.module_utils._credential_cache import CredentialCache
from ansible_collections.cms.patching.plugins.module_utils._errors import FleetError
from ansible_collections.cms.patching.plugins.module_utils._pace import Pacer
from ansible_collections.cms.patching.plugins.module_utils._retry import CallStats, RetryingClient, RetryPolicy, ServerClock, clock_note, error_code

try:
    import boto3
    import botocore.client
    import botocore.config
    import botocore.handlers
    import botocore.loaders
    import botocore.session
    from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
except ImportError:
    HAS_BOTO3 = False
    RefreshableCredentials = CredentialProvider = object


DEFAULT_SESSION_NAME = "cms-patching"
DEFAULT_DURATION = 3600
MIN_DURATION = 900
MAX_DURATION = 43200
CHAINED_MAX_DURATION = 3600
# botocore's own refresh windows, used as they are for sessions of an hour or more.
ADVISORY_WINDOW = 15 * 60
MANDATORY_WINDOW = 10 * 60
# Cached credentials are reused by a new module process only while they have botocore's advisory window plus this left
# (on AWS's clock, as the entry estimates it): the process can then work at least 5 minutes - longer than most module calls
# and progress returns - before botocore renews them itself, so a reuse is never just an AssumeRole put off by a few calls.
# With an hour's credentials an entry is reused for 40 minutes, with 15-minute ones for about 6.  The estimate of AWS's
# time is off only by how much the controller's clock drifted since the entry was written (seconds), and an entry that AWS
# nevertheless refuses is dropped and the role assumed again (``on_expired`` / ``on_invalid``).
REUSE_MARGIN = 5 * 60

# Connections each endpoint's pool keeps for reuse.  The pool is shared by every account's clients of the endpoint (see
# _SharedConnections), so it is sized for the most calls a module makes there at once - backup's max_workers locations x
# max_concurrent_creates (8 x 10 by default) when every location is in one region - not botocore's 10 per client.  A
# call beyond it still gets a connection, which is closed after use instead of kept (a new TLS handshake next time).
POOL_CONNECTIONS = 128

__all__ = ["FleetError", "FleetSession", "describe_aws_error", "is_error", "refresh_windows", "reuse_threshold"]

# Shared by every botocore session this module makes (see the module docstring): one data loader, one client class per
# service and API version.  Only sessions made here use the shared classes (their event emitters are listed), so a
# session of other code that adds its own 'creating-client-class' handlers still gets classes of its own.
_SHARED_LOCK = threading.Lock()
# Held while a service's model is parsed (a fraction of a second for EC2), so other services' clients wait too: only at start.
_MODEL_LOCK = threading.Lock()
# The emitters are held weakly: a session that is gone must not be kept alive (nor the list grow) in a long-lived process.
_SHARED = {"loader": None, "classes": {}, "models": {}, "emitters": weakref.WeakSet(), "installed": False}


def _shared_loader():
    with _SHARED_LOCK:
        if _SHARED["loader"] is None:
            _SHARED["loader"] = botocore.loaders.create_loader()
        return _SHARED["loader"]


def _boto3_session(core, **kwargs):
    """A boto3 session on a botocore session made by _botocore_session (shared loader, shared client classes)."""
    session = boto3.session.Session(botocore_session=core, **kwargs)
    loader = core.get_component("data_loader")
    with _SHARED_LOCK:
        # boto3 appends its own data directory to the loader's search paths on every Session: once is enough.
        paths = loader.search_paths
        paths[:] = list(dict.fromkeys(paths))
    return session


def _install_shared_client_classes():
    """Make botocore's ClientCreator reuse one client class and one service model per (service, API version) for this
    module's sessions."""
    with _SHARED_LOCK:
        if _SHARED["installed"]:
            return
        original = botocore.client.ClientCreator._create_client_class  # pylint: disable=protected-access
        original_model = botocore.client.ClientCreator._load_service_model  # pylint: disable=protected-access

        def create_client_class(creator, service_name, service_model):
            emitter = getattr(creator, "_event_emitter", None)
            if emitter is None or emitter not in _SHARED["emitters"]:
                return original(creator, service_name, service_model)
            key = (service_name, service_model.api_version)
            cls = _SHARED["classes"].get(key)
            if cls is None:
                cls = _SHARED["classes"].setdefault(key, original(creator, service_name, service_model))
            return cls

        def load_service_model(creator, service_name, api_version=None):
            # botocore makes a ServiceModel per client, and each one builds a model object for every operation of its
            # service on first use (about 0.3 MiB per EC2 client). Worse, the loader's cache is not thread-safe: the
            # first clients of a service made by the pool's threads at once each parsed the model file again (about
            # 14 MiB for EC2) and kept their copy. Made once, under the lock, and shared: the model is read-only.
            emitter = getattr(creator, "_event_emitter", None)
            if emitter is None or emitter not in _SHARED["emitters"]:
                return original_model(creator, service_name, api_version)
            key = (service_name, api_version)
            with _MODEL_LOCK:
                model = _SHARED["models"].get(key)
                if model is None:
                    model = _SHARED["models"][key] = original_model(creator, service_name, api_version)
            return model

        botocore.client.ClientCreator._create_client_class = create_client_class  # pylint: disable=protected-access
        botocore.client.ClientCreator._load_service_model = load_service_model  # pylint: disable=protected-access
        _SHARED["installed"] = True


# The services this collection makes clients of (module_utils and modules).  botocore registers its built-in event
# handlers for every service on each session, and every client copies the session's whole handler tree (about 70 % of
# a client's memory: some 190 KiB of an EC2 and SSM client pair's 265).  With hundreds of account sessions and a client
# per account and region, handlers for other services, and documentation handlers (only run when docs are generated),
# are copied hundreds of times for nothing.  A handler of one of these services, or of every service, is kept.
FLEET_SERVICES = frozenset(("ec2", "ssm", "sts", "s3", "organizations", "autoscaling"))


def _handler_needed(event_name):
    parts = event_name.split(".")
    if parts[0] == "docs":
        return False
    return len(parts) < 2 or parts[1] == "*" or parts[1] in FLEET_SERVICES


if HAS_BOTO3:

    class _FleetCoreSession(botocore.session.Session):
        """A botocore session with only the built-in handlers this collection's clients can fire (see FLEET_SERVICES)."""

        def _register_builtin_handlers(self, events):
            # botocore's own loop (Session._register_builtin_handlers), over the needed handlers only: sessions are made
            # by several threads at once, so the module-level list is read, never swapped.
            for spec in botocore.handlers.BUILTIN_HANDLERS:
                if not _handler_needed(spec[0]):
                    continue
                if len(spec) == 2:
                    self.register(*spec)
                elif spec[2] is botocore.handlers.REGISTER_FIRST:
                    events.register_first(spec[0], spec[1])
                elif spec[2] is botocore.handlers.REGISTER_LAST:
                    events.register_last(spec[0], spec[1])


class _SharedConnections:
    """One botocore HTTP session per endpoint for every client of a FleetSession (see the module docstring).

    The first client of an endpoint lends its own HTTP session (made by botocore with this FleetSession's settings and
    the proxies of that endpoint's URL) to the later ones.  botocore's HTTP session is used by many threads at once
    already (urllib3's pools are thread-safe); each pool keeps up to ``max_pool_connections`` idle connections.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._by_endpoint = {}

    def share(self, client):
        # botocore has no public way to hand a client an HTTP session: it lives on the client's endpoint.
        endpoint = client._endpoint  # pylint: disable=protected-access
        with self._lock:
            shared = self._by_endpoint.setdefault(endpoint.host, endpoint.http_session)
        if shared is not endpoint.http_session:
            own, endpoint.http_session = endpoint.http_session, shared
            own.close()  # it has never connected: this only drops its empty pool manager
        return client

    def __len__(self):
        with self._lock:
            return len(self._by_endpoint)


def _register_emitter(core):
    emitter = core.get_component("event_emitter")
    with _SHARED_LOCK:
        _SHARED["emitters"].add(emitter)


def describe_aws_error(exc):
    """'Code: message' for a botocore error, without request IDs or credentials."""
    if isinstance(exc, FleetError):
        return str(exc)
    if HAS_BOTO3 and isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return "%s: %s" % (err.get("Code", "Unknown"), err.get("Message", str(exc)))
    return "%s: %s" % (type(exc).__name__, exc)


def refresh_windows(lifetime):
    """(advisory, mandatory) seconds before expiry: botocore's 15/10 minutes, scaled down for short sessions."""
    lifetime = max(0.0, float(lifetime))
    return min(ADVISORY_WINDOW, lifetime / 4.0), min(MANDATORY_WINDOW, lifetime / 6.0)


def reuse_threshold(lifetime):
    """Seconds cached credentials of this lifetime must still have for a new process to reuse them (see REUSE_MARGIN)."""
    return refresh_windows(lifetime)[0] + REUSE_MARGIN


class _RoleCredentials(RefreshableCredentials):
    """botocore's refreshable credentials, plus a renewal on demand (AWS said they expired) and per-lifetime windows."""

    def set_windows(self, lifetime):
        self._advisory_refresh_timeout, self._mandatory_refresh_timeout = refresh_windows(lifetime)

    def force_refresh(self, unless, before=None):
        """Renew now, under botocore's refresh lock, unless unless() says another thread already did (before() first, if given)."""
        with self._refresh_lock:
            if not unless():
                if before is not None:
                    before()
                self._protected_refresh(is_mandatory=True)


class _FixedProvider(CredentialProvider):
    """Hands one credentials object to a botocore session (the public way to give it refreshable credentials)."""

    METHOD = "cms-patching-assume-role"
    CANONICAL_NAME = "cms-patching-assume-role"

    def __init__(self, credentials):
        super().__init__()
        self._credentials = credentials

    def load(self):
        return self._credentials


class _AssumedRole:
    """One account's role: assumes it (or takes it from the credential cache), renews it, answers the retry layer's 'credentials expired'."""

    def __init__(self, account, session_name, sts, server_clock, sts_region, cache=None, source_key=None):
        self.account = account
        self.sts = sts
        self.sts_region = sts_region
        self.server_clock = server_clock
        self.duration = int(account.get("duration_seconds") or DEFAULT_DURATION)
        self.request = dict(RoleArn=account["role_arn"], RoleSessionName=account.get("session_name") or session_name, DurationSeconds=self.duration)
        if account.get("external_id"):
            self.request["ExternalId"] = account["external_id"]
        self.renewed_at = None  # monotonic time of the latest AssumeRole answer
        self.assumed = 0
        self._lock = threading.Lock()
        # The credential cache, when there is one and the source credentials are known (their access key is part of the key).
        self.cache = cache if source_key else None
        self.cache_key = CredentialCache.role_key(self.request, source_key, getattr(sts.meta, "endpoint_url", "")) if self.cache else None
        self.cached = None  # the cache entry in use while the credentials are the cached ones (None once renewed here)
        self.access_key = None  # the access key in use (the one a cache entry must still hold to be dropped)
        first = self._from_cache() or self.fetch()
        self.credentials = _RoleCredentials(
            access_key=first["access_key"],
            secret_key=first["secret_key"],
            token=first["token"],
            expiry_time=first["expiry"],
            refresh_using=self.fetch,
            method=_FixedProvider.METHOD,
            time_fetcher=self.aws_now,
        )
        self.credentials.set_windows(first["lifetime"])

    def aws_now(self):
        """AWS's current time as botocore compares it with the expiry.

        Before any answer of this process: the cache entry's estimate when the credentials came from the cache, else
        the controller's clock.
        """
        now = self.server_clock.now()
        if now is None and self.cached is not None:
            now = self.cache.aws_now(self.cached)
        return datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.timezone.utc)

    def _from_cache(self):
        """Credentials another process of the run assumed, if they have enough time left (see REUSE_MARGIN); else None."""
        if self.cache is None:
            return None
        entry = self.cache.load_role(self.cache_key, self.account["account_id"], reuse_threshold, aws_now=self.server_clock.now())
        if entry is None:
            return None
        self.cached = entry
        self.access_key = entry["access_key"]
        expiry = datetime.datetime.fromtimestamp(entry["expiration"], datetime.timezone.utc)
        return dict(
            access_key=entry["access_key"],
            secret_key=entry["secret_key"],
            token=entry["token"],
            expiry_time=expiry.isoformat(),
            expiry=expiry,
            lifetime=entry["lifetime"],
        )

    def _forget(self):
        """Drop the cache entry if it still holds the credentials AWS just refused (another process may have renewed it)."""
        if self.cache is not None and self.access_key is not None:
            self.cache.drop(self.cache_key, access_key=self.access_key)

    def fetch(self):
        """AssumeRole once more; botocore's refresh metadata (plus the expiry as a datetime and the lifetime)."""
        account = self.account
        try:
            response = self.sts.assume_role(**self.request)
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(
                "could not assume %s for account %s (sts in %s): %s; %s"
                % (account["role_arn"], account["account_id"], self.sts_region, describe_aws_error(exc), self._hint(exc))
            ) from None
        assumed_arn = response.get("AssumedRoleUser", {}).get("Arn", "")
        if ":%s:" % account["account_id"] not in assumed_arn:
            raise FleetError("assuming %s returned a session for %s, not for account %s" % (account["role_arn"], assumed_arn, account["account_id"]))
        creds = response["Credentials"]
        lifetime = self._lifetime(response)
        # The expiry on the clock botocore compares it with (aws_now): AWS's, whatever the controller's clock says.
        answered = self.aws_now()
        expiry = answered + datetime.timedelta(seconds=lifetime)
        self.renewed_at = time.monotonic()
        self.assumed += 1
        self.cached = None
        self.access_key = creds["AccessKeyId"]
        if getattr(self, "credentials", None) is not None:
            self.credentials.set_windows(lifetime)
        if self.cache is not None:
            self.cache.store_role(
                self.cache_key,
                account["account_id"],
                dict(access_key=creds["AccessKeyId"], secret_key=creds["SecretAccessKey"], token=creds["SessionToken"]),
                expiry.timestamp(),
                lifetime,
                answered.timestamp(),
            )
        return dict(
            access_key=creds["AccessKeyId"],
            secret_key=creds["SecretAccessKey"],
            token=creds["SessionToken"],
            expiry_time=expiry.isoformat(),
            expiry=expiry,
            lifetime=lifetime,
        )

    def _lifetime(self, response):
        """Seconds the new credentials are valid: Expiration minus the Date of the same answer (both AWS's clock).

        Without a Date (or with one that contradicts the expiry, as an emulator may), the duration asked for.
        """
        expiration = response["Credentials"]["Expiration"]
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=datetime.timezone.utc)
        date = ((response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get("date")
        try:
            answered = email.utils.parsedate_to_datetime(date) if date else self.aws_now()
        except (TypeError, ValueError, IndexError):
            answered = self.aws_now()
        lifetime = (expiration - answered).total_seconds()
        return lifetime if 0 < lifetime <= self.duration + 60 else float(self.duration)

    def _hint(self, exc):
        code = error_code(exc)
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return clock_note(exc)[2:] or "the caller's own credentials (used to assume the role) have expired: renew them and run again"
        if code == "ValidationError" and "DurationSeconds" in describe_aws_error(exc):
            return (
                "duration_seconds %d is more than the role allows: it must be at most the role's MaxSessionDuration, and at most %d when "
                "the caller's credentials are themselves a role session (role chaining)" % (self.duration, CHAINED_MAX_DURATION)
            )
        return "check that the role's trust policy allows the caller%s" % (" and the external ID" if self.account.get("external_id") else "")

    def on_expired(self, exc, started, again):
        """AWS rejected a call as signed with expired credentials: renew them once (the call is then repeated once)."""
        if again:
            raise FleetError(
                "account %s: AWS rejected the credentials of %s as expired (%s) even right after renewing them%s"
                % (
                    self.account["account_id"],
                    self.account["role_arn"],
                    describe_aws_error(exc),
                    clock_note(exc) or "; check that the controller's clock is right (AWS refuses requests signed 15 minutes off its time)",
                )
            )
        with self._lock:
            # A renewal after the failed call began already gave newer credentials: just repeat the call.  Otherwise the
            # cache entry of the refused credentials goes first, so no other process takes them even if AssumeRole fails.
            self.credentials.force_refresh(lambda: self._renewed_since(started), before=self._forget)

    def on_invalid(self, exc, started):
        """AWS does not know the access key: renew once if the credentials came from the cache (a session revoked, an emulator
        restarted since the entry was written); credentials assumed by this process are not renewed (False: AWS's answer stands,
        e.g. a region that is not enabled)."""
        with self._lock:
            if self._renewed_since(started):
                return True
            if self.cached is None:
                return False
            self.credentials.force_refresh(lambda: self._renewed_since(started), before=self._forget)
            return True

    def _renewed_since(self, started):
        return self.renewed_at is not None and self.renewed_at > started


def _caller_expired(exc, _started, _again):
    note = clock_note(exc)
    if note:
        raise FleetError("AWS refused the request as expired (%s)%s" % (describe_aws_error(exc), note))
    raise FleetError(
        "the caller's own AWS credentials were rejected as expired (%s): renew them (a new session token, 'aws sso login', "
        "a fresh AWX credential) and run again; if they are fresh, check the controller's clock" % describe_aws_error(exc)
    )


class FleetSession:
    """Sessions and retrying clients for every account of a landing zone.

    ``accounts`` is a list of dicts with ``account_id`` and optionally
    ``role_arn``, ``external_id``, ``session_name`` and ``duration_seconds``.
    ``credential_cache``: a ``CredentialCache`` shared with the run's other
    module processes; by default the one the environment names
    (``CMS_PATCHING_CREDENTIAL_CACHE``, see ``_credential_cache``), None for none.
    """

    def __init__(self, connection, accounts, session_name=DEFAULT_SESSION_NAME, policy=None, stats=None, pacer=None, credential_cache="environment"):
        self._connection = dict(connection)
        self.credential_cache = CredentialCache.from_environment() if credential_cache == "environment" else credential_cache
        self._source_key = None  # the caller's access key ID (part of every cache key), once known
        self._accounts = {str(a["account_id"]): a for a in accounts}
        self._session_name = session_name or DEFAULT_SESSION_NAME
        self.policy = policy or RetryPolicy()
        self.stats = stats or CallStats()
        # One set of token buckets per account/region/action for every client of the run (see _pace.py).
        self.pacer = pacer or Pacer(sleep=self.policy.sleep)
        # AWS's clock, from the Date of every answer: compare AWS timestamps with this, never with time.time().
        self.server_clock = ServerClock()
        self._lock = threading.Lock()  # guards the dicts below; never held during an AWS call
        self._account_locks = {}  # account -> lock held while its session and clients are made
        self._sessions = {}  # account -> (boto3 session, on_expired, partition, on_invalid)
        self._regions = {}  # account -> regions asked for, in order (for messages)
        self._roles = {}  # account -> _AssumedRole
        self._clients = {}
        self._base_clients = {}
        self._base = None
        self._caller_accounts = {}  # partition -> the caller's account there
        self.warnings = []  # one line each, shown in the module result (run_fleet_module): something degraded, not failed
        self._warning_keys = {}  # warn(key=...) -> its index in warnings
        self._refusals = {}  # (action, account, region) -> the AccessDenied error, for reads that have a fallback
        self._caller_lock = threading.Lock()  # one GetCallerIdentity per partition
        self._base_client_lock = threading.Lock()  # taken after self._lock, never before it
        self._http = _SharedConnections()  # endpoint -> the HTTP session (connection pool) of all its clients
        if HAS_BOTO3:
            _install_shared_client_classes()

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

    def warn(self, message, key=None):
        """Add a warning to the module result, once however many threads or rounds meet it; a later warning with the
        same ``key`` replaces the earlier one (one line that grows, e.g. with every location where something happened)."""
        with self._lock:
            if key is not None and key in self._warning_keys:
                self.warnings[self._warning_keys[key]] = message
            elif message not in self.warnings:
                if key is not None:
                    self._warning_keys[key] = len(self.warnings)
                self.warnings.append(message)

    def refuse(self, action, account_id, region, error):
        """Remember that AWS refused ``action`` in this location, so a caller with a fallback asks only once per run.
        Returns every location (``account/region``) where ``action`` was refused so far."""
        with self._lock:
            self._refusals[(action, str(account_id), region)] = error
            return sorted("%s/%s" % (account, where) for (refused, account, where) in self._refusals if refused == action)

    def refused(self, action, account_id, region):
        """The refusal remembered for ``action`` in this location, or None."""
        with self._lock:
            return self._refusals.get((action, str(account_id), region))

    def account(self, account_id):
        try:
            return self._accounts[str(account_id)]
        except KeyError:
            raise FleetError(
                "account %s is not in the accounts given to this module (known: %s)" % (account_id, ", ".join(sorted(self._accounts)) or "none")
            ) from None

    def client(self, service, account_id, region):
        """A retrying, counted client for service in account_id/region, made (and the account's role assumed) on first use."""
        account_id = str(account_id)
        key = (service, account_id, region)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
            account_lock = self._account_locks.setdefault(account_id, threading.Lock())
        # Only this account waits while its role is assumed (an STS round trip) and its client is built: the other
        # workers of the pool get on with their own accounts.
        with account_lock:
            with self._lock:
                client = self._clients.get(key)
            if client is None:
                session, on_expired, on_invalid = self._session_for(account_id, region)
                client = RetryingClient(
                    self._raw_client(session, service, region),
                    self.policy,
                    self.stats,
                    self.server_clock,
                    on_expired=on_expired,
                    pacer=self.pacer,
                    scope=(account_id, region),
                    on_invalid=on_invalid,
                )
                with self._lock:
                    self._clients[key] = client
        return client

    def locations_in_use(self):
        """{account: regions it has clients in}: what this process really reached (lazily), for tests and benchmarks."""
        with self._lock:
            found = {}
            for _service, account_id, region in self._clients:
                found.setdefault(account_id, set()).add(region)
            return found

    def add_accounts(self, accounts):
        """Accounts learnt after the session was made (e.g. from AWS Organizations); an account already known keeps its settings."""
        with self._lock:
            for account in accounts:
                self._accounts.setdefault(str(account["account_id"]), account)

    def caller_client(self, service, region):
        """A retrying, counted client with the caller's own credentials (no account check: e.g. Organizations in the management account)."""
        with self._lock:
            return self._base_client(service, region)

    def sibling(self, accounts):
        """Another FleetSession for other accounts on the same connection, retry policy, call counters and AWS clock.

        For a role that must not be confused with a landing-zone account's (the Organizations reader may be an account of the zone too).
        """
        other = FleetSession(
            self._connection, accounts, session_name=self._session_name, policy=self.policy, stats=self.stats, credential_cache=self.credential_cache
        )
        other.server_clock = self.server_clock
        other._http = self._http  # the same connection settings, so the same pools  # pylint: disable=protected-access
        return other

    def assumed_roles(self):
        """{account: number of AssumeRole answers so far} (the first one and every renewal)."""
        with self._lock:
            return {account: role.assumed for account, role in self._roles.items()}

    def sts_region(self, region):
        """Where STS is called for an account used in region: the module's region if it is in the same partition, else region itself."""
        partition = v.partition_of(region)
        if partition is None or v.partition_of(self.default_region) == partition:
            return self.default_region
        return region

    def _raw_client(self, session, service, region):
        if session is self._base:
            # The caller's session also makes STS clients (under self._lock): one client at a time from it.
            with self._base_client_lock:
                return self._make_raw_client(session, service, region)
        return self._make_raw_client(session, service, region)

    def _make_raw_client(self, session, service, region):
        config = botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=POOL_CONNECTIONS,
            user_agent_extra="cms.patching",
        )
        if self._connection.get("config") is not None:
            config = config.merge(self._connection["config"])
        client = session.client(
            service,
            region_name=region,
            endpoint_url=self._connection.get("endpoint_url") or None,
            verify=self._connection.get("verify"),
            config=config,
        )
        return self._http.share(client)

    @staticmethod
    def _botocore_session():
        core = _FleetCoreSession()
        # Regional STS endpoints even where a user's environment still asks for the legacy global one.
        core.set_config_variable("sts_regional_endpoints", "regional")
        core.register_component("data_loader", _shared_loader())
        _register_emitter(core)
        return core

    def _base_session(self):
        if self._base is None:
            conn = self._connection
            try:
                self._base = _boto3_session(
                    self._botocore_session(),
                    profile_name=conn.get("profile_name") or None,
                    aws_access_key_id=conn.get("aws_access_key_id") or None,
                    aws_secret_access_key=conn.get("aws_secret_access_key") or None,
                    aws_session_token=conn.get("aws_session_token") or None,
                )
            except BotoCoreError as exc:
                raise FleetError("could not create an AWS session from the given credentials/profile: %s" % describe_aws_error(exc)) from None
        return self._base

    def _base_client(self, service, region):
        """A client with the caller's own credentials (STS: AssumeRole, GetCallerIdentity), one per region; called under the lock."""
        key = (service, region)
        client = self._base_clients.get(key)
        if client is None:
            raw = self._raw_client(self._base_session(), service, region)
            client = RetryingClient(raw, self.policy, self.stats, self.server_clock, on_expired=_caller_expired, pacer=self.pacer, scope=("caller", region))
            self._base_clients[key] = client
        return client

    def _source_access_key(self):
        """The access key ID of the caller's credentials, for the cache keys; None without a cache or without credentials.

        Resolved as the first call would resolve it (botocore's chain: parameters, environment, profile, ...); a failure
        here is left to that call to report.
        """
        if self.credential_cache is None:
            return None
        with self._lock:
            base = self._base_session()
        with self._base_client_lock:  # the caller's session is used by one thread at a time
            if self._source_key is None:
                try:
                    credentials = base.get_credentials()
                    self._source_key = credentials.get_frozen_credentials().access_key if credentials is not None else None
                except (BotoCoreError, ClientError, AttributeError):
                    self._source_key = None
            return self._source_key

    def _session_for(self, account_id, region):
        account = self.account(account_id)
        asked = self._regions.setdefault(account_id, [])
        if region not in asked:
            asked.append(region)
        partition = v.partition_of(region)
        known = self._sessions.get(account_id)
        if known is not None:
            if partition is not None and known[2] is not None and partition != known[2]:
                raise FleetError(
                    "account %s (%s) is used in regions of two partitions (%s): an account lives in one partition; "
                    "list only that partition's regions for it" % (account_id, account.get("role_arn") or "caller's credentials", ", ".join(asked))
                )
            return known[0], known[1], known[3]
        if account.get("role_arn"):
            error = v.partition_error(account["role_arn"], asked, account_id)
            if error:
                raise FleetError(error)
            sts_region = self.sts_region(region)
            with self._lock:
                sts = self._base_client("sts", sts_region)
            role = _AssumedRole(
                account, self._session_name, sts, self.server_clock, sts_region, cache=self.credential_cache, source_key=self._source_access_key()
            )
            core = self._botocore_session()
            core.register_component("credential_provider", CredentialResolver(providers=[_FixedProvider(role.credentials)]))
            entry = (_boto3_session(core), role.on_expired, partition, role.on_invalid)
            with self._lock:
                self._roles[account_id] = role
        else:
            self._check_caller_is(account_id, region)
            with self._lock:
                entry = (self._base_session(), _caller_expired, partition, None)
        with self._lock:
            self._sessions[account_id] = entry
        return entry[0], entry[1], entry[3]

    def _check_caller_is(self, account_id, region):
        partition = v.partition_of(region)
        with self._caller_lock:
            if partition not in self._caller_accounts:
                sts_region = self.sts_region(region)
                with self._lock:
                    sts = self._base_client("sts", sts_region)
                # The account of an access key never changes, so another process's answer for the same key (and the same STS
                # endpoint: a sandbox is not AWS) is as good as a new one; see _credential_cache for the bound on its age.
                source_key = self._source_access_key()
                cache_key = CredentialCache.caller_key(source_key, partition, sts.meta.endpoint_url) if source_key else None
                cached = self.credential_cache.load_caller(cache_key) if cache_key else None
                if cached is not None:
                    self._caller_accounts[partition] = cached
                else:
                    try:
                        self._caller_accounts[partition] = sts.get_caller_identity()["Account"]
                    except (ClientError, BotoCoreError) as exc:
                        raise FleetError(
                            "could not identify the caller's AWS account (sts:GetCallerIdentity in %s, partition %s): %s; check the credentials "
                            "(they must belong to the partition of the account's regions)" % (sts_region, partition or "unknown", describe_aws_error(exc))
                        ) from None
                    if cache_key:
                        self.credential_cache.store_caller(cache_key, self._caller_accounts[partition])
            caller = self._caller_accounts[partition]
        if caller != account_id:
            raise FleetError(
                "account %s has no role_arn, so the caller's own credentials are used, but they belong to account %s; "
                "give the account a role_arn or run with credentials of account %s" % (account_id, caller, account_id)
            )


def is_error(exc, *codes):
    """True when exc is an AWS ClientError with one of the given codes."""
    return error_code(exc) in codes
