"""ami_backup_verified against the sandbox: whole-machine verification, the failure modes, idempotence, cost."""

import datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import DEMO_ACCOUNTS, DEMO_REGIONS, OWN_ACCOUNT
from fleet_helpers import BACKUP_OPTIONS, SandboxTime, backup_run, demo_targets, fleet_for, ops
from moto.ec2.models import ec2_backends

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError
from ansible_collections.cms.patching.plugins.modules import ami_backup_verified


@pytest.fixture
def fleet(demo, aws):
    fleet = fleet_for(aws)
    fleet.server_clock = SandboxTime(aws.state)
    return fleet


class Unkind:
    """An EC2 client that answers some calls as AWS may where the sandbox is still kind; overrides get (real client, **kwargs)."""

    def __init__(self, client, overrides):
        self._client, self._overrides = client, overrides

    def __getattr__(self, name):
        if name in self._overrides:
            return lambda **kwargs: self._overrides[name](self._client, **kwargs)
        return getattr(self._client, name)


def unkind(fleet, **overrides):
    real = fleet.client

    def client(service, account_id, region):
        found = real(service, account_id, region)
        return Unkind(found, overrides) if service == "ec2" else found

    fleet.client = client


def aws_error(code, operation, status=500, message="We encountered an internal error. Please try again."):
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


def eventually_consistent(aws, invisible_seconds):
    """DescribeImages as EC2 answers right after CreateImage: a new image is missing for a while, then pending without snapshot IDs."""

    def describe_images(client, **kwargs):
        answer = client.describe_images(**kwargs)
        now = aws.state.now()
        images = []
        for image in answer["Images"]:
            created = datetime.datetime.strptime(image["CreationDate"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
            if now - created < invisible_seconds:
                continue
            if image["State"] == "pending":
                mappings = [dict(m, Ebs={k: v for k, v in m["Ebs"].items() if k != "SnapshotId"}) for m in image["BlockDeviceMappings"]]
                image = dict(image, BlockDeviceMappings=mappings)
            images.append(image)
        return dict(answer, Images=images)

    return describe_images


def our_images(aws, run_id):
    images = []
    for account in DEMO_ACCOUNTS:
        for region in DEMO_REGIONS:
            backend = ec2_backends[account["account_id"]][region]
            images.extend(
                i for i in backend.amis.values() if backend.tags.get(i.id, {}).get(_tags.RUN_ID) == run_id
            )
    return images


@pytest.fixture
def targets(fleet, aws):
    found = demo_targets(aws, fleet)
    aws.state.calls.reset()
    return found


def ec2(aws, region="us-east-1"):
    return boto3.client("ec2", region_name=region, endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def by_name(results, targets):
    names = {t["instance_id"]: t["name"] for t in targets}
    return {names[r["instance_id"]]: r for r in results}


def test_every_target_gets_a_whole_machine_verified_ami(aws, fleet, targets):
    run = backup_run(aws, fleet, targets)
    results = by_name(run.run(), targets)
    assert len(results) == 21
    verified = {n: r for n, r in results.items() if r["backup_status"] == "verified"}
    assert len(verified) == 20
    # The demo's injected failure: the AMI of web-03 ends "failed"; the others are unaffected.
    assert results["web-03"]["backup_status"] == "failed" and "is failed" in results["web-03"]["reason"]
    for target in targets:
        if target["name"] in verified:
            assert len(verified[target["name"]]["snapshot_ids"]) == len(target["volumes"])
    # db-01 has a 100 GiB data volume: two snapshots, each tagged, each completed.
    client = ec2(aws)
    db = verified["db-01"]
    snaps = client.describe_snapshots(SnapshotIds=db["snapshot_ids"])["Snapshots"]
    assert {s["State"] for s in snaps} == {"completed"} and len(snaps) == 2
    for snap in snaps:
        tags = _tags.as_dict(snap["Tags"])
        assert tags[_tags.RUN_ID] == "run-1" and tags[_tags.PATCHING] == "pre-patch" and tags["Team"] == "platform"
    image = client.describe_images(ImageIds=[db["ami_id"]])["Images"][0]
    tags = _tags.as_dict(image["Tags"])
    assert tags[_tags.INSTANCE_ID] == db["instance_id"] and tags[_tags.LZ] == "demo" and _tags.VERIFIED_AT in tags
    assert db["seconds"] >= 3  # the sandbox keeps AMIs pending 3 s and snapshots 4 s


def test_pending_snapshot_keeps_an_available_image_unverified(aws, fleet, targets):
    aws.state.update_settings(ami_pending_seconds=1, snapshot_pending_seconds=20)
    run = backup_run(aws, fleet, targets[:3], poll_interval=2)
    results = run.run(progress_interval=4)
    assert all(r["backup_status"] == "pending" for r in results)
    assert all(r["image_state"] == "available" for r in results)
    assert all("snapshot" in run.backups[r["instance_id"]].reason for r in results)


def test_snapshots_are_read_once_images_are_available_and_tags_set_by_the_call_that_finishes(aws, fleet, targets):
    aws.state.update_settings(ami_pending_seconds=8, snapshot_pending_seconds=8)
    first = backup_run(aws, fleet, targets[:3], poll_interval=1).run(progress_interval=3)
    assert {r["backup_status"] for r in first} == {"pending"}
    # Pending images: DescribeImages only (their snapshots cannot tell anything the image does not), and a call that
    # returns for progress tags nothing and does not poll right before returning (the next call polls as it starts).
    calls = ops(aws)
    assert "ec2:DescribeSnapshots" not in calls and "ec2:CreateTags" not in calls
    # 2 locations of the 3 targets at most; a first look before creating, none right after (an AMI takes minutes), then
    # at 1 s and 2 s - none at 3 s.
    locations = len({(t["account_id"], t["region"]) for t in targets[:3]})
    assert calls["ec2:DescribeImages"] == 3 * locations
    second = backup_run(aws, fleet, targets[:3], poll_interval=1).run()
    assert {r["backup_status"] for r in second} == {"verified"}
    calls = ops(aws)
    assert calls["ec2:CreateTags"] == locations
    for result in second:
        image = fleet.client("ec2", result["account_id"], result["region"]).describe_images(ImageIds=[result["ami_id"]])["Images"][0]
        assert _tags.VERIFIED_AT in _tags.as_dict(image["Tags"])


def test_snapshot_error_fails_the_backup(aws, fleet, targets):
    victim = targets[0]
    aws.state.faults.add("snapshot_error", instance_id=victim["instance_id"])
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, targets[:3]).run()}
    assert results[victim["instance_id"]]["backup_status"] == "failed"
    assert "is error" in results[victim["instance_id"]]["reason"]
    assert [r["backup_status"] for i, r in results.items() if i != victim["instance_id"]] == ["verified", "verified"]


def test_stuck_ami_fails_at_the_deadline(aws, fleet, targets):
    victim = targets[1]
    aws.state.faults.add("ami_stuck", instance_id=victim["instance_id"])
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, targets[:3], wait_timeout=60).run()}
    assert results[victim["instance_id"]]["backup_status"] == "failed"
    assert results[victim["instance_id"]]["reason"].startswith("not verified within wait_timeout: AMI")
    assert results[victim["instance_id"]]["seconds"] >= 60
    assert sum(r["backup_status"] == "verified" for r in results.values()) == 2


