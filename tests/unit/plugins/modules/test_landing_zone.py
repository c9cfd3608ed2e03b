"""The landing_zone module: plain landing-zone names only, configuration warnings returned and shown."""

import textwrap

import pytest

from ansible_collections.cms.patching.plugins.modules import landing_zone

CONFIG = """
cms_patching_landing_zone:
  accounts:
    - account_id: "123456789012"
  regions: [eu-west-1]
  patching:
    waves:
      - {name: everything}
      - {name: later, percent: 10}
"""


def write(path, text):
    path.mkdir(parents=True)
    (path / "landing_zone.yml").write_text(textwrap.dedent(text))


def test_dot_dot_is_refused_before_the_file_above_the_search_path_is_read(tmp_path, run_module):
    write(tmp_path / "group_vars" / "all", CONFIG)
    write(tmp_path / "zones" / "prod" / "group_vars" / "all", CONFIG)
    result = run_module(landing_zone, {"name": "..", "search_paths": [str(tmp_path / "zones")]})
    assert result.failed
    assert result["msg"].startswith("landing zone name '..' is not valid: a landing zone is a plain directory name")
    assert result["msg"].endswith("(known landing zones: prod)")
    assert "config" not in result


def test_a_wave_that_gets_nothing_is_a_warning_not_an_error(tmp_path, run_module):
    write(tmp_path / "prod" / "group_vars" / "all", CONFIG)
    result = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)]})
    assert not result.failed
    expected = [
        "%s: cms_patching_landing_zone.patching.waves[1] (wave 'later'): gets no instance: cms_patching_landing_zone.patching.waves[0] "
        "(wave 'everything') before it takes every instance left" % result["file"]
    ]
    assert result["config_warnings"] == expected
    # ansible-core 2.19 wraps module warnings in events; Ansible prints their msg as [WARNING].
    assert [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]] == expected


BASE = """
cms_patching_landing_zone:
  accounts:
    - account_id: "123456789012"
  regions: [eu-west-1]
"""


def test_report_destinations_follow_extra_vars_then_environment_then_landing_zone(tmp_path, run_module, monkeypatch):
    write(tmp_path / "prod" / "group_vars" / "all", BASE + "  report:\n    dir: /lz\n    s3: {bucket: lz-bucket, prefix: '{lz}/{run_id}'}\n")
    monkeypatch.setenv("CMS_PATCHING_REPORT_DIR", "/env")
    monkeypatch.setenv("CMS_PATCHING_REPORT_FILE", "env-{run_id}.csv")
    args = {"name": "prod", "search_paths": [str(tmp_path)], "run_id": "20261127T100000Z-abc123"}
    args["report_overrides"] = {"cms_patching_report_file_name": "x-{lz}.csv"}
    result = run_module(landing_zone, args)
    assert not result.failed, result
    assert result["report"]["csv"] == "/env/x-prod.csv" and result["report"]["json"] == "/env/x-prod.json"
    assert result["report"]["s3_csv"] == "s3://lz-bucket/prod/20261127T100000Z-abc123/x-prod.csv"
    assert result["report"]["origin"]["dir"] == "environment variable CMS_PATCHING_REPORT_DIR"


@pytest.mark.parametrize(
    "lz_report, overrides, expected",
    [
        (
            "  report:\n    file_name: '{lz}-{when}.csv'\n",
            {},
            "%s: cms_patching_landing_zone.report.file_name: unknown placeholder {when} (known: {lz}, {run_id}, {slice}, {job})",
        ),
        ("", {"cms_patching_report_file_name": "{oops}.csv"}, "extra var cms_patching_report_file_name: unknown placeholder {oops}"),
        ("  backup:\n    name_template: 'pre-{instance}'\n", {}, "%s: cms_patching_landing_zone.backup.name_template: unknown placeholder {instance}"),
        ("  backup:\n    description_template: 'x {'\n", {}, "%s: cms_patching_landing_zone.backup.description_template: is not a valid template"),
        ("  report:\n    s3: {bucket: b, account_id: '999999999999'}\n", {}, "report.s3.account_id: account 999999999999 is not one of"),
    ],
)
def test_templates_are_checked_at_configuration_time(tmp_path, run_module, monkeypatch, lz_report, overrides, expected):
    monkeypatch.delenv("CMS_PATCHING_REPORT_FILE", raising=False)
    write(tmp_path / "prod" / "group_vars" / "all", BASE + lz_report)
    result = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)], "report_overrides": overrides})
    assert result.failed
    assert expected.replace("%s", str(tmp_path / "prod" / "group_vars" / "all" / "landing_zone.yml")) in result["msg"]


def test_a_disabled_report_callback_is_a_warning_with_the_line_to_add(tmp_path, run_module):
    write(tmp_path / "prod" / "group_vars" / "all", BASE)
    result = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)], "report_callback_enabled": False})
    assert not result.failed
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert len(warnings) == 1 and "'callbacks_enabled = cms.patching.patch_report'" in warnings[0] and "writes no CSV report" in warnings[0]
    enabled = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)]})
    assert not enabled.get("warnings")


SECOND = '    - {account_id: "210987654321", role_arn: "arn:aws:iam::210987654321:role/R", external_id: s3cr3t-id}\n'
SECRET = BASE.replace('    - account_id: "123456789012"\n', '    - account_id: "123456789012"\n' + SECOND)


def test_external_ids_are_masked_unless_revealed_for_a_no_log_task(tmp_path, run_module):
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod" / ".landing_zone.yml").write_text(SECRET)
    shown = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)]})
    assert "s3cr3t-id" not in str(shown) and shown["config"]["accounts"][1]["external_id"] == "********"
    revealed = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)], "reveal_external_ids": True})
    assert revealed["config"]["accounts"][1]["external_id"] == "s3cr3t-id"


