"""Where the callback writes the report: precedence, the JSON beside the CSV, S3 after every phase, the job's artifacts,
and never a lost CSV for a bad file name."""

import csv
import json

import boto3
import pytest
from test_patch_report import SCAN, Display, Playbook, Result

from ansible_collections.cms.patching.plugins.callback.patch_report import CallbackModule
from ansible_collections.cms.patching.plugins.module_utils import _report_dest as dest


class VariableManager:
    def __init__(self, extra_vars):
        self.extra_vars = extra_vars


class Play:
    def __init__(self, extra_vars=None):
        self._vm = VariableManager(extra_vars or {})

    def get_variable_manager(self):
        return self._vm


@pytest.fixture
def callback(tmp_path, monkeypatch):
    for name in list(dest.ENV_VARS.values()) + ["AWX_ISOLATED_DATA_DIR"]:
        monkeypatch.delenv(name, raising=False)
    cb = CallbackModule(display=Display())
    options = {"dir": str(tmp_path / "default"), "file_name": "{lz}-{run_id}.csv"}
    cb.get_option = options.get
    return cb


def config(cb, report=None, settings=None, origin=None, accounts=None):
    data = {"lz": "demo", "run_id": "r1", "config": {"report": report or {}, "accounts": accounts or [{"account_id": "123456789012"}]}}
    if settings is not None:
        data["report"] = {"settings": settings, "origin": origin or {}}
    cb.v2_runner_on_ok(Result("cms.patching.landing_zone", data))


def test_the_environment_wins_over_the_landing_zone(callback, tmp_path, monkeypatch):
    monkeypatch.setenv("CMS_PATCHING_REPORT_DIR", str(tmp_path / "env"))
    config(callback, report={"dir": str(tmp_path / "lz")})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    assert (tmp_path / "env" / "demo-r1.csv").is_file() and not (tmp_path / "lz").exists()


def test_extra_vars_win_over_the_environment(callback, tmp_path, monkeypatch):
    monkeypatch.setenv("CMS_PATCHING_REPORT_DIR", str(tmp_path / "env"))
    callback.v2_playbook_on_play_start(Play({"cms_patching_report_dir": str(tmp_path / "extra"), "lz": "demo"}))
    config(callback, report={"dir": str(tmp_path / "lz")})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    assert (tmp_path / "extra" / "demo-r1.csv").is_file() and not (tmp_path / "env").exists()


def test_the_config_phase_resolution_is_used_and_its_defaults_are_the_callback_options(callback, tmp_path):
    settings = {"dir": str(tmp_path / "resolved"), "file_name": "{lz}-{run_id}.csv"}
    origin = {"dir": "environment variable CMS_PATCHING_REPORT_DIR", "file_name": "default file_name"}
    callback.get_option = {"dir": "./elsewhere", "file_name": "cfg-{run_id}.csv"}.get  # ansible.cfg [cms_patching_report]
    config(callback, report={"dir": str(tmp_path / "lz")}, settings=settings, origin=origin)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    assert (tmp_path / "resolved" / "cfg-r1.csv").is_file()


def test_a_bad_file_name_never_loses_the_csv(callback, tmp_path):
    config(callback, report={"dir": str(tmp_path / "lz"), "file_name": "{lz}-{date}.csv"})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_playbook_on_stats(None)
    assert (tmp_path / "lz" / "demo-r1.csv").is_file()
    warnings = [line for line in callback._display.lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "report.file_name: unknown placeholder {date}" in warnings[0] and "{lz}-{run_id}.csv instead" in warnings[0]


def test_a_json_with_the_same_rows_sits_beside_the_csv(callback, tmp_path):
    config(callback, report={"dir": str(tmp_path)})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_playbook_on_stats(None)
    data = json.loads((tmp_path / "demo-r1.json").read_text())
    with open(tmp_path / "demo-r1.csv", encoding="utf-8") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [i["instance_id"] for i in data["instances"]] == [r["instance_id"] for r in csv_rows] == ["i-1", "i-2", "i-3"]
    assert data["instances"][0]["target"] is True and data["summary"]["targets"] == 2 and (data["lz"], data["run_id"]) == ("demo", "r1")
    assert "JSON report: %s" % (tmp_path / "demo-r1.json") in callback._display.lines


def test_the_report_is_copied_into_the_runner_artifacts(callback, tmp_path, monkeypatch):
    monkeypatch.setenv("AWX_ISOLATED_DATA_DIR", str(tmp_path / "artifacts"))
    config(callback, report={"dir": str(tmp_path / "reports")})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_playbook_on_stats(None)
    copied = tmp_path / "artifacts" / "cms_patching"
    assert (copied / "demo-r1.csv").read_text() == (tmp_path / "reports" / "demo-r1.csv").read_text()
    assert (copied / "demo-r1.json").is_file()


def _bucket(aws):
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="reports")
    return s3