def test_rerun_of_the_same_run_finds_its_amis(aws, fleet, targets):
    first = {r["instance_id"]: r["ami_id"] for r in backup_run(aws, fleet, targets[:4]).run()}
    aws.state.calls.reset()
    second = backup_run(aws, fleet, targets[:4]).run()
    assert {r["instance_id"]: r["ami_id"] for r in second} == first
    assert not any(r["created"] for r in second)
    assert "ec2:CreateImage" not in ops(aws)
    # A new run makes new AMIs.
    third = backup_run(aws, fleet, targets[:4], run_id="run-2").run()
    assert not set(r["ami_id"] for r in third) & set(first.values())


def test_progress_return_then_resume_without_new_amis(aws, fleet, targets):
    run = backup_run(aws, fleet, targets[:5], poll_interval=1)
    first = run.run(progress_interval=1)
    assert sum(r["backup_status"] == "pending" for r in first) == 5
    creates = ops(aws)["ec2:CreateImage"]
    second = backup_run(aws, fleet, targets[:5], poll_interval=1).run()
    assert all(r["backup_status"] == "verified" for r in second)
    assert ops(aws)["ec2:CreateImage"] == creates


def test_throttled_create_image_is_retried(aws, fleet, targets):
    aws.state.faults.add("throttle", operation="ec2:CreateImage", every=3)
    results = backup_run(aws, fleet, targets[:6]).run()
    assert all(r["backup_status"] == "verified" for r in results)
    assert aws.state.calls.snapshot()["throttled"].get("ec2:CreateImage", 0) >= 2
    assert fleet.stats.retries["ec2:CreateImage"] >= 2
    # Exactly one AMI per instance despite the retries.
    images = ec2(aws).describe_images(Owners=["self"], Filters=[_tags.tag_filter(_tags.RUN_ID, "run-1")])["Images"]
    assert len(images) == len([t for t in targets[:6] if t["region"] == "us-east-1" and t["account_id"] == OWN_ACCOUNT])


