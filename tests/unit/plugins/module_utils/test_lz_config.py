"""Landing-zone configuration: found by name, validated once, every problem named by file and key."""

import os
import textwrap

import pytest

from ansible_collections.cms.patching.plugins.module_utils import _lz_config as lz

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
INVENTORIES = os.path.join(REPO, "inventories")

MINIMAL = """
cms_patching_landing_zone:
  accounts:
    - account_id: "123456789012"
  regions: [eu-west-1]
"""


def write_lz(root, name, text, legacy=False):
    path = root / name / "group_vars" / "all" if legacy else root / name
    path.mkdir(parents=True, exist_ok=True)
    target = path / ("landing_zone.yml" if legacy else ".landing_zone.yml")
    target.write_text(textwrap.dedent(text))
    return str(target)


def problems_of(tmp_path, text):
    write_lz(tmp_path, "lz", text)
    with pytest.raises(lz.ConfigError) as info:
        lz.load("lz", [str(tmp_path)])
    return info.value.problems


def test_shipped_landing_zones_validate():
    for name in ("demo", "example"):
        path, config = lz.load(name, [INVENTORIES])
        assert path == os.path.join(INVENTORIES, name, ".landing_zone.yml")
        assert not os.path.exists(os.path.join(INVENTORIES, name, "group_vars"))
        assert config["name"] == name
        assert config["accounts"] and config["regions"]


def test_defaults_are_filled_in(tmp_path):
    write_lz(tmp_path, "lz", MINIMAL)
    _path, config = lz.load("lz", [str(tmp_path)])
    assert config["targets"]["instance_states"] == ["running"]
    assert config["backup"]["no_reboot"] is True
    assert config["backup"]["retention"] == {"keep_last": 3, "max_age_days": 30}
    assert config["patching"]["operation"] == "Install"
    assert config["patching"]["waves"] == [{"name": "all"}]
    assert config["role_session_name"] == "cms-patching"


def test_unknown_lz_names_the_known_ones(tmp_path):
    write_lz(tmp_path, "alpha", MINIMAL)
    write_lz(tmp_path, "beta", MINIMAL)
    with pytest.raises(lz.ConfigError) as info:
        lz.load("prod", [str(tmp_path)])
    assert "unknown landing zone 'prod'" in str(info.value)
    assert "alpha, beta" in str(info.value)


def test_missing_lz_says_how_to_pass_one(tmp_path):
    write_lz(tmp_path, "alpha", MINIMAL)
    with pytest.raises(lz.ConfigError) as info:
        lz.load("", [str(tmp_path)])
    assert "-e lz=<name>" in str(info.value) and "alpha" in str(info.value)


