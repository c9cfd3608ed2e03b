"""Client-side pacing: EC2's documented token buckets per account/region/action, slowed by throttling, on a fake clock."""

import botocore.session
from botocore.stub import Stubber

from ansible_collections.cms.patching.plugins.module_utils import _pace
from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun
from ansible_collections.cms.patching.plugins.module_utils._pace import Pacer, documented_rate
from ansible_collections.cms.patching.plugins.module_utils._retry import CallStats, RetryingClient, RetryPolicy

CREATE = ("ec2", "111111111111", "eu-west-1", "CreateImage")
OTHER_REGION = ("ec2", "111111111111", "us-east-1", "CreateImage")


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(headroom=1.0):
    fake = FakeTime()
    return Pacer(headroom=headroom, clock=fake.clock, sleep=fake.sleep), fake


def test_documented_ec2_rates_and_no_rate_for_undocumented_services():
    assert documented_rate("ec2", "CreateImage") == (50, 5)
    assert documented_rate("ec2", "DescribeImages") == (100, 20)
    assert documented_rate("ec2", "CreateTags") == (100, 10)
    assert documented_rate("ssm", "SendCommand") is None
    assert documented_rate("sts", "AssumeRole") is None


def test_mutating_bucket_bursts_50_then_5_a_second():
    pace, fake = pacer()
    for _i in range(50):
        pace.acquire(CREATE)
    assert not fake.sleeps and fake.now == 1000.0
    for _i in range(10):
        pace.acquire(CREATE)
    # Each further call waits for the next token: 0.2 s apart, 2 s for ten.
    assert len(fake.sleeps) == 10 and abs(fake.now - 1002.0) < 1e-9


def test_headroom_keeps_below_the_documented_rate():
    pace, fake = pacer(headroom=0.9)
    for _i in range(45 + 9):
        pace.acquire(CREATE)
    assert abs(fake.now - 1002.0) < 1e-9  # 45 at once, then 4.5 a second


def test_buckets_are_per_account_and_region():
    pace, fake = pacer()
    for _i in range(50):
        pace.acquire(CREATE)
    assert pace.reserve(CREATE) > 0
    # The other region's bucket is still full: its calls go at once.
    assert pace.reserve(OTHER_REGION) == 0 and pace.reserve(("ec2", "222222222222", "eu-west-1", "CreateImage")) == 0
    assert not fake.sleeps


def test_concurrent_callers_queue_in_order():
    pace, _fake = pacer()
    for _i in range(50):
        pace.reserve(CREATE)
    waits = [pace.reserve(CREATE) for _i in range(3)]
    assert [round(w, 6) for w in waits] == [0.2, 0.4, 0.6]


def test_throttling_halves_the_rate_once_per_second_and_success_recovers_it():
    pace, fake = pacer()
    pace.throttled(CREATE)
    pace.throttled(CREATE)  # refused together with the first: one signal
    assert pace.rate(CREATE) == 2.5
    # AWS said the bucket is empty: the next call waits for a token at the slower rate.
    assert abs(pace.reserve(CREATE) - 0.4) < 1e-9
    fake.now += 1.0
    pace.throttled(CREATE)
    assert pace.rate(CREATE) == 1.25
    for _i in range(200):
        pace.succeeded(CREATE)
    assert pace.rate(CREATE) == 5.0
    for _i in range(100):
        pace.throttled(CREATE)
        fake.now += 1.0
    assert pace.rate(CREATE) == _pace.MIN_RATE


def test_undocumented_action_is_never_paced():
    pace, fake = pacer()
    key = ("ssm", "111111111111", "eu-west-1", "ListCommands")
    for _i in range(100):
        pace.acquire(key)
    # Throttled: no bucket to slow down (no documented rate to recover to); the caller backs off instead.
    assert pace.throttled(key) is False
    pace.acquire(key)
    assert not fake.sleeps and pace.rate(key) is None