def test_unknown_instance_fails_alone(aws, fleet, targets):
    ghost = dict(targets[0], instance_id="i-0123456789abcdef0", name="ghost", volumes=[])
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, [ghost] + targets[:2]).run()}
    assert results["i-0123456789abcdef0"]["backup_status"] == "failed"
    assert "CreateImage failed: InvalidInstanceID.NotFound" in results["i-0123456789abcdef0"]["reason"]
    assert [results[t["instance_id"]]["backup_status"] for t in targets[:2]] == ["verified", "verified"]


def test_volumes_are_read_when_not_given(aws, fleet, targets):
    bare = [{k: t[k] for k in ("instance_id", "account_id", "region", "name")} for t in targets[:3]]
    results = backup_run(aws, fleet, bare).run()
    assert all(r["backup_status"] == "verified" for r in results)
    assert ops(aws)["ec2:DescribeInstances"] >= 1


def test_check_mode_creates_nothing(aws, targets, run_module):
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-check", instances=targets[:4], poll_interval=1)
    result = run_module(ami_backup_verified, args, check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True
    assert {r["backup_status"] for r in result["instances"]} == {"skipped"}
    # A plan, not an error: the reason stays empty so a dry run reports no failures.
    assert [r["reason"] for r in result["instances"]] == [""] * 4
    assert [r["plan"] for r in result["instances"]] == ["would create AMI cms-patching-%s-run-check" % t["instance_id"] for t in targets[:4]]
    assert not [op for op in ops(aws) if op.startswith(("ec2:Create", "ec2:Deregister", "ec2:Delete"))]


def test_module_verifies_and_reports(aws, targets, run_module):
    aws.state.update_settings(ami_pending_seconds=0, snapshot_pending_seconds=0)
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-m", instances=targets[:3], poll_interval=1)
    result = run_module(ami_backup_verified, args)
    assert not result.failed, result.get("msg")
    assert result["summary"]["verified"] == 3 and result["pending"] == 0 and result["changed"] is True
    assert result["progress"]["line"].startswith("backup round")
    assert result["api_calls"]["calls"]["ec2:CreateImage"] == 3


def test_the_result_echoes_each_instance_of_the_batch_by_its_ids_only(aws, targets, run_module):
    # ansible-core echoes a module's arguments in its result (invocation.module_args): a whole batch of discovery records
    # would come back in every result, a second copy of the arguments in the worker and the controller.
    aws.state.update_settings(ami_pending_seconds=0, snapshot_pending_seconds=0)
    whole = [dict(t, tags={"Name": t["name"], "Owner": "x" * 200}) for t in targets[:3]]
    result = run_module(ami_backup_verified, dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-echo", instances=whole, poll_interval=1))
    assert not result.failed, result.get("msg")
    echoed = result["invocation"]["module_args"]
    assert echoed["instances"] == [{k: t[k] for k in ("instance_id", "account_id", "region")} for t in targets[:3]]
    assert echoed["lz"] == "demo" and echoed["run_id"] == "run-echo" and echoed["poll_interval"] == 1
    # A failure names its instances the same way (the report marks them from it).
    failed = run_module(ami_backup_verified, dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-echo", instances=whole, wait_timeout=0, mode="verify"))
    assert failed.failed and "wait_timeout" in failed["msg"]
    assert failed["invocation"]["module_args"]["instances"] == echoed["instances"]


def test_module_input_errors_name_the_option(aws, targets, run_module):
    bad = dict(targets[0], instance_id="i-123")
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", instances=[bad, {"instance_id": "i-01234567"}], name_template="x-{host}")
    result = run_module(ami_backup_verified, args)
    assert result.failed
    text = " | ".join(result["problems"])
    assert "run_id: required for mode=create" in text
    assert "instances[0]: 'i-123' is not an EC2 instance ID" in text
    assert "instances[1]: missing account_id, region" in text
    assert "name_template: unknown placeholder {host}" in text
    assert aws.state.calls.snapshot()["total"] == 0


def test_module_refuses_a_name_template_too_long_for_its_identifiers(aws, targets, run_module):
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="r" * 64, instances=targets[:1], name_template="x" * 50 + "-{instance_id}-{run_id}")
    result = run_module(ami_backup_verified, args)
    assert result.failed
    assert "name_template: is 135 characters long without {name} and {lz}" in result["msg"]
    assert aws.state.calls.snapshot()["total"] == 0


def test_verify_mode_checks_the_newest_ami_and_creates_nothing(aws, fleet, targets):
    backup_run(aws, fleet, targets[:3], run_id="run-a").run()
    aws.state.clock.advance(60)
    newer = {r["instance_id"]: r["ami_id"] for r in backup_run(aws, fleet, targets[:2], run_id="run-b").run()}
    aws.state.calls.reset()
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, targets[:4], run_id=None).run(create=False)}
    assert "ec2:CreateImage" not in ops(aws)
    for instance_id, ami in newer.items():
        assert results[instance_id]["ami_id"] == ami and results[instance_id]["backup_status"] == "verified"
    assert results[targets[2]["instance_id"]]["backup_status"] == "verified"
    assert results[targets[3]["instance_id"]]["backup_status"] == "failed"
    assert "no pre-patch AMI of this instance found for landing zone demo" in results[targets[3]["instance_id"]]["reason"]


