"""What the backup phase costs in AWS reads beyond CreateImage, counted per operation from the sandbox's call log.

A fleet of about a hundred instances in two locations whose AMIs become available at different times (5 to 20 minutes,
snapshots 2 to 30 minutes, the image waiting for its slowest snapshot, as in the sandbox's aws profile), driven the
way the backup role drives the module: a new BackupRun (a new module process, knowing nothing) per progress return.
Time is the sandbox's scaled clock: sleeping moves it forward, so nothing here waits on the wall clock.
"""

import collections

import pytest
from conftest import OWN_ACCOUNT
from fleet_helpers import BACKUP_OPTIONS, SandboxTime, backup_run, demo_targets, fleet_for, ops

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun
from ansible_collections.cms.patching.plugins.module_utils._scan import scan

LOCATIONS = [(OWN_ACCOUNT, "us-east-1"), (OWN_ACCOUNT, "eu-west-1")]
SLOW_AMIS = dict(
    ami_pending_seconds=300,
    ami_pending_max_seconds=1200,
    snapshot_pending_seconds=120,
    snapshot_pending_max_seconds=1800,
    image_waits_for_snapshots=True,
    describe_visibility_seconds=10,
    snapshot_id_delay_seconds=30,
)
# The role's calls at real intervals: a round every 30 s, a progress return every 60 s.
ROLE = dict(poll_interval=30, wait_timeout=10800)
PROGRESS_INTERVAL = 60


def _fleet(aws):
    fleet = fleet_for(aws, accounts=[{"account_id": OWN_ACCOUNT}])
    fleet.server_clock = SandboxTime(aws.state)
    return fleet


def _targets(aws, fleet, count=120):
    aws.seed({"synthetic": {"count": count, "accounts": [OWN_ACCOUNT], "regions": [r for _a, r in LOCATIONS], "managed_ratio": 1.0, "reservations": 6}})
    records, errors = scan(fleet, [OWN_ACCOUNT], [r for _a, r in LOCATIONS], {}, {"instance_states": ["running"], "require_ssm_online": False})
    assert not errors
    return [r for r in records if r["target"]]


def _role_loop(aws, fleet, targets, **options):
    """Module calls as the role's until loop makes them; (results of the last call, number of calls, rounds in all)."""
    opts = dict(ROLE, **options)
    rounds = 0
    for calls in range(1, 200):
        run = backup_run(aws, fleet, targets, run_id="run-calls", **opts)
        results = run.run(progress_interval=PROGRESS_INTERVAL)
        rounds += run.rounds
        if not any(r["backup_status"] == "pending" for r in results):
            return results, calls, rounds
    raise AssertionError("still pending after 200 calls")


def _by_operation(aws):
    return collections.Counter(entry["operation"] for entry in aws.state.calls.log())


def test_snapshots_are_read_once_per_location_and_verified_at_tagged_once_per_location(aws):
    aws.state.update_settings(**SLOW_AMIS)
    fleet = _fleet(aws)
    targets = _targets(aws, fleet)
    assert len(targets) >= 100  # about 60 a location
    aws.state.calls.reset()
    results, calls, rounds = _role_loop(aws, fleet, targets)
    assert [r["backup_status"] for r in results] == ["verified"] * len(targets)
    assert calls >= 20  # availability spread over 25 minutes: many progress returns
    counts = _by_operation(aws)
    assert set(counts) == {"ec2:CreateImage", "ec2:DescribeImages", "ec2:DescribeSnapshots", "ec2:CreateTags"}, counts
    assert counts["ec2:CreateImage"] == len(targets)
    # A round reads DescribeImages only where something is pending; none right after creating.
    assert counts["ec2:DescribeImages"] <= rounds * len(LOCATIONS)
    # Every image of a location is available before its snapshots are read: one DescribeSnapshots per location in
    # the whole phase; the calls after that trust the verified-at tag the verifying call set.
    assert counts["ec2:DescribeSnapshots"] == len(LOCATIONS)
    # verified-at: one CreateTags per location (up to 1,000 resources a call), as soon as nothing there is pending.
    assert counts["ec2:CreateTags"] == len(LOCATIONS)
    for result in results:
        image = fleet.client("ec2", result["account_id"], result["region"]).describe_images(ImageIds=[result["ami_id"]])["Images"][0]
        assert _tags.VERIFIED_AT in _tags.as_dict(image["Tags"])