def test_first_search_path_wins(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_lz(first, "lz", MINIMAL)
    write_lz(second, "lz", MINIMAL.replace("eu-west-1", "us-east-1"))
    _path, config = lz.load("lz", [str(first), str(second)])
    assert config["regions"] == ["eu-west-1"]


def test_every_problem_names_file_and_key(tmp_path):
    problems = problems_of(
        tmp_path,
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: 123456789012
            - account_id: "210987654321"
              role_arn: arn:aws:iam::999999999999:role/x
          regions: [eu-wset]
          backup:
            retension: {}
            wait_timeout: "30"
          patching:
            operation: install
        """,
    )
    text = "\n".join(problems)
    assert all(p.startswith(str(tmp_path)) for p in problems)
    assert "accounts[0].account_id: expected a string, got an integer" in text
    assert "accounts[1].role_arn:" in text and "belongs to account 999999999999" in text
    assert "regions[0]: 'eu-wset' is not an AWS region name" in text and "did you mean 'eu-west-" in text
    assert "backup.retension: unknown key (did you mean 'retention'?)" in text
    assert "backup.wait_timeout: expected an integer, got a string" in text
    assert "patching.operation: 'install' is not one of Install, Scan" in text
    assert len(problems) == 6


def test_required_keys_and_empty_lists(tmp_path):
    problems = problems_of(tmp_path, "cms_patching_landing_zone:\n  accounts: []\n")
    assert any("accounts: must not be empty" in p for p in problems)
    assert any("regions: required key is missing" in p for p in problems)


def test_wrong_top_level(tmp_path):
    problems = problems_of(tmp_path, "landing_zone:\n  accounts: []\n")
    assert "expected a mapping with the key 'cms_patching_landing_zone'" in problems[0]


def test_duplicate_keys_are_refused(tmp_path):
    problems = problems_of(tmp_path, MINIMAL + "  regions: [us-east-1]\n")
    assert "not valid YAML" in problems[0] and "duplicate key 'regions'" in problems[0]


def test_malformed_yaml(tmp_path):
    problems = problems_of(tmp_path, "cms_patching_landing_zone: [unclosed\n")
    assert "not valid YAML" in problems[0]


def test_cross_checks(tmp_path):
    problems = problems_of(
        tmp_path,
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: "123456789012"
              external_id: secret-value
            - account_id: "123456789012"
          regions: [eu-west-1, eu-west-1]
          patching:
            waves:
              - {name: a, count: 1, percent: 5}
              - {name: a}
            output_s3_prefix: logs/
        """,
    )
    text = "\n".join(problems)
    assert "an external ID needs a role_arn" in text
    assert "account 123456789012 is listed twice" in text
    assert "a region is listed twice" in text
    assert "choose one of percent, count, instance_ids, names" in text
    assert "wave names must be unique" in text
    assert "output_s3_prefix: needs output_s3_bucket" in text
    assert "secret-value" not in text


def test_redacted_masks_external_ids():
    _path, config = lz.load("demo", [INVENTORIES])
    shown = lz.redacted(config)
    assert all(a.get("external_id") in (None, "********") for a in shown["accounts"])
    assert any(a.get("external_id") == "cms-demo" for a in config["accounts"])


def test_duration_seconds_per_account(tmp_path):
    write_lz(
        tmp_path,
        "ok",
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: "210987654321"
              role_arn: arn:aws:iam::210987654321:role/R
              duration_seconds: 900
          regions: [eu-west-1]
        """,
    )
    _path, config = lz.load("ok", [str(tmp_path)])
    assert config["accounts"][0]["duration_seconds"] == 900
    problems = problems_of(
        tmp_path,
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: "210987654321"
              role_arn: arn:aws:iam::210987654321:role/R
              duration_seconds: 600
            - account_id: "310987654321"
              role_arn: arn:aws:iam::310987654321:role/R
              duration_seconds: 50000
            - account_id: "123456789012"
              duration_seconds: 3600
          regions: [eu-west-1]
        """,
    )
    text = "\n".join(problems)
    assert "accounts[0].duration_seconds: 600 is below the minimum 900" in text
    assert "accounts[1].duration_seconds: 50000 is above the maximum 43200" in text
    assert "accounts[2].duration_seconds: only an assumed role has a session duration" in text


def test_newer_partitions_regions_are_accepted(tmp_path):
    write_lz(
        tmp_path,
        "eusc",
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: "210987654321"
              role_arn: arn:aws-eusc:iam::210987654321:role/R
          regions: [eusc-de-east-1]
        """,
    )
    _path, config = lz.load("eusc", [str(tmp_path)])
    assert config["regions"] == ["eusc-de-east-1"]


def test_role_arn_partition_must_be_the_regions_and_regions_one_partition(tmp_path):
    problems = problems_of(
        tmp_path,
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: "210987654321"
              role_arn: arn:aws:iam::210987654321:role/R
          regions: [cn-north-1]
        """,
    )
    text = "\n".join(problems)
    assert "accounts[0].role_arn: account 210987654321: role arn:aws:iam::210987654321:role/R is in partition aws" in text
    assert "region(s) cn-north-1 are in partition aws-cn" in text
    problems = problems_of(
        tmp_path / "two",
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: "210987654321"
          regions: [eu-west-1, us-gov-west-1]
        """,
    )
    assert "regions: the regions span partitions (aws: eu-west-1; aws-us-gov: us-gov-west-1)" in "\n".join(problems)


def test_an_instance_listed_twice_names_both_places(tmp_path):
    problems = problems_of(
        tmp_path,
        """
        cms_patching_landing_zone:
          accounts:
            - account_id: "123456789012"
          regions: [eu-west-1]
          patching:
            waves:
              - {name: canary, names: [web-01, web-02, web-01]}
              - {name: ids, instance_ids: [i-0123456789abcdef0]}
              - {name: web, names: [web-03, web-02]}
              - {name: more, instance_ids: [i-0123456789abcdef0]}
        """,
    )
    waves = "%s: cms_patching_landing_zone.patching.waves" % os.path.join(str(tmp_path), "lz", ".landing_zone.yml")
    assert problems == [
        "%s[0].names[2]: web-01 is listed twice, here and at cms_patching_landing_zone.patching.waves[0].names[0]; an instance belongs to one wave, once"
        % waves,
        "%s[2].names[1]: web-02 is listed twice, here and at cms_patching_landing_zone.patching.waves[0].names[1]; an instance belongs to one wave, once"
        % waves,
        "%s[3].instance_ids[0]: i-0123456789abcdef0 is listed twice, here and at cms_patching_landing_zone.patching.waves[1].instance_ids[0]; "
        "an instance belongs to one wave, once" % waves,
    ]


def warnings_of(tmp_path, waves):
    path = write_lz(tmp_path, "lz", MINIMAL + "  patching:\n    waves: %s\n" % waves)
    _path, config = lz.load("lz", [str(tmp_path)])
    return path, lz.wave_warnings(config, path)


def test_waves_left_with_nothing_are_a_warning(tmp_path):
    path, warnings = warnings_of(
        tmp_path, "[{name: a, percent: 60}, {name: b, percent: 40}, {name: c, count: 1}, {name: d, names: [web-01]}, {name: e}, {name: f, percent: 5}]"
    )
    waves = "%s: cms_patching_landing_zone.patching.waves" % path
    assert warnings == [
        "%s[2] (wave 'c'): gets no instance: the percent waves before it already take 100%% of the instances" % waves,
        "%s[4] (wave 'e'): gets no instance: the percent waves before it already take 100%% of the instances" % waves,
        "%s[5] (wave 'f'): gets no instance: %s[4] (wave 'e') before it takes every instance left" % (waves, "cms_patching_landing_zone.patching.waves"),
    ]


def test_waves_that_all_get_something_give_no_warning(tmp_path):
    assert warnings_of(tmp_path, "[{name: canary, percent: 5}, {name: web, names: [web-1]}, {name: half, percent: 50}, {name: rest}]")[1] == []
    _path, config = lz.load("example", [INVENTORIES])
    assert lz.wave_warnings(config, "example") == []


@pytest.mark.parametrize("name", ["..", "../x", "x/..", "a/b", "a\\b", ".hidden", ".", "prod.eu", "pr od", "prod\n", "/etc"])
def test_a_landing_zone_name_is_a_plain_name(tmp_path, name):
    # A valid landing zone one directory above the search path: '..' used to load it.
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "landing_zone.yml").write_text(textwrap.dedent(MINIMAL))
    (tmp_path / "zones").mkdir()
    with pytest.raises(lz.ConfigError) as info:
        lz.load(name, [str(tmp_path / "zones")])
    assert str(info.value) == lz.lz_name_error(name)
    assert "is not valid: a landing zone is a plain directory name" in str(info.value) and "e.g. -e lz=prod" in str(info.value)


def test_valid_landing_zone_names():
    assert all(lz.lz_name_error(n) is None for n in ("prod", "prod-eu_1", "DEMO"))


def test_the_old_place_in_group_vars_is_still_read_with_a_deprecation_note(tmp_path):
    old = write_lz(tmp_path, "legacy", MINIMAL, legacy=True)
    path, config = lz.load("legacy", [str(tmp_path)])
    assert path == old and config["name"] == "legacy"
    assert lz.known_landing_zones([str(tmp_path)]) == ["legacy"]
    note = lz.deprecation(path)
    assert note.startswith(old + ": landing zones in <lz>/group_vars/all/landing_zone.yml are deprecated")
    assert note.endswith("move it to %s" % os.path.join(str(tmp_path), "legacy", ".landing_zone.yml"))


def test_the_new_place_wins_over_the_old_one_in_the_same_directory(tmp_path):
    write_lz(tmp_path, "prod", MINIMAL, legacy=True)
    new = write_lz(tmp_path, "prod", MINIMAL)
    assert lz.find_config("prod", [str(tmp_path)]) == new and lz.deprecation(new) is None


ORG_LZ = """
cms_patching_landing_zone:
  organization:
    ous: [ou-ab12-cdef3456, r-ab12]
    role_name: CmsPatchingRole
    external_id: org-secret
    include_tags: {Env: [prod, staging]}
    exclude_tags: {Patching: manual}
  regions: [eu-west-1]
"""


def test_an_organization_source_replaces_the_account_list(tmp_path):
    write_lz(tmp_path, "org", ORG_LZ)
    _path, config = lz.load("org", [str(tmp_path)])
    assert config["accounts"] == []
    org = config["organization"]
    assert org["ous"] == ["ou-ab12-cdef3456", "r-ab12"] and org["recursive"] is True and org["role_name"] == "CmsPatchingRole"
    assert org["include_tags"] == {"Env": ["prod", "staging"]} and org["exclude_accounts"] == [] and org["management_role_arn"] is None
    assert lz.redacted(config)["organization"]["external_id"] == "********" and config["organization"]["external_id"] == "org-secret"


def test_without_organization_there_is_none(tmp_path):
    write_lz(tmp_path, "lz", MINIMAL)
    assert lz.load("lz", [str(tmp_path)])[1]["organization"] is None


def test_organization_problems_name_file_and_key(tmp_path):
    problems = problems_of(
        tmp_path,
        """
        cms_patching_landing_zone:
          organization:
            ous: [ou-AB12-cdef3456, "ou-ab12-cdef3456", "ou-ab12-cdef3456", r-1, 123456789012]
            role_name: role/CmsPatchingRole
            duration_seconds: 60
            exclude_accounts: ["12345"]
            management_role_arn: arn:aws-cn:iam::123456789012:role/OrgReader
            recursve: false
          regions: [eu-west-1]
        """,
    )
    path = str(tmp_path / "lz" / ".landing_zone.yml")
    assert all(p.startswith(path + ": ") for p in problems)
    text = "\n".join(problems)
    key = "cms_patching_landing_zone.organization"
    assert "%s.ous[0]: 'ou-AB12-cdef3456' is not an OU or root ID" % key in text
    assert "%s.ous[3]: 'r-1' is not an OU or root ID" % key in text
    assert "%s.ous[4]: expected a string, got an integer" % key in text
    assert "%s.ous: an OU is listed twice" % key in text
    assert "%s.role_name: 'role/CmsPatchingRole' is not an IAM role name" % key in text
    assert "%s.duration_seconds: 60 is below the minimum 900" % key in text
    assert "%s.exclude_accounts[0]:" % key in text
    assert "%s.management_role_arn: account 123456789012: role arn:aws-cn:iam::123456789012:role/OrgReader is in partition aws-cn" % key in text
    assert "%s.recursve: unknown key (did you mean 'recursive'?)" % key in text


def test_organization_needs_ous_and_a_role_name(tmp_path):
    problems = problems_of(tmp_path, "cms_patching_landing_zone:\n  organization: {}\n  regions: [eu-west-1]\n")
    assert any("organization.ous: required key is missing" in p for p in problems)
    assert any("organization.role_name: required key is missing" in p for p in problems)
    problems = problems_of(tmp_path / "again", "cms_patching_landing_zone:\n  organization: {ous: [], role_name: R}\n  regions: [eu-west-1]\n")
    assert any("organization.ous: must not be empty" in p for p in problems)


def test_neither_accounts_nor_organization(tmp_path):
    problems = problems_of(tmp_path, "cms_patching_landing_zone:\n  regions: [eu-west-1]\n")
    assert any("accounts: must not be empty: list the accounts, or give an organization source" in p for p in problems)
