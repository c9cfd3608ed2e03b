"""The STS credential cache shared by a run's module processes (plugins/module_utils/_credential_cache.py).

Each "process" is a fresh FleetSession on the same cache directory, as two module calls of one run are.  Most tests use
the HTTP-level fake AWS of test_session.py (its clock is ``fake.now``, and so is the cache's wall clock here, so expiry
can be walked through without sleeping); the first and the expired-credentials ones count calls in the sandbox's log.
"""

import json
import os
import stat
import urllib.parse

import pytest
from botocore.exceptions import ClientError
from demo_fleet import DEMO_ACCOUNTS, DEMO_REGIONS, OTHER_ACCOUNT, OWN_ACCOUNT
from test_session import CALLER, OTHER, ROLE, fake  # noqa: F401  pylint: disable=unused-import

from ansible_collections.cms.patching.plugins.module_utils import _credential_cache
from ansible_collections.cms.patching.plugins.module_utils._credential_cache import CALLER_TTL, CredentialCache
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy, ServerClock
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError, FleetSession, reuse_threshold

CALLER_KEY, CALLER_SECRET = "AKIDCALLER0000000000", "caller-secret-never-stored"
ROLE_ACCOUNT = [{"account_id": OTHER, "role_arn": ROLE}]


def cache_for(fake, path):
    # The cache's wall clock is the fake AWS's clock: time passes for both at once, as it does for a real controller and AWS.
    return CredentialCache(str(path), wall=lambda: float(fake.now))