def test_s3_gets_the_report_at_the_end_of_every_phase_and_of_the_run(aws, callback, tmp_path):
    s3 = _bucket(aws)
    callback.v2_playbook_on_start(Playbook(["config", "backup", "report"]))
    callback.v2_playbook_on_play_start(Play())
    config(callback, report={"dir": str(tmp_path), "s3": {"bucket": "reports", "prefix": "cms/{lz}/{run_id}"}})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    assert "Contents" not in s3.list_objects_v2(Bucket="reports")  # within a phase: local only
    callback.v2_playbook_on_play_start(Play())  # the discovery phase ended
    first = s3.get_object(Bucket="reports", Key="cms/demo/r1/demo-r1.csv")
    assert first["Body"].read().decode() == (tmp_path / "demo-r1.csv").read_text() and first["ServerSideEncryption"] == "AES256"
    backup = {"instances": [{"instance_id": "i-1", "backup_status": "verified", "ami_id": "ami-1"}]}
    callback.v2_runner_on_ok(Result("cms.patching.ami_backup_verified", backup))
    callback.v2_playbook_on_stats(None)
    final = s3.get_object(Bucket="reports", Key="cms/demo/r1/demo-r1.csv")["Body"].read().decode()
    assert "ami-1" in final and final == (tmp_path / "demo-r1.csv").read_text()
    assert json.loads(s3.get_object(Bucket="reports", Key="cms/demo/r1/demo-r1.json")["Body"].read())["instances"][0]["ami_id"] == "ami-1"
    assert "S3 report: s3://reports/cms/demo/r1/demo-r1.csv" in callback._display.lines


def test_an_interrupted_run_still_uploads(aws, callback, tmp_path):
    s3 = _bucket(aws)
    config(callback, report={"dir": str(tmp_path), "s3": {"bucket": "reports"}})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback._at_exit()  # Ctrl-C / an AWX cancel: no stats
    body = s3.get_object(Bucket="reports", Key="demo-r1.csv")["Body"].read().decode()
    assert "the run was interrupted" in body


def test_a_failed_upload_warns_and_keeps_the_local_report(aws, callback, tmp_path):
    config(callback, report={"dir": str(tmp_path), "s3": {"bucket": "missing-bucket"}})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_playbook_on_stats(None)
    assert (tmp_path / "demo-r1.csv").is_file()
    assert any("could not upload the report to s3://missing-bucket/demo-r1.csv: NoSuchBucket" in line for line in callback._display.lines)
    assert not any(line.startswith("S3 report:") for line in callback._display.lines)


def test_the_censored_result_of_the_no_log_config_task_changes_nothing(callback, tmp_path):
    config(callback, report={"dir": str(tmp_path / "lz")}, accounts=[{"account_id": "210987654321"}])
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result", "changed": False}
    callback.v2_runner_on_ok(Result("cms.patching.landing_zone", censored))
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    assert (tmp_path / "lz" / "demo-r1.csv").is_file()
    assert callback._accounts == [{"account_id": "210987654321"}]


def test_an_awx_job_writes_its_report_under_its_job_id_and_says_who_ran_retention(callback, tmp_path):
    """The config phase resolved the AWX job ID (report.job): the CSV and JSON carry it, so a run's slices never share a
    name; the retention claim (won or lost) is the JSON's run-level retention and a line of the final summary."""
    settings = {"dir": str(tmp_path), "file_name": "{lz}-{run_id}.csv"}
    data = {"lz": "demo", "run_id": "r1", "config": {"report": {}, "accounts": [{"account_id": "123456789012"}]}}
    data["report"] = {"settings": settings, "origin": {"dir": "extra var", "file_name": "extra var"}, "job": "802", "slice": None}
    callback.v2_runner_on_ok(Result("cms.patching.landing_zone", data))
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    claim = {"won": False, "status": "held", "held_by": "AWX job 801", "message": "retention of run r1 was claimed by AWX job 801 3s ago"}
    retain = {"mode": "retain", "claim": claim, "summary": {"removed": 0, "kept": 0, "orphan_snapshots": 0}, "instances": []}
    callback.v2_runner_on_ok(Result("cms.patching.ami_backup_verified", retain))
    callback.v2_playbook_on_stats(None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-r1-job802.csv", "demo-r1-job802.json"]
    document = json.loads((tmp_path / "demo-r1-job802.json").read_text())
    # A job that lost the claim ran no retention: no counts of its own.
    assert document["retention"] == claim
    assert "Retention: retention of run r1 was claimed by AWX job 801 3s ago" in callback._display.lines
