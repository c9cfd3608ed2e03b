"""site.yml run the way AWX / Ansible Automation Platform runs a job: ansible-runner, the project directory as the
working directory (so the project's ansible.cfg applies), the inventory handed over as an executable script, and
AWX's ANSIBLE_INVENTORY_UNPARSED_FAILED=True (a job whose inventory no enabled plugin can parse stops at once).
"""

import csv
import json
import os
import pathlib
import stat
import subprocess
import sys

import ansible_runner
import yaml
from conftest import REPO, TIME_SCALE

BIN = pathlib.Path(sys.executable).parent

# What AWX's inventory script prints for an inventory holding only AWX's usual "localhost" host.
INVENTORY = {
    "all": {"children": ["ungrouped"]},
    "ungrouped": {"hosts": ["localhost"]},
    "_meta": {"hostvars": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}},
}


def inventory_script(directory, inventory=None):
    script = directory / "inventory.py"
    script.write_text("#!%s\nprint(%r)\n" % (sys.executable, json.dumps(inventory or INVENTORY)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def awx_job(aws, tmp_path, extravars, inventory=None, env=None, **kwargs):
    """One ansible-runner job as AWX starts it; returns (runner, report directory)."""
    aws.state.update_settings(time_scale=TIME_SCALE)
    aws.state.calls.reset()
    private = tmp_path / "private_data_dir"
    private.mkdir(exist_ok=True)
    reports = tmp_path / "reports"
    envvars = dict(aws.env("us-east-1"))
    envvars.update(
        ANSIBLE_INVENTORY_UNPARSED_FAILED="True",
        CMS_PATCHING_REPORT_DIR=str(reports),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        PATH="%s:%s" % (BIN, os.environ.get("PATH", "")),
        # AWX puts the project's requirements first and keeps the paths of the project's ansible.cfg (relative to the
        # project directory, the job's working directory).
        ANSIBLE_COLLECTIONS_PATH="%s:./collections:~/.ansible/collections:/usr/share/ansible/collections" % (private / "requirements_collections"),
        ANSIBLE_ROLES_PATH="%s:./roles:~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles" % (private / "requirements_roles"),
        **(env or {}),
    )
    # The project's ansible.cfg is found in the working directory, as in AWX (no ANSIBLE_CONFIG there).
    saved = {name: os.environ.pop(name) for name in ("ANSIBLE_CONFIG", "AWS_PROFILE") if name in os.environ}
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(REPO),
            playbook="site.yml",
            inventory=str(inventory_script(tmp_path, inventory)),
            envvars=envvars,
            extravars=extravars,
            quiet=True,
            timeout=600,
            **kwargs,
        )
    finally:
        os.environ.update(saved)
        aws.state.update_settings(time_scale=1.0)
    return runner, reports


def test_an_awx_job_with_a_script_inventory_runs_the_whole_patching(aws, tmp_path):
    aws.seed("demo")
    runner, reports = awx_job(aws, tmp_path, {"lz": "demo"})
    output = runner.stdout.read()
    assert "No inventory was parsed" not in output
    # The demo's two injected faults fail their hosts (rc 2, AWX shows the job failed); everything else went on.
    assert (runner.rc, runner.status) == (2, "failed"), output[-3000:]
    assert "Traceback" not in output
    [report] = list(reports.glob("demo-*.csv"))
    with open(report, encoding="utf-8") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 30
    assert sum(row["patch_status"] == "success" for row in rows.values()) == 19
    assert rows["web-03"]["backup_status"] == "failed" and rows["pay-web-02"]["patch_status"] == "failed"
    # The run summary is in the job's artifacts (what AWX passes on to the next workflow node).
    [stats] = [e["event_data"] for e in runner.events if e.get("event") == "playbook_on_stats"]
    assert stats["artifact_data"]["cms_patching"]["patch"]["success"] == 19
    # AWX's job host summary (built from this event): one host per instance, with its outcome.
    ids = {name: row["instance_id"] for name, row in rows.items()}
    assert set(ids.values()) <= set(stats["processed"])
    assert set(stats["failures"]) == {ids["web-03"], ids["pay-web-02"]}
    patched = {ids[name] for name, row in rows.items() if row["patch_status"] == "success"}
    assert len(patched) == 19 and patched <= set(stats["changed"])
    skipped = {ids[name] for name, row in rows.items() if row["target"] == "false"}
    assert len(skipped) == 9 and skipped <= set(stats["skipped"]) and not skipped & set(stats["failures"])
    assert not (skipped - set(stats["processed"]))
    # Each instance's own job events (what AWX lists under the host): the outcome task's result, the reason when failed.
    outcome = {
        # (AWX's skipped events carry no result.)
        e["event_data"]["host"]: (e["event"], e["event_data"].get("res", {}).get("msg"))
        for e in runner.events
        if e.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_skipped") and e["event_data"].get("task") == "Outcome"
    }
    assert set(outcome) == set(ids.values())
    assert outcome[ids["web-03"]][0] == "runner_on_failed" and outcome[ids["web-03"]][1].startswith(ids["web-03"] + ": ")
    assert outcome[ids["pay-web-02"]][0] == "runner_on_failed" and outcome[ids["pay-web-02"]][1].startswith(ids["pay-web-02"])
    assert {outcome[i] for i in patched} == {("runner_on_ok", "patched")}
    assert {outcome[i] for i in skipped} == {("runner_on_skipped", None)}


def synced_inventory(aws, tmp_path):
    """What AWX's inventory sync of inventories/demo (its aws_ec2 sources) hands a job: ansible-inventory --list."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "inventory-tmp"), **aws.env("us-east-1"))
    env.pop("AWS_PROFILE", None)
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", "inventories/demo", "--list"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_an_awx_job_on_the_synced_inventory_with_a_limit(aws, tmp_path):
    """The usual AWX set-up: the inventory synced from inventories/demo, the job template's Limit one account group."""
    aws.seed("demo")
    inventory = synced_inventory(aws, tmp_path)
    in_account = set(inventory["account_210987654321"]["hosts"])
    assert len(in_account) == 15
    config = yaml.safe_load((REPO / "inventories/demo/.landing_zone.yml").read_text())
    config["cms_patching_landing_zone"]["patching"]["waves"] = [{"name": "canary", "names": ["pay-eu-web-01"]}, {"name": "rest"}]
    (tmp_path / "lzs" / "demo").mkdir(parents=True)
    (tmp_path / "lzs" / "demo" / ".landing_zone.yml").write_text(yaml.safe_dump(config))
    runner, reports = awx_job(
        aws, tmp_path, {"lz": "demo"}, inventory=inventory, env={"CMS_PATCHING_LZ_PATH": str(tmp_path / "lzs")}, limit="account_210987654321"
    )
    output = runner.stdout.read()
    # pay-web-02's patch fails (rc 2); the rest of the account is patched, and the job went to its end.
    assert (runner.rc, runner.status) == (2, "failed"), output[-3000:]
    [report] = list(reports.glob("demo-*.csv"))
    with open(report, encoding="utf-8") as handle:
        rows = {row["instance_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == in_account
    [stats] = [e["event_data"] for e in runner.events if e.get("event") == "playbook_on_stats"]
    failed = {i for i, row in rows.items() if row["name"] == "pay-web-02"}
    assert set(stats["failures"]) == failed
    patched = {i for i, row in rows.items() if row["patch_status"] == "success"}
    assert len(patched) == 10 and patched <= set(stats["changed"])
    assert in_account <= set(stats["processed"])
    assert "Removed 0 pre-patch AMI(s)" in output
