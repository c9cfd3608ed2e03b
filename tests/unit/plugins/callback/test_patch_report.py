"""The report callback: rows collected as results arrive, written after each one, failures land on their rows."""

import csv

import pytest

from ansible_collections.cms.patching.plugins.callback.patch_report import CallbackModule


class Display:
    verbosity = 0

    def __init__(self):
        self.lines = []

    def display(self, msg, *args, **kwargs):
        self.lines.append(msg)

    def banner(self, msg, *args, **kwargs):
        self.lines.append(msg)

    def warning(self, msg, *args, **kwargs):
        self.lines.append("WARNING " + msg)


class Task:
    def __init__(self, action):
        self.action = self.resolved_action = action


class Host:
    def __init__(self, name, instance_id=None):
        self.name = name
        self.vars = {"instance_id": instance_id} if instance_id else {}

    def get_name(self):
        return self.name


class Result:
    def __init__(self, action, result, host="localhost", instance_id=None):
        self._task = Task(action)
        self._result = result
        self._host = Host(host, instance_id)


SCAN = {
    "instances": [
        {"instance_id": "i-1", "account_id": "111111111111", "region": "eu-west-1", "name": "web-1", "target": True, "state": "running"},
        {"instance_id": "i-2", "account_id": "111111111111", "region": "eu-west-1", "name": "web-2", "target": True, "state": "running"},
        {"instance_id": "i-3", "account_id": "111111111111", "region": "eu-west-1", "name": "db-1", "target": False, "skip_reason": "stopped"},
    ]
}


@pytest.fixture
def callback(tmp_path):
    cb = CallbackModule(display=Display())
    options = {"dir": str(tmp_path), "file_name": "{lz}-{run_id}.csv"}
    cb.get_option = options.get
    return cb


def rows(path):
    with open(path, encoding="utf-8") as handle:
        return {r["instance_id"]: r for r in csv.DictReader(handle)}


def config(cb, report=None):
    cb.v2_runner_on_ok(Result("cms.patching.landing_zone", {"lz": "demo", "run_id": "r1", "config": {"report": report or {}}}))


def test_rows_are_written_as_soon_as_discovery_reports(callback, tmp_path):
    config(callback)
    assert not list(tmp_path.iterdir())  # nothing seen yet: no file
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    written = rows(tmp_path / "demo-r1.csv")
    assert sorted(written) == ["i-1", "i-2", "i-3"] and written["i-3"]["skip_reason"] == "stopped"


def test_a_failed_phase_module_marks_every_instance_it_was_given(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    failure = {"failed": True, "msg": "could not assume role", "invocation": {"module_args": {"instances": SCAN["instances"][:2]}}}
    callback.v2_runner_on_failed(Result("cms.patching.ami_backup_verified", failure))
    written = rows(tmp_path / "demo-r1.csv")
    assert written["i-1"]["error"] == "ami_backup_verified: could not assume role" and written["i-2"]["error"]
    assert written["i-3"]["error"] == ""


def test_a_failed_host_task_lands_on_that_instance(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_runner_on_failed(Result("ansible.builtin.fail", {"failed": True, "msg": "i-2: no verified backup"}, host="web-2", instance_id="i-2"))
    assert rows(tmp_path / "demo-r1.csv")["i-2"]["error"] == "i-2: no verified backup"


def test_progress_is_displayed_and_collected_on_each_retry(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    partial = {"instances": [{"instance_id": "i-1", "backup_status": "verified", "ami_id": "ami-1"}], "progress": {"line": "backup round 2: 1 verified"}}
    callback.v2_runner_retry(Result("cms.patching.ami_backup_verified", partial))
    assert "cms.patching backup round 2: 1 verified" in callback._display.lines
    assert rows(tmp_path / "demo-r1.csv")["i-1"]["ami_id"] == "ami-1"


def test_stats_print_summary_and_path(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_playbook_on_stats(None)
    assert "demo run r1: 3 seen, 2 targets; backup: 1 skipped, 2 not_run; patch: 1 skipped, 2 not_run; 0 with errors" in callback._display.lines
    assert "CSV report: %s" % (tmp_path / "demo-r1.csv") in callback._display.lines


def test_landing_zone_report_settings_win(callback, tmp_path):
    config(callback, report={"dir": str(tmp_path / "lz"), "file_name": "patch-{run_id}.csv"})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    assert (tmp_path / "lz" / "patch-r1.csv").is_file()


def test_unwritable_directory_warns_instead_of_failing_the_run(callback, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config(callback, report={"dir": str(blocker / "sub")})
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    assert any(line.startswith("WARNING cms.patching.patch_report: could not write") for line in callback._display.lines)