def test_ssm_throttling_backs_off_as_before():
    client = botocore.session.get_session().create_client("ssm", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    backoffs = []
    pace, fake = pacer()
    wrapped = RetryingClient(client, RetryPolicy(max_attempts=5, sleep=backoffs.append), CallStats(), pacer=pace, scope=("111111111111", "eu-west-1"))
    stubber = Stubber(client)
    stubber.add_client_error("list_commands", service_error_code="ThrottlingException", http_status_code=400)
    stubber.add_response("list_commands", {"Commands": []})
    with stubber:
        wrapped.list_commands()
    assert len(backoffs) == 1 and not fake.sleeps


def client_with(pace, region="eu-west-1"):
    client = botocore.session.get_session().create_client("ec2", region_name=region, aws_access_key_id="x", aws_secret_access_key="y")
    backoffs = []
    policy = RetryPolicy(max_attempts=5, sleep=backoffs.append)
    return RetryingClient(client, policy, CallStats(), pacer=pace, scope=("111111111111", region)), Stubber(client), backoffs


def test_retrying_client_waits_for_tokens_and_slows_down_on_throttling():
    pace, fake = pacer()
    for _i in range(50):
        pace.reserve(CREATE)  # the burst is spent
    wrapped, stubber, backoffs = client_with(pace)
    stubber.add_client_error("create_image", service_error_code="RequestLimitExceeded", http_status_code=503)
    stubber.add_response("create_image", {"ImageId": "ami-12345678"})
    with stubber:
        assert wrapped.create_image(InstanceId="i-01234567", Name="xyz")["ImageId"] == "ami-12345678"
    # First call waited for a token (0.2 s); the throttled answer halved the rate, so the retry waited 0.4 s more,
    # and that wait replaced the jittered backoff.
    assert [round(s, 6) for s in fake.sleeps] == [0.2, 0.4]
    assert not backoffs
    assert 2.5 < pace.rate(CREATE) < 5.0  # halved, then a little back after the success


def test_retrying_client_without_pacer_keeps_its_backoff():
    client = botocore.session.get_session().create_client("ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    backoffs = []
    wrapped = RetryingClient(client, RetryPolicy(max_attempts=5, sleep=backoffs.append), CallStats())
    stubber = Stubber(client)
    stubber.add_client_error("create_image", service_error_code="RequestLimitExceeded", http_status_code=503)
    stubber.add_response("create_image", {"ImageId": "ami-12345678"})
    with stubber:
        wrapped.create_image(InstanceId="i-01234567", Name="xyz")
    assert len(backoffs) == 1


class _Fleet:
    """CreateImage per location; the eu-west-1 one blocks until released, the others answer at once."""

    def __init__(self):
        import threading

        self.release = threading.Event()
        self.order = []
        self.lock = threading.Lock()

    def client(self, _service, account, region):
        fleet = self

        class Client:
            def create_image(self, **kwargs):
                if region == "eu-west-1":
                    assert fleet.release.wait(10)
                with fleet.lock:
                    fleet.order.append((region, kwargs["InstanceId"]))
                    if region == "us-east-1" and sum(1 for r, _cmd in fleet.order if r == "us-east-1") == 20:
                        fleet.release.set()
                return {"ImageId": "ami-" + kwargs["InstanceId"][2:]}

        return Client()


def test_a_slow_location_does_not_hold_back_another_locations_creates():
    fleet = _Fleet()
    instances = [{"instance_id": "i-%08d" % n, "account_id": "111111111111", "region": "eu-west-1", "volumes": []} for n in range(20)]
    instances += [{"instance_id": "i-%08d" % (100 + n), "account_id": "111111111111", "region": "us-east-1", "volumes": []} for n in range(20)]
    options = {"name_template": "b-{instance_id}-{run_id}", "description_template": "d", "max_concurrent_creates": 2, "max_workers": 8}
    run = BackupRun(fleet, instances, "20261201T000000Z-abcdef", "lz", options, clock=lambda: 0.0)
    run.unread = set()
    run.create_missing()
    # Every us-east-1 call went out while eu-west-1's two threads were stuck (they are released by the 20th us-east-1 call).
    assert [r for r, _cmd in fleet.order[:20]] == ["us-east-1"] * 20
    assert all(b.created for b in run.backups.values())


def test_a_progress_call_sleeps_out_its_interval_instead_of_polling_right_before_returning():
    from ansible_collections.cms.patching.plugins.module_utils._pace import progress_ends

    sleeps = []
    assert progress_ends(0, 60, 30, sleeps.append) is False  # a poll at 30 s is due first
    assert progress_ends(30, 60, 30, sleeps.append) is True and sleeps == [30]  # the next call polls at 60 s anyway
    assert progress_ends(61, 60, 30, sleeps.append) is True and sleeps == [30]
    assert progress_ends(10_000, 0, 30, sleeps.append) is False  # no progress interval: never returns for progress