# -- the same rules on the demo fleet, where each case can be set up ---------------------------------------------------


@pytest.fixture
def fleet(demo, aws):
    fleet = fleet_for(aws)
    fleet.server_clock = SandboxTime(aws.state)
    return fleet


@pytest.fixture
def targets(fleet, aws):
    found = demo_targets(aws, fleet)
    aws.state.calls.reset()
    return found


def _one_location(targets, count):
    groups = collections.defaultdict(list)
    for target in targets:
        groups[(target["account_id"], target["region"])].append(target)
    group = max(groups.values(), key=len)
    assert len(group) >= count
    return group[:count]


def _calls_since(aws, mark, operation):
    return sum(1 for entry in aws.state.calls.log()[mark:] if entry["operation"] == operation)


def _tags_of(fleet, result):
    image = fleet.client("ec2", result["account_id"], result["region"]).describe_images(ImageIds=[result["ami_id"]])["Images"][0]
    return _tags.as_dict(image["Tags"])


def test_available_images_wait_for_the_last_of_their_location_and_are_read_by_their_deadline(aws, fleet, targets):
    group = _one_location(targets, 3)
    stuck = group[0]
    aws.state.faults.add("ami_stuck", instance_id=stuck["instance_id"])
    run = backup_run(aws, fleet, group, poll_interval=5, wait_timeout=60)
    first = {r["instance_id"]: r for r in run.run(progress_interval=30)}
    # The two others are available: their snapshots wait for the stuck one (no DescribeSnapshots), and say so.
    assert [first[t["instance_id"]]["image_state"] for t in group[1:]] == ["available", "available"]
    assert {r["backup_status"] for r in first.values()} == {"pending"}
    assert "ec2:DescribeSnapshots" not in ops(aws)
    assert "checked once no other AMI of this run in %s/%s is pending" % (stuck["account_id"], stuck["region"]) in run.backups[group[1]["instance_id"]].reason
    # Resumed: at the deadline the stuck one fails, and the available ones are read in time - verified, not failed.
    mark = len(aws.state.calls.log())
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, group, poll_interval=5, wait_timeout=60).run()}
    assert results[stuck["instance_id"]]["backup_status"] == "failed"
    assert results[stuck["instance_id"]]["reason"].startswith("not verified within wait_timeout")
    assert [results[t["instance_id"]]["backup_status"] for t in group[1:]] == ["verified", "verified"]
    assert _calls_since(aws, mark, "ec2:DescribeSnapshots") == 1
    assert all(_tags.VERIFIED_AT in _tags_of(fleet, results[t["instance_id"]]) for t in group[1:])


def test_a_call_of_one_round_reads_the_snapshots_of_what_is_available(aws, fleet, targets):
    group = _one_location(targets, 3)
    aws.state.faults.add("ami_stuck", instance_id=group[0]["instance_id"])
    backup_run(aws, fleet, group).run(wait=False)
    aws.state.clock.advance(10)
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, group).run(wait=False)}
    assert results[group[0]["instance_id"]]["backup_status"] == "pending"
    assert [results[t["instance_id"]]["backup_status"] for t in group[1:]] == ["verified", "verified"]


def test_a_location_is_tagged_when_it_finishes_and_later_calls_trust_the_tag(aws, fleet, targets):
    by_location = collections.defaultdict(list)
    for target in targets:
        by_location[(target["account_id"], target["region"])].append(target)
    (done_location, done), (_other, slow) = sorted(by_location.items(), key=lambda item: -len(item[1]))[:2]
    aws.state.faults.add("ami_stuck", instance_id=slow[0]["instance_id"])
    chosen = done[:3] + slow[:2]
    first = backup_run(aws, fleet, chosen, poll_interval=5).run(progress_interval=30)
    finished = [r for r in first if (r["account_id"], r["region"]) == done_location]
    assert [r["backup_status"] for r in finished] == ["verified"] * 3
    # Tagged by this call, although it returns for progress with the other location pending: one CreateTags.
    assert sum(r["backup_status"] == "pending" for r in first) >= 1
    assert all(_tags.VERIFIED_AT in _tags_of(fleet, r) for r in finished)
    assert ops(aws)["ec2:CreateTags"] == 1
    # The next call of the run reads the finished location's images once and trusts their tag: no snapshot read there.
    mark = len(aws.state.calls.log())
    second = backup_run(aws, fleet, chosen, poll_interval=5).run(progress_interval=30)
    assert [r["backup_status"] for r in second if (r["account_id"], r["region"]) == done_location] == ["verified"] * 3
    later = aws.state.calls.log()[mark:]
    assert not [e for e in later if e["operation"] == "ec2:DescribeSnapshots" and (e["account"], e["region"]) == done_location]
    assert len([e for e in later if e["operation"] == "ec2:DescribeImages" and (e["account"], e["region"]) == done_location]) == 1
    assert not [e for e in later if e["operation"] == "ec2:CreateTags"]


