"""FleetSession against a fake AWS at the HTTP layer: credential renewal on a fake clock, partitions, expired tokens.

The fake answers every request botocore sends (after signing), so the tests see what really goes out: which endpoint,
signed with which access key, and whether that key had expired on AWS's (fake) clock at that moment.
"""

import email.utils
import itertools
import urllib.parse

import botocore.httpsession
import pytest
from botocore.awsrequest import AWSResponse

from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy, ServerClock
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError, FleetSession, _handler_needed, refresh_windows

CALLER = "123456789012"
OTHER = "210987654321"
ROLE = "arn:aws:iam::%s:role/CmsPatchingRole" % OTHER
T0 = 1796126400  # 2026-12-01T12:00:00Z


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, *args, **kwargs):
        yield self._body


class FakeAWS:
    """Just enough of STS (query/XML) and EC2 to drive sessions; AWS's clock is self.now."""

    def __init__(self):
        self.now = T0
        self.expiry = {}  # access key -> epoch it expires at
        self.revoked = set()  # keys AWS treats as expired although their expiry is ahead (clock skew)
        self.caller_expired = False
        self.expiration_skew = 0  # an emulator whose Expiration follows another clock than its Date
        self.requests = []  # dicts: host, service, action, key, now, expired, params
        self._serial = itertools.count(1)

    def answer(self, request):
        url = urllib.parse.urlparse(request.url)
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        scope = headers["authorization"].split("Credential=")[1].split(",")[0].split("/")
        key, service = scope[0], scope[3]
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        params = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
        expired = key in self.revoked or (key in self.expiry and self.expiry[key] <= self.now) or (key.startswith("AKID") and self.caller_expired)
        self.requests.append(dict(host=url.hostname, service=service, action=params.get("Action"), key=key, now=self.now, expired=expired, params=params))
        if expired:
            return self._error(service, "ExpiredToken", "The security token included in the request is expired")
        return getattr(self, "_" + params["Action"])(params)

    def _reply(self, status, xml):
        headers = {"date": email.utils.formatdate(self.now, usegmt=True), "content-type": "text/xml"}
        return AWSResponse("https://fake", status, headers, _Raw(xml.encode()))

    def _error(self, service, code, message):
        if service == "ec2":
            return self._reply(
                400, "<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>r</RequestID></Response>" % (code, message)
            )
        return self._reply(
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>r</RequestId></ErrorResponse>" % (code, message),
        )

    def _AssumeRole(self, params):  # noqa: N802 - AWS's action name
        if int(params.get("DurationSeconds", 3600)) > 3600 and params["RoleArn"].endswith("/Chained"):
            return self._error("sts", "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
        key = "ASIA%012d" % next(self._serial)
        expires = self.now + int(params.get("DurationSeconds", 3600))
        self.expiry[key] = expires
        account = params["RoleArn"].split(":")[4]
        partition = params["RoleArn"].split(":")[1]
        return self._reply(
            200,
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
            "<SessionToken>token-%s</SessionToken><Expiration>%s</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROAX:s</AssumedRoleId>"
            "<Arn>arn:%s:sts::%s:assumed-role/R/s</Arn></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"
            % (key, "s" * 40, key, email.utils.formatdate(expires + self.expiration_skew, usegmt=True).replace("GMT", "+0000"), partition, account),
        )

    def _GetCallerIdentity(self, params):  # noqa: N802
        return self._reply(
            200,
            "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::%s:user/u</Arn><UserId>AIDA</UserId><Account>%s</Account>"
            "</GetCallerIdentityResult></GetCallerIdentityResponse>" % (CALLER, CALLER),
        )

    def _DescribeImages(self, params):  # noqa: N802
        return self._reply(
            200, '<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><imagesSet/></DescribeImagesResponse>'
        )

    def _CreateTags(self, params):  # noqa: N802
        return self._reply(
            200, '<CreateTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><return>true</return></CreateTagsResponse>'
        )

    def of(self, action=None, service=None):
        return [r for r in self.requests if (action is None or r["action"] == action) and (service is None or r["service"] == service)]


@pytest.fixture
def fake(monkeypatch):
    aws = FakeAWS()
    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", lambda self, request: aws.answer(request))
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_EC2", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    return aws


def session(fake, accounts, region="us-east-1"):
    connection = dict(region=region, aws_access_key_id="AKIDCALLER0000000000", aws_secret_access_key="caller-secret")
    fleet = FleetSession(connection, accounts, policy=RetryPolicy(max_attempts=3, sleep=lambda s: None))
    # AWS's clock as the fake keeps it: the Date of each answer plus the fake time since.
    fleet.server_clock = ServerClock(monotonic=lambda: float(fake.now))
    return fleet


def test_refresh_windows_scale_with_the_lifetime():
    assert refresh_windows(3600) == (900, 600)  # botocore's own windows for hour-long sessions
    assert refresh_windows(43200) == (900, 600)
    assert refresh_windows(900) == (225, 150)


def test_short_credentials_are_not_reassumed_on_every_call(fake):
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE, "duration_seconds": 900}])
    ec2 = fleet.client("ec2", OTHER, "eu-west-1")
    for _second in range(10):
        fake.now += 1
        ec2.describe_images()
    # With botocore's default 15-minute advisory window, 15-minute credentials would be renewed before every call.
    assert len(fake.of("AssumeRole")) == 1
    assert fake.of("AssumeRole")[0]["params"]["DurationSeconds"] == "900"