def test_backup_cost_beyond_create_image_at_scale(aws):
    aws.seed({"synthetic": {"count": 300, "accounts": [OWN_ACCOUNT], "regions": ["us-east-1"], "managed_ratio": 1.0, "reservations": 3}})
    fleet = fleet_for(aws, accounts=[{"account_id": OWN_ACCOUNT}])
    records, _errors = __import__("ansible_collections.cms.patching.plugins.module_utils._scan", fromlist=["scan"]).scan(
        fleet, [OWN_ACCOUNT], ["us-east-1"], {}, {"instance_states": ["running"], "require_ssm_online": False}
    )
    targets = [r for r in records if r["target"]]
    fleet.stats.calls.clear()
    results = backup_run(aws, fleet, targets).run()
    assert len(results) == len(targets) >= 250
    assert all(r["backup_status"] == "verified" for r in results)
    calls = dict(fleet.stats.calls)
    creates = calls.pop("ec2:CreateImage")
    assert creates == len(targets)
    assert sum(calls.values()) / len(targets) <= 0.1, calls


def test_an_aws_error_outside_any_instance_is_a_clean_module_failure(aws, targets, run_module):
    aws.state.faults.add("throttle", operation="ec2:DescribeInstances", rate=1.0)
    bare = [{k: t[k] for k in ("instance_id", "account_id", "region")} for t in targets[:2]]
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-err", instances=bare, retries={"max_attempts": 2, "base_delay": 0.01})
    result = run_module(ami_backup_verified, args)
    assert result.failed
    assert result["msg"].startswith("AWS error: RequestLimitExceeded") and result["error_code"] == "RequestLimitExceeded"
    assert result["api_calls"]["retries"]["ec2:DescribeInstances"] == 1


def run_with(aws, fleet, instances, run_id="run-1", lz="demo", clock=None, **options):
    return BackupRun(
        fleet, [dict(i) for i in instances], run_id, lz, dict(BACKUP_OPTIONS, **options), clock=clock or aws.state.now, sleep=aws.state.clock.advance
    )


def test_a_new_image_not_yet_visible_or_without_snapshot_ids_is_pending_not_failed(aws, fleet, targets):
    unkind(fleet, describe_images=eventually_consistent(aws, invisible_seconds=2))
    run = run_with(aws, fleet, targets[:3], poll_interval=1)
    first = run.run(wait=False)
    assert [r["backup_status"] for r in first] == ["pending"] * 3
    assert all("DescribeImages does not show it yet" in run.backups[r["instance_id"]].reason for r in first)
    aws.state.clock.advance(2)
    run.poll()
    # Visible now, pending, its mappings without snapshot IDs yet.
    assert all(b.status == "pending" and b.seen and "has no snapshot yet" in b.reason for b in run.backups.values())
    results = run.run()
    assert [r["backup_status"] for r in results] == ["verified"] * 3
    assert all(r["created"] for r in results)