def test_a_verify_call_checks_the_snapshots_again_despite_the_tag(aws, fleet, targets):
    group = _one_location(targets, 2)
    assert [r["backup_status"] for r in backup_run(aws, fleet, group).run()] == ["verified"] * 2
    aws.state.calls.reset()
    results = backup_run(aws, fleet, group).run(create=False)
    assert [r["backup_status"] for r in results] == ["verified"] * 2
    assert ops(aws)["ec2:DescribeSnapshots"] == 1 and "ec2:CreateTags" not in ops(aws)


def test_a_failed_snapshot_read_changes_no_status_and_the_next_round_reads_again(aws, fleet, targets):
    group = _one_location(targets, 2)
    fleet.policy.max_attempts = 1
    backup_run(aws, fleet, group).run(wait=False)
    aws.state.clock.advance(10)
    aws.state.faults.add("throttle", operation="ec2:DescribeSnapshots", rate=1.0, count=1)
    run = backup_run(aws, fleet, group, poll_interval=1)
    first = run.run(wait=False)
    assert [r["backup_status"] for r in first] == ["pending"] * 2
    assert all("could not read snapshot state" in run.backups[r["instance_id"]].reason for r in first)
    assert "ec2:CreateTags" not in ops(aws)
    results = backup_run(aws, fleet, group, poll_interval=1).run()
    assert [r["backup_status"] for r in results] == ["verified"] * 2
    assert ops(aws)["ec2:CreateTags"] == 1


class _Tagging:
    """Just enough of a FleetSession for tag_verified: records each CreateTags."""

    def __init__(self):
        self.calls = []

    def client(self, service, account_id, region):
        calls = self.calls

        class Ec2:
            def create_tags(self, Resources, Tags):  # noqa: N803  (boto3's parameter names)
                calls.append(((account_id, region), list(Resources), Tags))

        return Ec2()


def test_verified_at_is_set_with_up_to_1000_amis_a_call():
    fleet = _Tagging()
    instances = [{"instance_id": "i-%017x" % n, "account_id": OWN_ACCOUNT, "region": "us-east-1", "volumes": []} for n in range(1200)]
    instances += [{"instance_id": "i-%017x" % (5000 + n), "account_id": OWN_ACCOUNT, "region": "eu-west-1", "volumes": []} for n in range(450)]
    run = BackupRun(fleet, instances, "run-1", "demo", dict(BACKUP_OPTIONS), clock=lambda: 1.8e9)
    for n, backup in enumerate(run.backups.values()):
        backup.adopt({"ImageId": "ami-%017x" % n, "State": "available", "Tags": []})
        backup.status = "verified"
    run.tag_verified()
    assert sorted((location, len(ids)) for location, ids, _tags_set in fleet.calls) == [
        ((OWN_ACCOUNT, "eu-west-1"), 450),
        ((OWN_ACCOUNT, "us-east-1"), 200),
        ((OWN_ACCOUNT, "us-east-1"), 1000),
    ]
    # Tagged once: the end of the call (or a later round) does not tag them again.
    run.tag_verified()
    assert len(fleet.calls) == 3


def test_a_failed_verified_at_tag_in_a_round_is_set_by_the_end_of_the_call(aws, fleet, targets):
    group = _one_location(targets, 2)
    fleet.policy.max_attempts = 1
    aws.state.faults.add("throttle", operation="ec2:CreateTags", rate=1.0, count=1)
    results = backup_run(aws, fleet, group, poll_interval=1).run()
    assert [r["backup_status"] for r in results] == ["verified"] * 2
    assert all(_tags.VERIFIED_AT in _tags_of(fleet, r) for r in results)
    assert ops(aws)["ec2:CreateTags"] == 2
