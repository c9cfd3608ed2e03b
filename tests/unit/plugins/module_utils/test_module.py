"""The shared module plumbing: per-account options (duration_seconds), region notes."""

from ansible_collections.cms.patching.plugins.module_utils import _module
from conftest import DEMO_ACCOUNTS, DEMO_REGIONS

ROLE = "arn:aws:iam::210987654321:role/R"


def test_duration_seconds_is_an_account_option_checked_against_assume_roles_range():
    assert _module.ACCOUNT_OPTIONS["duration_seconds"] == {"type": "int"}
    accounts = [
        {"account_id": "210987654321", "role_arn": ROLE, "duration_seconds": 900},
        {"account_id": "310987654321", "role_arn": "arn:aws:iam::310987654321:role/R", "duration_seconds": 899},
        {"account_id": "410987654321", "role_arn": "arn:aws:iam::410987654321:role/R", "duration_seconds": 43201},
        {"account_id": "123456789012", "duration_seconds": 3600},
    ]
    problems = _module.account_problems(accounts)
    assert len(problems) == 3
    assert problems[0].startswith("accounts[1].duration_seconds: 899 is not a role session duration: expected seconds from 900 to 43200")
    assert "at most 3600 when the caller is itself a role session" in problems[0]
    assert problems[1].startswith("accounts[2].duration_seconds: 43201")
    assert problems[2] == "accounts[3].duration_seconds: only an assumed role has a session duration; give a role_arn or drop it"


def test_region_problems_name_the_bad_value_and_accept_new_partitions():
    assert _module.region_problems(["eusc-de-east-1", "us-isob-east-1", "eu-west-1"]) == []
    problems = _module.region_problems(["eu-west-1", "eu_west_1"])
    assert len(problems) == 1 and problems[0].startswith("regions[1]: 'eu_west_1' is not an AWS region name")


def test_regions_accepted_only_by_pattern_get_a_warning():
    notes = _module.region_notes({"regions": ["eu-west-1", "eu-wset-1"], "instances": [{"region": "eu-wset-1"}, {"region": "us-east-1"}]})
    assert len(notes) == 1 and "'eu-wset-1' is not one botocore names" in notes[0] and "did you mean 'eu-west-1'?" in notes[0]


def test_a_module_accepts_duration_seconds_per_account(demo, run_module):
    from ansible_collections.cms.patching.plugins.modules import ec2_patch_scan

    accounts = [DEMO_ACCOUNTS[0], dict(DEMO_ACCOUNTS[1], duration_seconds=900)]
    result = run_module(ec2_patch_scan, dict(accounts=accounts, regions=DEMO_REGIONS, filters={"tag:Environment": "demo"}))
    assert not result.failed, result.get("msg")
    assert result["api_calls"]["calls"]["sts:AssumeRole"] == 1
    assert {i["account_id"] for i in result["instances"]} == {a["account_id"] for a in DEMO_ACCOUNTS}


def test_doc_fragment_parses_and_documents_every_account_option_with_its_type():
    import yaml

    from ansible_collections.cms.patching.plugins.doc_fragments.fleet import ModuleDocFragment

    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    documented = options["accounts"]["suboptions"]
    assert set(documented) == set(_module.ACCOUNT_OPTIONS)
    assert {k: d["type"] for k, d in documented.items()} == {k: o["type"] for k, o in _module.ACCOUNT_OPTIONS.items()}
    assert set(options) == set(_module.FLEET_ARGUMENT_SPEC)
