"""Retention decides per instance: only old, not-newest, available, unused AMIs of other runs go."""

from ansible_collections.cms.patching.plugins.module_utils._retention import decide

DAY = 86400.0
NOW = 1_800_000_000.0


def image(n, days_old, run="run-old", state="available"):
    import datetime

    created = datetime.datetime.fromtimestamp(NOW - days_old * DAY, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"ImageId": "ami-%d" % n, "State": state, "CreationDate": created, "Tags": [{"Key": "cms:patching:run-id", "Value": run}]}


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
    remove, keep = decide(images, {"keep_last": 1, "max_age_days": 30}, "run-now", NOW, {"ami-4": "lt-1 version 2"})
    reasons = {i["ImageId"]: r for i, r in keep}
    assert reasons["ami-1"] == "made by the current run"
    assert reasons["ami-2"] == "state is pending"
    assert reasons["ami-4"] == "used by launch template lt-1 version 2"
    assert ids(remove) == ["ami-3", "ami-5"]


def test_current_run_counts_as_one_of_the_newest():
    images = [image(1, 0, run="run-now"), image(2, 100)]
    remove, _keep = decide(images, {"keep_last": 1, "max_age_days": 30}, "run-now", NOW, {})
    assert ids(remove) == ["ami-2"]