def test_the_deadline_runs_on_aws_clock_from_the_image_creation_date(aws, fleet, targets):
    first = run_with(aws, fleet, targets[:3], poll_interval=1).run(progress_interval=1)
    assert {r["backup_status"] for r in first} == {"pending"}
    # A resumed call from a controller whose clock is an hour ahead of AWS: the AMIs are minutes old, not an hour.
    ahead = run_with(aws, fleet, targets[:3], clock=lambda: aws.state.now() + 3600).run()
    assert [r["backup_status"] for r in ahead] == ["verified"] * 3
    assert all(r["seconds"] < 60 for r in ahead)


def test_a_controller_clock_behind_aws_still_fails_a_stuck_ami_at_the_deadline(aws, fleet, targets):
    victim = targets[0]
    aws.state.faults.add("ami_stuck", instance_id=victim["instance_id"])
    run_with(aws, fleet, [victim]).run(wait=False)
    # Resumed from a controller whose clock is an hour behind AWS: the deadline is still CreationDate + 60 s on AWS's clock.
    result = run_with(aws, fleet, [victim], clock=lambda: aws.state.now() - 3600, wait_timeout=60).run()[0]
    assert result["backup_status"] == "failed" and result["reason"].startswith("not verified within wait_timeout")
    assert 60 <= result["seconds"] < 70


def test_aws_clock_falls_back_to_the_local_clock_only_before_any_answer():
    class Fleet:
        server_clock = SandboxTime(None)

    class Never:
        def now(self):
            return None

    run = BackupRun(Fleet(), [], "run-1", "demo", BACKUP_OPTIONS, clock=lambda: 42.0)
    Fleet.server_clock = Never()
    assert run.now() == 42.0
    Fleet.server_clock = type("Known", (), {"now": lambda self: 1000.0})()
    assert run.now() == 1000.0


def test_a_failed_poll_round_changes_no_status_and_creates_nothing_blind(aws, targets):
    fleet = fleet_for(aws)
    fleet.server_clock = SandboxTime(aws.state)
    fleet.policy.max_attempts = 2
    aws.state.faults.add("throttle", operation="ec2:DescribeImages", rate=1.0, count=2)
    run = run_with(aws, fleet, targets[:3])
    first = run.run(wait=False)
    assert [r["backup_status"] for r in first] == ["pending"] * 3
    reasons = [run.backups[r["instance_id"]].reason for r in first]
    assert all("could not read AMI state" in reason and "RequestLimitExceeded" in reason for reason in reasons)
    # Nothing was created where the run's AMIs could not be looked up (a resume's AMIs may be there).
    assert "ec2:CreateImage" not in ops(aws)
    results = run_with(aws, fleet, targets[:3]).run()
    assert [r["backup_status"] for r in results] == ["verified"] * 3
    assert len(our_images(aws, "run-1")) == 3


def test_only_the_deadline_fails_a_backup_whose_state_cannot_be_read(aws, fleet, targets):
    run = run_with(aws, fleet, targets[:2], wait_timeout=60)
    run.run(wait=False)
    aws.state.faults.add("throttle", operation="ec2:DescribeImages", rate=1.0)
    fleet.policy.max_attempts = 2
    results = run.run()
    assert [r["backup_status"] for r in results] == ["failed"] * 2
    for r in results:
        assert r["reason"].startswith("not verified within wait_timeout: AMI ami-")
        assert "last error: could not read AMI state in" in r["reason"] and "RequestLimitExceeded" in r["reason"]


def _create_then_fail(made, fail_times, create_first=True):
    """CreateImage answers 500 (the first fail_times calls per instance), having made the image or not."""

    def create_image(client, **kwargs):
        instance_id = kwargs["InstanceId"]
        made.setdefault(instance_id, 0)
        made[instance_id] += 1
        if made[instance_id] <= fail_times:
            if create_first:
                client.create_image(**kwargs)
            raise aws_error("InternalError", "CreateImage")
        return client.create_image(**kwargs)

    return create_image


