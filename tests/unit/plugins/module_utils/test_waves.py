"""Wave planning is deterministic, exhaustive and disjoint."""

from ansible_collections.cms.patching.plugins.module_utils._waves import plan_waves

FLEET = [{"instance_id": "i-%08x" % n, "name": "web-%d" % n} for n in range(20, 0, -1)]


def ids(wave):
    return [i["instance_id"] for i in wave["instances"]]


def test_canary_count_then_rest():
    plan = plan_waves(FLEET, [{"name": "canary", "count": 2}, {"name": "rest"}])
    assert [w["name"] for w in plan] == ["canary", "rest"]
    assert ids(plan[0]) == ["i-00000001", "i-00000002"]
    assert len(plan[1]["instances"]) == 18


def test_percent_rounds_up_and_takes_at_least_one():
    assert len(plan_waves(FLEET, [{"name": "c", "percent": 12}])[0]["instances"]) == 3
    assert len(plan_waves(FLEET[:3], [{"name": "c", "percent": 1}])[0]["instances"]) == 1


def test_named_wave_and_implicit_rest():
    plan = plan_waves(FLEET, [{"name": "first", "names": ["web-5", "web-7"]}, {"name": "ids", "instance_ids": ["i-00000001"]}])
    assert [w["name"] for w in plan] == ["first", "ids", "rest"]
    assert {i["name"] for i in plan[0]["instances"]} == {"web-5", "web-7"}
    assert sum(len(w["instances"]) for w in plan) == 20
    all_ids = [i for w in plan for i in ids(w)]
    assert len(all_ids) == len(set(all_ids))


def test_empty_waves_are_dropped_and_order_is_stable():
    plan = plan_waves(FLEET, [{"name": "nobody", "names": ["nope"]}, {"name": "all"}])
    assert [w["name"] for w in plan] == ["all"]
    assert plan_waves(list(reversed(FLEET)), [{"name": "all"}]) == plan
