"""Retention decides per instance: only old, not-newest, available, unused AMIs of other runs go."""

from ansible_collections.cms.patching.plugins.module_utils._retention import decide

DAY = 86400.0
NOW = 1_800_000_000.0


def image(n, days_old, run="run-old", state="available", verified=True):
    import datetime

    created = datetime.datetime.fromtimestamp(NOW - days_old * DAY, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    tags = [{"Key": "cms:patching:run-id", "Value": run}]
    if verified:
        tags.append({"Key": "cms:patching:verified-at", "Value": created})
    return {"ImageId": "ami-%d" % n, "State": state, "CreationDate": created, "Tags": tags}


def ids(pairs):
    return sorted(i["ImageId"] for i, _reason in pairs)


def test_keeps_newest_and_young_removes_the_rest():
    images = [image(1, 1), image(2, 10), image(3, 40), image(4, 50), image(5, 60)]
    remove, keep = decide(images, {"keep_last": 2, "max_age_days": 30}, "run-now", NOW, {})
    assert ids(remove) == ["ami-3", "ami-4", "ami-5"]
    assert ids(keep) == ["ami-1", "ami-2"]


def test_young_images_beyond_keep_last_stay():
    images = [image(1, 1), image(2, 2), image(3, 3)]
    remove, _keep = decide(images, {"keep_last": 1, "max_age_days": 30}, "run-now", NOW, {})
    assert remove == []


def test_current_run_pending_and_in_use_are_never_removed():
    images = [image(1, 100, run="run-now"), image(2, 100, state="pending"), image(3, 100), image(4, 100), image(5, 100)]
    remove, keep = decide(images, {"keep_last": 1, "max_age_days": 30}, "run-now", NOW, {"ami-4": "launch template lt-1 version 2"})
    reasons = {i["ImageId"]: r for i, r in keep}
    assert reasons["ami-1"] == "made by the current run"
    assert reasons["ami-2"] == "state is pending"
    assert reasons["ami-4"] == "used by launch template lt-1 version 2"
    assert ids(remove) == ["ami-3", "ami-5"]


def test_current_run_counts_as_one_of_the_newest():
    images = [image(1, 0, run="run-now"), image(2, 100)]
    remove, _keep = decide(images, {"keep_last": 1, "max_age_days": 30}, "run-now", NOW, {})
    assert ids(remove) == ["ami-2"]


def test_keep_last_counts_only_verified_amis():
    # The two newest failed verification: they are no backup, so the two verified ones behind them are the ones kept.
    images = [image(1, 40, verified=False), image(2, 50, verified=False), image(3, 60), image(4, 70), image(5, 80)]
    remove, keep = decide(images, {"keep_last": 2, "max_age_days": 30}, "run-now", NOW, {})
    assert ids(remove) == ["ami-1", "ami-2", "ami-5"]
    reasons = {i["ImageId"]: r for i, r in keep}
    assert reasons == {"ami-3": "the instance's newest verified AMI", "ami-4": "one of the newest 2 verified"}
    assert dict((i["ImageId"], r) for i, r in remove)["ami-1"] == "older than 30 days and never verified"


def test_the_newest_verified_ami_is_never_removed():
    images = [image(1, 100, verified=False), image(2, 200)]
    remove, keep = decide(images, {"keep_last": 0, "max_age_days": 1}, "run-now", NOW, {})
    assert ids(remove) == ["ami-1"] and ids(keep) == ["ami-2"]