def test_a_create_image_answered_500_is_found_not_made_twice(aws, fleet, targets):
    calls = {}
    unkind(fleet, create_image=_create_then_fail(calls, 1), describe_images=eventually_consistent(aws, invisible_seconds=3))
    results = run_with(aws, fleet, targets[:3], poll_interval=1).run()
    assert [r["backup_status"] for r in results] == ["verified"] * 3
    # The retry re-sent the same name and got Duplicate (the image was invisible): one AMI per instance, adopted.
    assert set(calls.values()) == {2}
    images = our_images(aws, "run-1")
    assert len(images) == 3 and {i.id for i in images} == {r["ami_id"] for r in results}


def test_a_create_image_answered_500_is_looked_for_before_anything_is_sent_again(aws, fleet, targets):
    calls = {}
    unkind(fleet, create_image=_create_then_fail(calls, 1))
    results = run_with(aws, fleet, targets[:3], poll_interval=1).run()
    assert [r["backup_status"] for r in results] == ["verified"] * 3 and all(r["created"] for r in results)
    # Found by its run-ID tag: no second CreateImage at all.
    assert set(calls.values()) == {1} and len(our_images(aws, "run-1")) == 3


def test_a_create_image_answered_500_that_made_nothing_is_sent_again(aws, fleet, targets):
    calls = {}
    unkind(fleet, create_image=_create_then_fail(calls, 2, create_first=False))
    results = run_with(aws, fleet, targets[:2], poll_interval=1).run()
    assert [r["backup_status"] for r in results] == ["verified"] * 2
    assert set(calls.values()) == {3} and len(our_images(aws, "run-1")) == 2


def test_a_resume_racing_an_earlier_create_adopts_this_run_own_ami(aws, fleet, targets):
    earlier = {r["instance_id"]: r["ami_id"] for r in backup_run(aws, fleet, targets[:2]).run(wait=False)}
    # The resumed call does not see those images yet: its CreateImage of the same names answers Duplicate.
    unkind(fleet, describe_images=eventually_consistent(aws, invisible_seconds=3))
    results = run_with(aws, fleet, targets[:2], poll_interval=1).run()
    assert {r["instance_id"]: r["ami_id"] for r in results} == earlier
    assert [r["backup_status"] for r in results] == ["verified"] * 2
    assert len(our_images(aws, "run-1")) == 2


def test_a_duplicate_name_of_an_image_that_is_not_this_run_fails_naming_it(aws, fleet, targets):
    old = {r["instance_id"]: r["ami_id"] for r in run_with(aws, fleet, targets[:2], run_id="run-a", name_template="bk-{instance_id}").run()}
    results = run_with(aws, fleet, targets[:2], run_id="run-b", name_template="bk-{instance_id}").run()
    for r in results:
        assert r["backup_status"] == "failed"
        assert "already used by %s" % old[r["instance_id"]] in r["reason"] and "not this run's backup" in r["reason"]
        assert "cms:patching:run-id=run-a" in r["reason"]


def test_ami_names_keep_instance_and_run_ids_whatever_the_name_tag(aws, fleet, targets):
    long_named = [dict(t, name="n" * 200) for t in targets[:2]]
    results = run_with(aws, fleet, long_named, run_id="run-long", name_template="pre-patch {name} {instance_id} {run_id}").run()
    assert [r["backup_status"] for r in results] == ["verified"] * 2
    for r in results:
        assert len(r["ami_name"]) == 128 and r["ami_name"].endswith(" %s run-long" % r["instance_id"])


def test_a_run_id_of_another_landing_zone_fails_up_front_and_creates_nothing(aws, fleet, targets, run_module):
    run_with(aws, fleet, targets[:2], run_id="run-shared").run()
    aws.state.calls.reset()
    with pytest.raises(FleetError) as info:
        run_with(aws, fleet, targets[:3], run_id="run-shared", lz="other").run()
    message = str(info.value)
    assert "run ID run-shared belongs to landing zone demo, not other" in message and "nothing was created" in message
    assert "ec2:CreateImage" not in ops(aws)
    args = dict(accounts=DEMO_ACCOUNTS, lz="other", run_id="run-shared", instances=targets[:3], poll_interval=1)
    result = run_module(ami_backup_verified, args)
    assert result.failed and "belongs to landing zone demo" in result["msg"]
    assert "ec2:CreateImage" not in ops(aws)
    # Verifying that run from the other landing zone fails the same way instead of adopting demo's AMIs.
    result = run_module(ami_backup_verified, dict(args, mode="verify"))
    assert result.failed and "belongs to landing zone demo" in result["msg"]
