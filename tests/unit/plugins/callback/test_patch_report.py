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


class Playbook:
    def __init__(self, plays):
        self.plays = plays

    def get_plays(self):
        return list(self.plays)


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
    callback.v2_runner_on_failed(Result("cms.patching.host_outcome", {"failed": True, "msg": "i-1: patch failed"}, host="web-1", instance_id="i-1"))
    # Written once for all the failed hosts of a task, when the next task starts: not the whole CSV again per host.
    assert rows(tmp_path / "demo-r1.csv")["i-2"]["error"] == ""
    callback.v2_playbook_on_task_start(None, is_conditional=False)
    written = rows(tmp_path / "demo-r1.csv")
    assert written["i-2"]["error"] == "i-2: no verified backup" and written["i-1"]["error"] == "i-1: patch failed"


def test_host_failures_of_the_last_task_are_written_when_the_run_ends(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_runner_on_failed(Result("cms.patching.host_outcome", {"failed": True, "msg": "i-2: no verified backup"}, host="web-2", instance_id="i-2"))
    callback.v2_playbook_on_stats(None)
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


SCAN_ERRORS = [{"account_id": "222222222222", "region": "eu-west-1", "operation": "ec2:DescribeInstances", "error": "could not assume arn:aws:iam::2:role/r"}]


def test_a_failed_discovery_stops_the_run_and_every_target_says_why(callback, tmp_path):
    callback.v2_playbook_on_start(Playbook(["discovery", "backup", "patching"]))
    callback.v2_playbook_on_play_start("discovery")
    config(callback)
    failure = dict(SCAN, failed=True, msg="Could not scan 1 of 2 account/region pairs", errors=SCAN_ERRORS)
    failure["invocation"] = {"module_args": {"instance_ids": ["i-1", "i-2", "i-3"]}}
    callback.v2_runner_on_failed(Result("cms.patching.ec2_patch_scan", failure))
    # Ansible ends the playbook: the later plays never start.
    callback.v2_playbook_on_stats(None)
    written = rows(tmp_path / "demo-r1.csv")
    assert written[""]["account_id"] == "222222222222" and written[""]["error"].startswith("discovery failed in 222222222222/eu-west-1: could not assume")
    reason = "backup phase did not run: the run stopped after discovery failed in 222222222222/eu-west-1"
    assert written["i-1"]["error"] == reason and written["i-2"]["error"] == reason
    assert written["i-3"]["error"] == ""
    assert (
        "demo run r1: 3 seen, 2 targets; backup: 1 skipped, 2 not_run; patch: 1 skipped, 2 not_run; 3 with errors; "
        "discovery failed in 222222222222/eu-west-1"
    ) in callback._display.lines


def test_a_partial_discovery_reports_the_location_and_the_run_goes_on(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", dict(SCAN, errors=SCAN_ERRORS)))
    callback.v2_runner_on_ok(Result("cms.patching.ami_backup_verified", {"instances": [{"instance_id": "i-1", "backup_status": "verified"}]}))
    callback.v2_runner_on_ok(Result("cms.patching.ssm_patch_run", {"instances": [{"instance_id": "i-1", "patch_status": "success"}]}))
    # A task that failed with ignore_errors stops nothing.
    callback.v2_runner_on_failed(Result("ansible.builtin.command", {"failed": True, "msg": "ignored"}), ignore_errors=True)
    callback.v2_playbook_on_stats(None)
    written = rows(tmp_path / "demo-r1.csv")
    assert written[""]["error"].startswith("discovery failed in 222222222222/eu-west-1")
    assert written["i-1"]["error"] == ""
    assert written["i-2"]["error"] == "backup phase not run: not part of this run"
    assert any(line.endswith("; 1 with errors; discovery failed in 222222222222/eu-west-1") for line in callback._display.lines)


def test_an_interrupted_run_says_so_on_the_rows_it_did_not_reach(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_runner_on_ok(Result("cms.patching.ami_backup_verified", {"instances": [{"instance_id": "i-1", "backup_status": "verified"}]}))
    callback._at_exit()  # what atexit does when Ctrl-C ends ansible-playbook before v2_playbook_on_stats
    written = rows(tmp_path / "demo-r1.csv")
    assert written["i-1"]["error"] == "patching phase did not run: the run was interrupted before it"
    assert written["i-2"]["error"] == "backup phase did not run: the run was interrupted before it"


def test_a_stopped_wave_names_itself(callback, tmp_path):
    callback.v2_playbook_on_start(Playbook(["discovery", "backup", "patching", "report"]))
    for play in ("discovery", "backup", "patching"):
        callback.v2_playbook_on_play_start(play)
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    callback.v2_runner_on_ok(Result("cms.patching.ami_backup_verified", {"instances": [{"instance_id": "i-1", "backup_status": "verified"}]}))
    failure = {"failed": True, "msg": "AWS error: AccessDeniedException: no", "invocation": {"module_args": {"wave": "canary", "instances": []}}}
    callback.v2_runner_on_failed(Result("cms.patching.ssm_patch_run", failure))
    callback.v2_playbook_on_stats(None)
    written = rows(tmp_path / "demo-r1.csv")
    assert written["i-1"]["error"] == "patching phase did not run: the run stopped after patch wave canary failed: AWS error: AccessDeniedException: no"


def test_check_mode_fills_plan_and_no_error(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    backup = {
        "mode": "create",
        "instances": [{"instance_id": i, "backup_status": "skipped", "reason": "check mode: would create an AMI"} for i in ("i-1", "i-2")],
    }
    callback.v2_runner_on_ok(Result("cms.patching.ami_backup_verified", backup))
    patch = {"instances": [{"instance_id": i, "patch_status": "skipped", "error": "", "plan": "would send AWS-RunPatchBaseline"} for i in ("i-1", "i-2")]}
    callback.v2_runner_on_ok(Result("cms.patching.ssm_patch_run", patch))
    callback.v2_playbook_on_stats(None)
    written = rows(tmp_path / "demo-r1.csv")
    assert [written[i]["error"] for i in ("i-1", "i-2", "i-3")] == ["", "", ""]
    assert written["i-1"]["plan"] == "would create an AMI; would send AWS-RunPatchBaseline"
    assert any(line.endswith("; 0 with errors") for line in callback._display.lines)


def test_a_failure_in_the_last_play_stops_nothing(callback, tmp_path):
    callback.v2_playbook_on_start(Playbook(["discovery", "verdict"]))
    callback.v2_playbook_on_play_start("discovery")
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", dict(SCAN, errors=SCAN_ERRORS)))
    callback.v2_playbook_on_play_start("verdict")
    callback.v2_runner_on_failed(Result("ansible.builtin.fail", {"failed": True, "msg": "discovery could not scan 1 account/region(s)"}))
    callback.v2_playbook_on_stats(None)
    # The verdict ended the last play: the targets were not stopped by it, their phases were just not part of this run.
    assert rows(tmp_path / "demo-r1.csv")["i-1"]["error"] == "backup phase not run: not part of this run"


def test_a_wave_still_pending_when_the_polls_ran_out_says_so(callback, tmp_path):
    config(callback)
    callback.v2_runner_on_ok(Result("cms.patching.ec2_patch_scan", SCAN))
    gave_up = {
        "failed": True,
        "attempts": 42,
        "pending": 2,
        "instances": [{"instance_id": "i-1", "patch_status": "pending"}, {"instance_id": "i-2", "patch_status": "pending"}],
        "invocation": {"module_args": {"wave": "rest", "instances": SCAN["instances"][:2]}},
    }
    callback.v2_runner_on_failed(Result("cms.patching.ssm_patch_run", gave_up))
    written = rows(tmp_path / "demo-r1.csv")
    assert written["i-1"]["patch_status"] == "not_run"
    assert written["i-1"]["error"] == "ssm_patch_run: still 2 pending after 42 polls; the role's wait_timeout ran out"