def test_credentials_renew_before_they_expire_and_no_call_goes_out_expired(fake):
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE, "duration_seconds": 900}])
    ec2 = fleet.client("ec2", OTHER, "eu-west-1")
    ec2.describe_images()
    fake.now += 690  # 210 s left: inside the advisory window (225 s), renewed without blocking
    ec2.describe_images()
    fake.now += 810  # the second session has 90 s left: inside the mandatory window (150 s)
    ec2.describe_images()
    fake.now += 3 * 3600  # hours later (a long backup): still renewed before use
    ec2.create_tags(Resources=["ami-12345678"], Tags=[{"Key": "k", "Value": "v"}])
    calls = fake.of(service="ec2")
    assert [c["expired"] for c in calls] == [False] * 4
    assert len({c["key"] for c in calls}) == 4 and len(fake.of("AssumeRole")) == 4
    assert fleet.assumed_roles() == {OTHER: 4}
    assert fleet.stats.as_dict()["calls"] == {"ec2:CreateTags": 1, "ec2:DescribeImages": 3, "sts:AssumeRole": 4}


@pytest.mark.parametrize("operation", ["describe_images", "create_tags"])
def test_expired_token_answer_renews_once_and_repeats_the_call(fake, operation):
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE}])
    ec2 = fleet.client("ec2", OTHER, "eu-west-1")
    first_key = fake.of("AssumeRole") and fake.expiry and next(iter(fake.expiry))
    fake.revoked.add(first_key)  # AWS says expired although our clock gives them 59 more minutes (skew)
    params = {"describe_images": {}, "create_tags": {"Resources": ["ami-12345678"], "Tags": [{"Key": "k", "Value": "v"}]}}[operation]
    getattr(ec2, operation)(**params)
    calls = fake.of(service="ec2")
    assert [(c["key"] == first_key, c["expired"]) for c in calls] == [(True, True), (False, False)]
    assert len(fake.of("AssumeRole")) == 2


def test_expired_again_right_after_renewal_fails_naming_the_clock(fake):
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE}])
    ec2 = fleet.client("ec2", OTHER, "eu-west-1")
    fake.expiry.clear()
    fake.revoked = type("All", (), {"__contains__": lambda self, key: key.startswith("ASIA"), "add": lambda self, key: None})()
    with pytest.raises(FleetError) as info:
        ec2.describe_images()
    assert "account %s" % OTHER in str(info.value) and "clock" in str(info.value) and "ExpiredToken" in str(info.value)
    assert len(fake.of(service="ec2")) == 2  # one renewal, one repeat, then stop