def test_the_old_place_is_deprecated_once_not_by_the_revealing_task(tmp_path, run_module):
    write(tmp_path / "prod" / "group_vars" / "all", BASE)
    shown = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)]})
    messages = [d["event"]["msg"] if isinstance(d.get("event"), dict) else d.get("msg") for d in shown["deprecations"]]
    assert len(messages) == 1 and "group_vars/all/landing_zone.yml are deprecated" in messages[0] and "prod/.landing_zone.yml" in messages[0]
    revealed = run_module(landing_zone, {"name": "prod", "search_paths": [str(tmp_path)], "reveal_external_ids": True})
    assert not revealed.get("deprecations") and not revealed.get("warnings")


def test_a_sliced_job_names_its_report_with_its_slice_number(tmp_path, run_module, monkeypatch):
    monkeypatch.delenv("CMS_PATCHING_REPORT_FILE", raising=False)
    monkeypatch.delenv("CMS_PATCHING_REPORT_DIR", raising=False)
    write(tmp_path / "prod" / "group_vars" / "all", BASE + "  report:\n    dir: /r\n    s3: {bucket: b, prefix: 'runs/{lz}/{run_id}'}\n")
    args = {"name": "prod", "search_paths": [str(tmp_path)], "run_id": "20261127-awx777"}
    # Not sliced: the name is the one it always was, and no slice is returned.
    plain = run_module(landing_zone, args)
    assert (plain["report"]["csv"], plain["report"]["slice"]) == ("/r/prod-20261127-awx777.csv", None)
    # Slice 2 of 3: the default name gains -slice2; the run's prefix is the same for every slice.
    second = run_module(landing_zone, dict(args, slice_number=2, slice_count=3))
    assert (second["report"]["csv"], second["report"]["json"], second["report"]["slice"]) == (
        "/r/prod-20261127-awx777-slice2.csv",
        "/r/prod-20261127-awx777-slice2.json",
        2,
    )
    assert second["report"]["s3_csv"] == "s3://b/runs/prod/20261127-awx777/prod-20261127-awx777-slice2.csv"
    # A custom name places {slice} itself; one without it gains -slice<N> so slices never overwrite each other.
    custom = run_module(landing_zone, dict(args, slice_number=3, slice_count=3, report_overrides={"cms_patching_report_file_name": "s{slice}-{lz}.csv"}))
    assert custom["report"]["csv"] == "/r/s3-prod.csv"
    fixed = run_module(landing_zone, dict(args, slice_number=3, slice_count=3, report_overrides={"cms_patching_report_file_name": "patch.csv"}))
    assert fixed["report"]["csv"] == "/r/patch-slice3.csv"
    # A slice that is not one of the count is a configuration error naming the extra vars.
    bad = run_module(landing_zone, dict(args, slice_number=4, slice_count=3))
    assert bad.failed and "cms_patching_slice_number" in bad["msg"] and "4 of 3" in bad["msg"]


def test_an_awx_job_names_its_report_with_its_job_id(tmp_path, run_module, monkeypatch):
    """AWX gives every job (every slice of a sliced job template too) its own awx_job_id and no slice number: the job ID
    names the report, so the slices of one run (one run ID, one S3 prefix) never overwrite each other's report."""
    monkeypatch.delenv("CMS_PATCHING_REPORT_FILE", raising=False)
    monkeypatch.delenv("CMS_PATCHING_REPORT_DIR", raising=False)
    write(tmp_path / "prod" / "group_vars" / "all", BASE + "  report:\n    dir: /r\n    s3: {bucket: b, prefix: 'runs/{lz}/{run_id}'}\n")
    args = {"name": "prod", "search_paths": [str(tmp_path)], "run_id": "20261127-awx777"}
    slices = [run_module(landing_zone, dict(args, job_id=str(job)))["report"] for job in (801, 802, 803)]
    assert [r["csv"] for r in slices] == ["/r/prod-20261127-awx777-job%d.csv" % job for job in (801, 802, 803)]
    assert [r["s3_json"] for r in slices] == ["s3://b/runs/prod/20261127-awx777/prod-20261127-awx777-job%d.json" % job for job in (801, 802, 803)]
    assert [r["job"] for r in slices] == ["801", "802", "803"]
    # A slice number given as well (the same for every slice: AWX passes the job template's extra vars to all) changes nothing.
    both = run_module(landing_zone, dict(args, job_id="802", slice_number=1, slice_count=3))
    assert both["report"]["csv"] == "/r/prod-20261127-awx777-job802.csv"
    # {job} places the ID itself; a name with only {slice} still gains the job ID (the slice number would collide).
    placed = run_module(landing_zone, dict(args, job_id="802", report_overrides={"cms_patching_report_file_name": "{lz}-awx{job}.csv"}))
    assert placed["report"]["csv"] == "/r/prod-awx802.csv"
    own_slice = {"cms_patching_report_file_name": "s{slice}.csv"}
    sliced = run_module(landing_zone, dict(args, job_id="802", slice_number=1, slice_count=3, report_overrides=own_slice))
    assert sliced["report"]["csv"] == "/r/s1-job802.csv"
    # Outside AWX the name stays as it always was; {job} says local.
    local = run_module(landing_zone, dict(args, report_overrides={"cms_patching_report_file_name": "{lz}-{job}.csv"}))
    assert (local["report"]["csv"], local["report"]["job"]) == ("/r/prod-local.csv", None)