def process(fake, cache, accounts=None, key=CALLER_KEY, secret=CALLER_SECRET, endpoint=None):
    """One module process: a fresh FleetSession on the shared cache."""
    connection = dict(region="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret, endpoint_url=endpoint)
    fleet = FleetSession(connection, accounts or ROLE_ACCOUNT, policy=RetryPolicy(max_attempts=3, sleep=lambda s: None), credential_cache=cache)
    fleet.server_clock = ServerClock(monotonic=lambda: float(fake.now))
    return fleet


def entries(path):
    return sorted(p for p in os.listdir(path) if p.endswith(".json"))


def only_entry(path):
    (name,) = entries(path)
    with open(os.path.join(path, name), encoding="utf-8") as handle:
        return name, json.load(handle)


# Against the sandbox: calls counted in its log --------------------------------------------------------------------------------


def sandbox_process(aws, order=(OWN_ACCOUNT, OTHER_ACCOUNT)):
    connection = dict(region="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    fleet = FleetSession(connection, DEMO_ACCOUNTS, policy=RetryPolicy(base_delay=0.01, max_delay=0.02, sleep=lambda s: None))
    for account in order:
        for region in DEMO_REGIONS:
            fleet.client("ec2", account, region).describe_instances(MaxResults=5)
    return fleet


def sts_calls(aws):
    calls = [c for c in aws.state.calls.log() if c["operation"].startswith("sts:")]
    return {op: sum(1 for c in calls if c["operation"] == op) for op in ("sts:AssumeRole", "sts:GetCallerIdentity")}


@pytest.mark.parametrize("setting,expected", [(None, 1), ("off", 2)])
def test_two_processes_assume_each_role_and_identify_the_caller_once(demo, aws, monkeypatch, setting, expected):
    if setting:
        monkeypatch.setenv(_credential_cache.ENV, setting)
    sandbox_process(aws)
    sandbox_process(aws)
    # Cache on (each test has its own directory, tests/conftest.py): the second process makes no STS call; off: the old way.
    assert sts_calls(aws) == {"sts:AssumeRole": expected, "sts:GetCallerIdentity": expected}


@pytest.mark.parametrize("role_account_first", [True, False])
def test_credentials_the_sandbox_says_expired_are_assumed_again_once(demo, aws, role_account_first):
    aws.state.update_settings(credentials_expire=True)
    sandbox_process(aws)
    # Two hours later on AWS's clock (the sandbox's), a few seconds on the controller's: the entry looks fresh to the next
    # process.  Reaching the role's account first, it learns otherwise from AWS's answer (one call refused, then assumed
    # again and repeated); after an answer from the caller's account it knows AWS's time and assumes before the first call.
    aws.state.clock.advance(7200)
    sandbox_process(aws, order=(OTHER_ACCOUNT, OWN_ACCOUNT) if role_account_first else (OWN_ACCOUNT, OTHER_ACCOUNT))
    log = aws.state.calls.log()
    refused = [(c["account"], c["operation"]) for c in log if c["injected"] == "expired_credentials"]
    assert refused == ([(OTHER_ACCOUNT, "ec2:DescribeInstances")] if role_account_first else [])
    assert sts_calls(aws) == {"sts:AssumeRole": 2, "sts:GetCallerIdentity": 1}
    # The refused call was repeated with the new credentials, and every later call went through.
    assert [c["status"] for c in log if c["operation"] == "ec2:DescribeInstances"].count(200) == 8
    assert len([c for c in log if c["operation"] == "ec2:DescribeInstances"]) == 8 + len(refused)


def test_credentials_cached_before_a_sandbox_reset_are_assumed_again(demo, aws):
    # The sandbox forgets the keys it issued when it is reset (as a restarted one does): they are refused as unknown, not taken
    # for moto's default account, and the process assumes the role again once.
    sandbox_process(aws, order=(OTHER_ACCOUNT, OWN_ACCOUNT))
    aws.reset()
    aws.seed("demo")
    aws.state.calls.reset()
    sandbox_process(aws, order=(OTHER_ACCOUNT, OWN_ACCOUNT))
    log = aws.state.calls.log()
    assert [(c["operation"], c["status"]) for c in log if c["injected"] == "unknown_credentials"] == [("ec2:DescribeInstances", 401)]
    assert sts_calls(aws) == {"sts:AssumeRole": 1, "sts:GetCallerIdentity": 0}
    answered = [c["account"] for c in log if c["operation"] == "ec2:DescribeInstances" and c["status"] == 200]
    assert sorted(answered) == [OWN_ACCOUNT] * 2 + [OTHER_ACCOUNT] * 2


# Against the fake AWS ------------------------------------------------------------------------------------------------------------


def test_second_process_reuses_the_first_ones_credentials(fake, tmp_path):
    cache = cache_for(fake, tmp_path / "sts")
    first = process(fake, cache)
    first.client("ec2", OTHER, "eu-west-1").describe_images()
    fake.now += 60
    second = process(fake, cache)
    second.client("ec2", OTHER, "eu-west-1").describe_images()
    assert len(fake.of("AssumeRole")) == 1
    assert second.assumed_roles() == {OTHER: 0}
    keys = [r["key"] for r in fake.of("DescribeImages")]
    assert keys[0] == keys[1] and keys[0].startswith("ASIA")


def test_entries_are_private_and_hold_no_source_secret(fake, tmp_path):
    directory = tmp_path / "sts"
    cache = cache_for(fake, directory)
    fleet = process(fake, cache, accounts=[{"account_id": CALLER}] + ROLE_ACCOUNT)
    fleet.client("ec2", CALLER, "eu-west-1")
    fleet.client("ec2", OTHER, "eu-west-1")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    names = os.listdir(directory)
    assert len(names) == 2  # the role's credentials and the caller's account, no temporary file left
    for name in names:
        assert len(name) == len("0" * 64 + ".json") and all(c in "0123456789abcdef" for c in name[:64])
        assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o600
        text = (directory / name).read_text()
        # Neither the source key nor its secret, in the file or its name (the key is hashed into the name).
        assert CALLER_SECRET not in text and CALLER_KEY not in text and CALLER_KEY not in name
    kinds = {json.loads((directory / n).read_text())["kind"] for n in names}
    assert kinds == {"assume-role", "caller"}


def test_a_directory_open_to_others_is_closed(fake, tmp_path):
    directory = tmp_path / "sts"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    process(fake, cache_for(fake, directory)).client("ec2", OTHER, "eu-west-1")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700 and len(entries(directory)) == 1


@pytest.mark.parametrize("used,reused", [(300, True), (400, False)])
def test_credentials_near_their_end_are_not_handed_on(fake, tmp_path, used, reused):
    # 15-minute credentials: botocore's advisory window scaled to 225 s, plus the 5-minute margin: reused while 525 s are left.
    assert reuse_threshold(900) == 525
    cache = cache_for(fake, tmp_path / "sts")
    accounts = [dict(ROLE_ACCOUNT[0], duration_seconds=900)]
    process(fake, cache, accounts).client("ec2", OTHER, "eu-west-1").describe_images()
    fake.now += used
    process(fake, cache, accounts).client("ec2", OTHER, "eu-west-1").describe_images()
    assert len(fake.of("AssumeRole")) == (1 if reused else 2)
    assert all(not r["expired"] for r in fake.requests)


def test_cached_credentials_still_renew_before_they_expire(fake, tmp_path):
    cache = cache_for(fake, tmp_path / "sts")
    process(fake, cache).client("ec2", OTHER, "eu-west-1").describe_images()
    fake.now += 1800
    second = process(fake, cache)
    ec2 = second.client("ec2", OTHER, "eu-west-1")
    ec2.describe_images()
    assert len(fake.of("AssumeRole")) == 1  # reused: 30 minutes left
    fake.now += 1500  # 5 minutes left: inside botocore's mandatory window, renewed before the call goes out
    ec2.describe_images()
    fake.now += 3 * 3600  # and so on for any run length
    ec2.describe_images()
    assert [r["expired"] for r in fake.of(service="ec2")] == [False] * 4
    assert len(fake.of("AssumeRole")) == 3 and second.assumed_roles() == {OTHER: 2}
    # The renewal went into the cache: the next process takes the newest credentials.
    process(fake, cache).client("ec2", OTHER, "eu-west-1").describe_images()
    assert len(fake.of("AssumeRole")) == 3
    assert fake.of("DescribeImages")[-1]["key"] == fake.of("DescribeImages")[-2]["key"]


@pytest.mark.parametrize("content", ["{not json", "", '{"format": 1, "kind": "assume-role", "expiration": "soon"}', "[1, 2]", "\udcff"])
def test_a_corrupt_entry_is_a_miss_and_is_replaced(fake, tmp_path, content):
    directory = tmp_path / "sts"
    cache = cache_for(fake, directory)
    process(fake, cache).client("ec2", OTHER, "eu-west-1")
    (name,) = entries(directory)
    (directory / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    process(fake, cache).client("ec2", OTHER, "eu-west-1").describe_images()
    assert len(fake.of("AssumeRole")) == 2
    replaced_name, replaced = only_entry(directory)
    assert replaced_name == name and replaced["access_key"] == fake.of("DescribeImages")[0]["key"]


def test_expired_token_with_cached_credentials_assumes_again_once(fake, tmp_path):
    directory = tmp_path / "sts"
    cache = cache_for(fake, directory)
    process(fake, cache).client("ec2", OTHER, "eu-west-1")
    first_key = fake.of("AssumeRole") and next(iter(fake.expiry))
    fake.revoked.add(first_key)  # AWS says expired although the entry gives them 59 more minutes (skew, revoked session)
    second = process(fake, cache)
    second.client("ec2", OTHER, "eu-west-1").create_tags(Resources=["ami-12345678"], Tags=[{"Key": "k", "Value": "v"}])
    calls = fake.of(service="ec2")
    assert [(c["key"] == first_key, c["expired"]) for c in calls] == [(True, True), (False, False)]
    assert len(fake.of("AssumeRole")) == 2 and second.assumed_roles() == {OTHER: 1}
    assert only_entry(directory)[1]["access_key"] == calls[1]["key"]


def test_expired_again_after_reassuming_fails_as_before(fake, tmp_path):
    cache = cache_for(fake, tmp_path / "sts")
    process(fake, cache).client("ec2", OTHER, "eu-west-1")
    fake.revoked = type("All", (), {"__contains__": lambda self, key: key.startswith("ASIA"), "add": lambda self, key: None})()
    with pytest.raises(FleetError) as info:
        process(fake, cache).client("ec2", OTHER, "eu-west-1").describe_images()
    assert "even right after renewing them" in str(info.value)
    assert len(fake.of(service="ec2")) == 2 and len(fake.of("AssumeRole")) == 2


@pytest.fixture
def unknown_keys(fake):
    """Access keys AWS does not know: STS InvalidClientTokenId, EC2 AuthFailure (each service's "Common Errors")."""
    unknown = set()
    answer = fake.answer

    def answer_unknown(request):
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        scope = headers["authorization"].split("Credential=")[1].split(",")[0].split("/")
        if scope[0] not in unknown:
            return answer(request)
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        action = dict(urllib.parse.parse_qsl(body)).get("Action")
        fake.requests.append(dict(host="", service=scope[3], action=action, key=scope[0], now=fake.now, expired="unknown", params={}))
        if scope[3] == "ec2":
            return fake._error("ec2", "AuthFailure", "AWS was not able to validate the provided access credentials")  # pylint: disable=protected-access
        return fake._error("sts", "InvalidClientTokenId", "The security token included in the request is invalid.")  # pylint: disable=protected-access

    fake.answer = answer_unknown
    return unknown


def test_an_unknown_cached_key_is_dropped_and_assumed_again_once(fake, tmp_path, unknown_keys):
    directory = tmp_path / "sts"
    cache = cache_for(fake, directory)
    process(fake, cache).client("ec2", OTHER, "eu-west-1")
    unknown_keys.add(next(iter(fake.expiry)))  # the session was revoked (or the emulator restarted) since the entry was written
    process(fake, cache).client("ec2", OTHER, "eu-west-1").describe_images()
    assert [c["expired"] for c in fake.of("DescribeImages")] == ["unknown", False]
    assert len(fake.of("AssumeRole")) == 2
    assert only_entry(directory)[1]["access_key"] not in unknown_keys


def test_an_unknown_key_this_process_assumed_is_not_renewed(fake, tmp_path, unknown_keys):
    # AuthFailure for credentials fresh from AssumeRole (e.g. a region that is not enabled) is AWS's answer, not a stale cache.
    fleet = process(fake, None)
    ec2 = fleet.client("ec2", OTHER, "eu-west-1")
    unknown_keys.add(next(iter(fake.expiry)))
    with pytest.raises(ClientError) as info:
        ec2.describe_images()
    assert info.value.response["Error"]["Code"] == "AuthFailure"
    assert len(fake.of("AssumeRole")) == 1 and len(fake.of("DescribeImages")) == 1


def test_no_cache_is_the_old_behaviour(fake, tmp_path, monkeypatch):
    directory = tmp_path / "sts"
    monkeypatch.setenv(_credential_cache.ENV, "off")
    for _process in range(2):
        fleet = process(fake, "environment", accounts=[{"account_id": CALLER}] + ROLE_ACCOUNT)
        assert fleet.credential_cache is None
        fleet.client("ec2", CALLER, "eu-west-1")
        fleet.client("ec2", OTHER, "eu-west-1")
    assert len(fake.of("AssumeRole")) == 2 and len(fake.of("GetCallerIdentity")) == 2
    assert not directory.exists()


def test_the_environment_names_the_directory(monkeypatch, tmp_path):
    monkeypatch.setenv(_credential_cache.ENV, str(tmp_path / "x"))
    assert CredentialCache.from_environment().directory == str(tmp_path / "x")
    monkeypatch.delenv(_credential_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert CredentialCache.from_environment().directory == str(tmp_path / "xdg" / "cms-patching" / "sts")
    monkeypatch.setenv(_credential_cache.ENV, "OFF")
    assert CredentialCache.from_environment() is None


def test_other_source_credentials_never_share_an_entry(fake, tmp_path):
    directory = tmp_path / "sts"
    cache = cache_for(fake, directory)
    accounts = [{"account_id": CALLER}] + ROLE_ACCOUNT
    for key in ("AKIDCALLER0000000000", "AKIDSOMEONEELSE00000", "AKIDCALLER0000000000"):
        fleet = process(fake, cache, accounts=accounts, key=key, secret="secret-of-" + key)
        fleet.client("ec2", OTHER, "eu-west-1")
        fleet.client("ec2", CALLER, "eu-west-1")
    # The second caller assumes and identifies itself anew; the third (the first again) reuses the first one's entries.
    assert [r["key"] for r in fake.of("AssumeRole")] == ["AKIDCALLER0000000000", "AKIDSOMEONEELSE00000"]
    assert [r["key"] for r in fake.of("GetCallerIdentity")] == ["AKIDCALLER0000000000", "AKIDSOMEONEELSE00000"]
    assert len(entries(directory)) == 4


def test_another_endpoint_or_role_request_is_another_entry(fake, tmp_path):
    cache = cache_for(fake, tmp_path / "sts")
    process(fake, cache).client("ec2", OTHER, "eu-west-1")
    process(fake, cache, endpoint="https://sandbox.example:4566").client("ec2", OTHER, "eu-west-1")  # a sandbox is not AWS
    process(fake, cache, accounts=[dict(ROLE_ACCOUNT[0], external_id="other-id")]).client("ec2", OTHER, "eu-west-1")
    process(fake, cache, accounts=[dict(ROLE_ACCOUNT[0], duration_seconds=900)]).client("ec2", OTHER, "eu-west-1")
    process(fake, cache, accounts=[dict(ROLE_ACCOUNT[0], session_name="other")]).client("ec2", OTHER, "eu-west-1")
    assert len(fake.of("AssumeRole")) == 5


def test_the_callers_account_is_reused_for_an_hour(fake, tmp_path):
    cache = cache_for(fake, tmp_path / "sts")
    for step in (0, CALLER_TTL - 60, 120):
        fake.now += step
        process(fake, cache, accounts=[{"account_id": CALLER}]).client("ec2", CALLER, "eu-west-1")
    # Asked by the first process, reused 59 minutes later, asked again once the hour since the first answer has passed.
    assert len(fake.of("GetCallerIdentity")) == 2


def test_a_cached_caller_account_is_still_checked_against_the_account(fake, tmp_path):
    cache = cache_for(fake, tmp_path / "sts")
    process(fake, cache, accounts=[{"account_id": CALLER}]).client("ec2", CALLER, "eu-west-1")
    with pytest.raises(FleetError) as info:
        process(fake, cache, accounts=[{"account_id": "111111111111"}]).client("ec2", "111111111111", "eu-west-1")
    assert "belong to account %s" % CALLER in str(info.value)
    assert len(fake.of("GetCallerIdentity")) == 1


def test_a_clock_stepped_back_makes_entries_misses(fake, tmp_path):
    cache = cache_for(fake, tmp_path / "sts")
    process(fake, cache).client("ec2", OTHER, "eu-west-1")
    fake.now -= 600
    process(fake, cache).client("ec2", OTHER, "eu-west-1")
    assert len(fake.of("AssumeRole")) == 2


def test_files_nothing_can_use_are_removed_when_a_process_first_writes(fake, tmp_path):
    directory = tmp_path / "sts"
    directory.mkdir(mode=0o700)
    old_entry, young_entry = directory / ("a" * 64 + ".json"), directory / ("b" * 64 + ".json")
    left_behind, foreign = directory / ".abc.tmp", directory / "notes.txt"
    for path in (old_entry, young_entry, left_behind, foreign):
        path.write_text("{}")
    day = 24 * 3600
    os.utime(old_entry, (fake.now - 13 * 3600 - 60,) * 2)  # older than the longest session (12 h) plus an hour
    os.utime(young_entry, (fake.now - 11 * 3600,) * 2)
    os.utime(left_behind, (fake.now - 2 * 3600,) * 2)  # a killed process's temporary file
    os.utime(foreign, (fake.now - day,) * 2)
    process(fake, cache_for(fake, directory)).client("ec2", OTHER, "eu-west-1")
    assert not old_entry.exists() and not left_behind.exists()
    assert young_entry.exists() and foreign.exists() and len(entries(directory)) == 2