def test_expired_static_caller_credentials_ask_to_renew_them(fake):
    fleet = session(fake, [{"account_id": CALLER}])
    ec2 = fleet.client("ec2", CALLER, "eu-west-1")
    ec2.describe_images()
    fake.caller_expired = True
    with pytest.raises(FleetError) as info:
        ec2.describe_images()
    assert "caller's own AWS credentials were rejected as expired" in str(info.value) and "renew them" in str(info.value)
    assert len(fake.of("DescribeImages")) == 2


def test_expired_caller_credentials_while_assuming_a_role_ask_to_renew_them(fake):
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE}])
    fake.caller_expired = True
    with pytest.raises(FleetError) as info:
        fleet.client("ec2", OTHER, "eu-west-1")
    assert "renew them" in str(info.value)


def test_duration_over_the_chaining_limit_is_explained(fake):
    role = "arn:aws:iam::%s:role/Chained" % OTHER
    fleet = session(fake, [{"account_id": OTHER, "role_arn": role, "duration_seconds": 7200}])
    with pytest.raises(FleetError) as info:
        fleet.client("ec2", OTHER, "eu-west-1")
    message = str(info.value)
    assert "could not assume %s for account %s" % (role, OTHER) in message
    assert "duration_seconds 7200" in message and "at most 3600" in message and "role chaining" in message


@pytest.mark.parametrize(
    "partition,region,module_region,sts_host,ec2_host",
    [
        ("aws", "eu-west-1", None, "sts.us-east-1.amazonaws.com", "ec2.eu-west-1.amazonaws.com"),
        ("aws", "eu-west-1", "eu-central-1", "sts.eu-central-1.amazonaws.com", "ec2.eu-west-1.amazonaws.com"),
        ("aws-cn", "cn-north-1", None, "sts.cn-north-1.amazonaws.com.cn", "ec2.cn-north-1.amazonaws.com.cn"),
        ("aws-us-gov", "us-gov-west-1", "us-east-1", "sts.us-gov-west-1.amazonaws.com", "ec2.us-gov-west-1.amazonaws.com"),
        ("aws-eusc", "eusc-de-east-1", None, "sts.eusc-de-east-1.amazonaws.eu", "ec2.eusc-de-east-1.amazonaws.eu"),
        ("aws-iso-b", "us-isob-east-1", None, "sts.us-isob-east-1.sc2s.sgov.gov", "ec2.us-isob-east-1.sc2s.sgov.gov"),
    ],
)
def test_sts_is_called_at_the_regional_endpoint_of_the_accounts_partition(fake, partition, region, module_region, sts_host, ec2_host):
    role = "arn:%s:iam::%s:role/CmsPatchingRole" % (partition, OTHER)
    fleet = session(fake, [{"account_id": OTHER, "role_arn": role}], region=module_region)
    fleet.client("ec2", OTHER, region).describe_images()
    assert [r["host"] for r in fake.requests] == [sts_host, ec2_host]


def test_the_legacy_global_sts_endpoint_is_never_used(fake, monkeypatch):
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")
    fleet = session(fake, [{"account_id": CALLER}], region="eu-west-1")
    fleet.client("ec2", CALLER, "eu-west-1")
    assert [r["host"] for r in fake.of("GetCallerIdentity")] == ["sts.eu-west-1.amazonaws.com"]


def test_caller_identity_is_asked_in_the_accounts_partition(fake):
    fleet = session(fake, [{"account_id": CALLER}], region=None)
    fleet.client("ec2", CALLER, "cn-northwest-1")
    assert [r["host"] for r in fake.of("GetCallerIdentity")] == ["sts.cn-northwest-1.amazonaws.com.cn"]


def test_a_role_of_another_partition_than_the_regions_is_refused_before_any_call(fake):
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE}])
    with pytest.raises(FleetError) as info:
        fleet.client("ec2", OTHER, "cn-north-1")
    message = str(info.value)
    assert "account %s" % OTHER in message and ROLE in message and "cn-north-1" in message and "partition aws-cn" in message
    assert fake.requests == []


def test_an_account_cannot_be_used_in_two_partitions(fake):
    fleet = session(fake, [{"account_id": CALLER}])
    fleet.client("ec2", CALLER, "eu-west-1")
    with pytest.raises(FleetError) as info:
        fleet.client("ec2", CALLER, "us-gov-west-1")
    assert "account %s" % CALLER in str(info.value) and "eu-west-1, us-gov-west-1" in str(info.value)


