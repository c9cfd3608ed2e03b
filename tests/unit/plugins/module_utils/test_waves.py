"""Wave planning is deterministic, exhaustive and disjoint."""

from ansible_collections.cms.patching.plugins.module_utils._waves import check_waves, plan_lines, plan_waves

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


def test_a_named_wave_keeps_its_instances_when_a_percent_wave_comes_first():
    # The canary takes 10% of the fleet; web-1 and web-2 are named by a later wave and stay reserved for it.
    plan = plan_waves(FLEET, [{"name": "canary", "percent": 10}, {"name": "web", "names": ["web-1", "web-2"]}, {"name": "rest"}])
    assert [w["name"] for w in plan] == ["canary", "web", "rest"]
    assert ids(plan[0]) == ["i-00000003", "i-00000004"]
    assert {i["name"] for i in plan[1]["instances"]} == {"web-1", "web-2"}
    assert len(plan[2]["instances"]) == 16


def test_a_catch_all_wave_leaves_the_named_ones_to_their_wave():
    plan = plan_waves(FLEET, [{"name": "most", "count": 25}, {"name": "last", "instance_ids": ["i-00000007"]}])
    assert [w["name"] for w in plan] == ["most", "last"]
    assert "i-00000007" not in ids(plan[0]) and ids(plan[1]) == ["i-00000007"]


SCAN = [dict(i, target=True) for i in FLEET] + [
    {"instance_id": "i-000000ff", "name": "legacy-01", "target": False, "skip_reason": "excluded by tag Patch=never"},
]


def test_a_misspelt_name_is_a_problem_with_the_closest_targets():
    problems, warnings = check_waves(SCAN, [{"name": "canary", "names": ["web-1", "web-01"]}, {"name": "rest"}])
    assert problems == [
        "cms_patching_landing_zone.patching.waves[0] (wave 'canary').names: no target has the name web-01 (did you mean web-1, web-20 or web-19?)"
    ]
    assert warnings == []


def test_a_wave_naming_only_unknown_instances_is_a_problem():
    problems, _warnings = check_waves(SCAN, [{"name": "canary", "names": ["nope"]}, {"name": "ids", "instance_ids": ["i-00000015", "i-00000002"]}])
    assert len(problems) == 2
    assert problems[0] == "cms_patching_landing_zone.patching.waves[0] (wave 'canary').names: no target has the name nope"
    assert problems[1].startswith("cms_patching_landing_zone.patching.waves[1] (wave 'ids').instance_ids: no target has the instance ID i-00000015")
    assert "did you mean i-00000014" in problems[1]


def test_a_named_instance_that_is_not_a_target_says_why():
    problems, _warnings = check_waves(SCAN, [{"name": "canary", "names": ["legacy-01"]}])
    assert problems == ["cms_patching_landing_zone.patching.waves[0] (wave 'canary').names: legacy-01 is not a target (excluded by tag Patch=never)"]


def test_one_instance_by_name_in_one_wave_and_by_id_in_another_is_a_problem():
    problems, _warnings = check_waves(SCAN, [{"name": "a", "names": ["web-3"]}, {"name": "b", "instance_ids": ["i-00000003", "i-00000004"]}])
    assert problems == [
        "cms_patching_landing_zone.patching.waves[1] (wave 'b').instance_ids: i-00000003 (web-3) is already in "
        "cms_patching_landing_zone.patching.waves[0] (wave 'a'); an instance belongs to one wave"
    ]


def test_a_count_wave_that_gets_nothing_is_a_warning():
    problems, warnings = check_waves(SCAN, [{"name": "first", "count": 20}, {"name": "second", "percent": 10}, {"name": "web", "names": ["web-5"]}])
    assert problems == []
    assert warnings == [
        "cms_patching_landing_zone.patching.waves[1] (wave 'second'): gets no instance - the waves before it and the named waves take all 20 target(s)"
    ]


def test_plan_lines_one_line_per_wave():
    plan = plan_waves(FLEET[:3] + [{"instance_id": "i-0000abcd"}], [{"name": "canary", "names": ["web-18"]}, {"name": "all"}])
    assert plan_lines(plan) == ["wave canary: 1 instance: web-18", "wave all: 3 instances: web-19, web-20, i-0000abcd"]


def test_the_implicit_last_wave_never_reuses_a_configured_name():
    plan = plan_waves(FLEET, [{"name": "rest", "count": 5}, {"name": "rest-2", "names": ["web-20"]}])
    assert [(w["name"], len(w["instances"])) for w in plan] == [("rest", 5), ("rest-2", 1), ("rest-3", 14)]