def test_one_assume_role_per_account_across_its_regions_and_services(fake):
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE}])
    for region in ("us-east-1", "eu-west-1"):
        fleet.client("ec2", OTHER, region).describe_images()
        fleet.client("ssm", OTHER, region)
    assert len(fake.of("AssumeRole")) == 1


def test_an_expiration_on_another_clock_than_the_date_falls_back_to_the_duration(fake):
    # Expiration already past by the answer's own Date: trusting it would renew before every call (or make botocore
    # refuse "refreshed credentials are still expired"); the session takes the duration it asked for instead.
    fake.expiration_skew = -7200
    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE, "duration_seconds": 900}])
    ec2 = fleet.client("ec2", OTHER, "eu-west-1")
    for _call in range(5):
        fake.now += 60
        ec2.describe_images()
    assert len(fake.of("AssumeRole")) == 1
    fake.now += 600  # 900 s after the AssumeRole: renewed before the call
    ec2.describe_images()
    assert len(fake.of("AssumeRole")) == 2


def test_roles_of_many_accounts_are_assumed_through_one_sts_client(fake):
    accounts = [{"account_id": "2%011d" % i, "role_arn": "arn:aws:iam::2%011d:role/R" % i} for i in range(3)]
    fleet = session(fake, accounts)
    for account in accounts:
        fleet.client("ec2", account["account_id"], "eu-west-1")
    assert len(fake.of("AssumeRole")) == 3 and len(fleet._base_clients) == 1


def test_threads_that_all_meet_expired_credentials_renew_them_once(fake):
    import threading

    fleet = session(fake, [{"account_id": OTHER, "role_arn": ROLE}])
    ec2 = fleet.client("ec2", OTHER, "eu-west-1")
    first_key = next(iter(fake.expiry))
    fake.revoked.add(first_key)
    barrier = threading.Barrier(4, timeout=10)
    answer = fake.answer

    def answer_together(request):
        response = answer(request)
        if response.status_code == 400:
            barrier.wait()  # every thread has been refused before any of them renews
        return response

    fake.answer = answer_together
    errors = []

    def call():
        try:
            ec2.describe_images()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    threads = [threading.Thread(target=call) for _thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(fake.of("AssumeRole")) == 2  # the first one and a single renewal
    assert [c["expired"] for c in fake.of("DescribeImages")].count(True) == 4 and len(fake.of("DescribeImages")) == 8


def _accounts(count):
    return [{"account_id": "2%011d" % i, "role_arn": "arn:aws:iam::2%011d:role/R" % i} for i in range(count)]


def test_no_role_is_assumed_before_its_account_is_worked_on(fake):
    # An organization's landing zone may hold hundreds of accounts: only those a phase reaches are assumed.
    accounts = _accounts(50)
    fleet = session(fake, accounts)
    assert fake.of("AssumeRole") == []
    for account in accounts[:3]:
        for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
            fleet.client("ec2", account["account_id"], region)
            fleet.client("ssm", account["account_id"], region)
    assert sorted(r["params"]["RoleArn"] for r in fake.of("AssumeRole")) == sorted(a["role_arn"] for a in accounts[:3])
    assert fleet.locations_in_use() == {a["account_id"]: {"us-east-1", "eu-west-1", "ap-southeast-2"} for a in accounts[:3]}


def test_one_account_assuming_its_role_does_not_hold_up_the_others(fake):
    # The first account's AssumeRole is answered only once the second account's AssumeRole has gone out: with one lock
    # held across AssumeRole (the old way) the second thread waits behind the first and the first gives up.
    import threading

    accounts = _accounts(2)
    fleet = session(fake, accounts)
    first_sent, second_sent = threading.Event(), threading.Event()
    answer = fake.answer
    waited = []

    def answer_in_turn(request):
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        if "RoleArn=" in body:
            if "200000000001" in body:
                second_sent.set()
            else:
                first_sent.set()
                waited.append(second_sent.wait(timeout=10))
        return answer(request)

    fake.answer = answer_in_turn
    threads = [threading.Thread(target=fleet.client, args=("ec2", a["account_id"], "eu-west-1")) for a in accounts]
    threads[0].start()
    assert first_sent.wait(timeout=10)
    threads[1].start()
    for thread in threads:
        thread.join()
    assert waited == [True]
    assert len(fake.of("AssumeRole")) == 2


def test_accounts_share_the_botocore_models_but_sign_with_their_own_keys(fake):
    accounts = _accounts(3)
    fleet = session(fake, accounts)
    clients = [fleet.client("ec2", a["account_id"], region) for a in accounts for region in ("us-east-1", "eu-west-1")]
    raw = [c._client for c in clients]  # pylint: disable=protected-access
    # One client class and one loader for all (not a copy of the EC2 model per account), ...
    assert len({type(c) for c in raw}) == 1
    assert len({id(fleet._sessions[a["account_id"]][0]._session.get_component("data_loader")) for a in accounts}) == 1  # pylint: disable=protected-access
    assert len({id(fleet._sessions[a["account_id"]][0]._session) for a in accounts}) == 3  # pylint: disable=protected-access
    # ... but each account's calls are signed with the keys its own role gave.
    for client in clients:
        client.describe_images()
    keys = {r["params"]["RoleArn"].split(":")[4]: r for r in fake.of("AssumeRole")}
    assert len(keys) == 3
    used = [r["key"] for r in fake.of("DescribeImages")]
    assert len(set(used)) == 3 and all(used.count(k) == 2 for k in set(used))


def test_clients_made_at_once_by_the_pool_share_one_parsed_service_model(fake, monkeypatch):
    """The pool's threads make their accounts' first clients at the same moment. botocore's loader cache is not
    thread-safe and each client gets its own ServiceModel: each thread parsed the EC2 model file again (14 MiB) and kept
    it, and every client built a model of each EC2 operation for itself."""
    import threading

    import botocore.loaders

    from ansible_collections.cms.patching.plugins.module_utils import _session

    # A process that has made no client yet: a new loader, no shared model.
    monkeypatch.setitem(_session._SHARED, "loader", None)  # pylint: disable=protected-access
    monkeypatch.setitem(_session._SHARED, "models", {})  # pylint: disable=protected-access
    parsed = []
    read = botocore.loaders.JSONFileLoader.load_file

    def counting(loader, file_path):
        found = read(loader, file_path)
        if found is not None and file_path.endswith("service-2"):
            parsed.append(file_path.split("/")[-3])
        return found

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", counting)
    accounts = _accounts(6)
    fleet = session(fake, accounts)
    for account in accounts:  # the roles first, so the threads meet at client creation
        fleet.client("sts", account["account_id"], "eu-west-1")
    start = threading.Barrier(len(accounts) * 2)
    made = []

    def make(service, account_id):
        start.wait(timeout=10)
        made.append(fleet.client(service, account_id, "eu-west-1"))

    threads = [threading.Thread(target=make, args=(service, a["account_id"])) for a in accounts for service in ("ec2", "ssm")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    models = {}
    for client in made:
        models.setdefault(client._client.meta.service_model.service_name, set()).add(id(client._client.meta.service_model))  # pylint: disable=protected-access
    assert {name: len(ids) for name, ids in models.items()} == {"ec2": 1, "ssm": 1}
    assert sorted(parsed) == ["ec2", "ssm", "sts"]
    # The shared model still serves every account's calls.
    for client in made:
        if client._client.meta.service_model.service_name == "ec2":  # pylint: disable=protected-access
            client.describe_images()
    assert len({r["key"] for r in fake.of("DescribeImages")}) == len(accounts)


def test_the_shared_client_class_is_only_for_the_fleets_own_sessions(fake):
    import boto3

    fleet = session(fake, _accounts(1))
    ours = fleet.client("ec2", "200000000000", "eu-west-1")._client  # pylint: disable=protected-access
    other = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y").client("ec2", region_name="eu-west-1")
    assert type(other) is not type(ours)


def test_clients_carry_only_the_handlers_of_the_collections_services(fake):
    """Every client copies its session's handler tree; handlers of services the fleet never calls, and documentation
    handlers, are left out (half of an EC2 + SSM client pair's memory), those of its own services are kept."""
    from botocore import handlers

    fleet = session(fake, _accounts(1))
    client = fleet.client("ec2", "200000000000", "eu-west-1")._client  # pylint: disable=protected-access
    tree = client.meta.events._emitter._handlers  # pylint: disable=protected-access
    registered = {id(h) for event in ("before-call.ec2.CopySnapshot", "before-call.rds.CopyDBSnapshot") for h in tree.prefix_search(event)}
    assert id(handlers.inject_presigned_url_ec2) in registered  # ec2: kept
    assert id(handlers.inject_presigned_url_rds) not in registered  # rds: never called by this collection
    builtin = [spec[0] for spec in handlers.BUILTIN_HANDLERS]
    kept = [event for event in builtin if _handler_needed(event)]
    assert "before-parameter-build.ec2.RunInstances" in kept and "choose-signer" in kept and "before-call" in kept
    assert not any(event.startswith("docs.") or ".glacier." in event for event in kept)
    assert len(kept) < len(builtin) / 2
    # And the calls still work, signed, through the kept handlers.
    client.describe_images()
    assert fake.of("DescribeImages")


def test_every_account_reaches_an_endpoint_through_one_connection_pool(fake, monkeypatch):
    """botocore gives every client its own HTTP session: its own TLS context with the whole CA bundle loaded (about
    0.66 MiB with certifi's), its own idle connections and handshakes, per account x region x service.  The fleet's
    clients of one endpoint share one, whatever their account; each request is still signed with its account's keys."""
    sent = []
    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", lambda self, request: sent.append((self, request.url)) or fake.answer(request))
    accounts = _accounts(3)
    fleet = session(fake, accounts)
    for account in accounts:
        for region in ("us-east-1", "eu-west-1"):
            fleet.client("ec2", account["account_id"], region).describe_images()
            fleet.client("ssm", account["account_id"], region)
    by_host = {}
    for http, url in sent:
        by_host.setdefault(urllib.parse.urlparse(url).hostname, set()).add(id(http))
    assert sorted(by_host) == ["ec2.eu-west-1.amazonaws.com", "ec2.us-east-1.amazonaws.com", "sts.us-east-1.amazonaws.com"]
    assert all(len(sessions) == 1 for sessions in by_host.values()), by_host
    assert len({id(http) for http, _url in sent}) == 3
    # 3 accounts x 2 regions x (EC2, SSM) clients and the caller's STS client: one pool per endpoint (5 endpoints).
    assert len(fleet._http) == 5  # pylint: disable=protected-access
    used = [r["key"] for r in fake.of("DescribeImages")]
    assert len(set(used)) == 3 and all(used.count(k) == 2 for k in set(used))
    # A sibling session (the Organizations reader) has the same settings, so it uses the same pools.
    assert fleet.sibling([{"account_id": CALLER}])._http is fleet._http  # pylint: disable=protected-access


def test_the_shared_pool_keeps_a_connection_for_every_call_a_module_makes_at_once(fake):
    """One pool serves every account's clients of an endpoint: backup's default max_workers x max_concurrent_creates calls
    can be in flight there at once (a one-region landing zone), and each must find room to return its connection."""
    from ansible_collections.cms.patching.plugins.modules import ami_backup_verified

    spec = ami_backup_verified.argument_spec()
    at_once = spec["max_workers"]["default"] * spec["max_concurrent_creates"]["default"]
    fleet = session(fake, _accounts(2))
    clients = [fleet.client("ec2", a["account_id"], "eu-west-1")._client for a in _accounts(2)]  # pylint: disable=protected-access
    http = {id(c._endpoint.http_session) for c in clients}  # pylint: disable=protected-access
    assert len(http) == 1
    pool = clients[0]._endpoint.http_session._manager.connection_from_url("https://ec2.eu-west-1.amazonaws.com")  # pylint: disable=protected-access
    assert pool.pool.maxsize >= at_once
