"""Least privilege, enforced: each phase runs with only its own shipped policy (iam/<phase>.json) and passes; the same
phase with one of the actions it calls taken out of its policy fails with AccessDenied naming that action.

The sandbox's ``iam_enforcement`` setting authorises every call with moto's policy evaluation (sandbox/iam_enforcement.py):
the caller is the IAM user cms-patching in 123456789012, account 210987654321 is reached through CmsPatchingRole, and
both hold only the policies attached here. moto evaluates the Action element; the Resource and Condition elements are
checked by tests/unit/test_iam_policies.py. The phases run through the modules' own code (module_utils), in the order of
site.yml; discovery also runs through ansible-playbook.
"""

import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest
import demo_fleet
from demo_fleet import BACKUP_OPTIONS, DEMO_ACCOUNTS, DEMO_REGIONS, DEMO_RULES

from ansible_collections.cms.patching.plugins.module_utils import _retention, _run_claim
from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun
from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy
from ansible_collections.cms.patching.plugins.module_utils._rollback import RollbackRun
from ansible_collections.cms.patching.plugins.module_utils._scan import scan
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession, describe_aws_error
from sandbox import iam_enforcement

REPO = pathlib.Path(__file__).resolve().parents[2]
DAY = 86400
PATCH_OPTIONS = dict(
    demo_fleet.PATCH_OPTIONS,
    lz="demo",  # the gate reads the verified AMIs of this run in this landing zone; the command comments name it
    pre_checks={"ssm_online": True, "ec2_status": True, "timeout": 60},
    # A health command: the patching policy's separate statement for AWS-RunShellScript / AWS-RunPowerShellScript.
    post_checks={"ssm_online": True, "ec2_status": True, "command": "echo healthy", "windows_command": "Write-Output healthy", "timeout": 120},
)


@pytest.fixture
def enforced(aws):
    """The demo seeded, IAM enforced; the caller's credentials are the only ones that work."""
    aws.seed("demo")
    aws.state.update_settings(iam_enforcement=1)
    yield aws
    aws.state.update_settings(iam_enforcement=0)


def caller_fleet(sandbox):
    """A FleetSession as a module builds it, with the caller's credentials (a new one per phase, as each module run)."""
    connection = dict(region="us-east-1", endpoint_url=sandbox.endpoint, **iam_enforcement.CALLER_CREDENTIALS)
    return FleetSession(connection, DEMO_ACCOUNTS, policy=RetryPolicy(base_delay=0.01, max_delay=0.02, sleep=lambda s: None))


def discovery(sandbox):
    records, errors = scan(caller_fleet(sandbox), [a["account_id"] for a in DEMO_ACCOUNTS], DEMO_REGIONS, {"tag:Environment": "demo"}, DEMO_RULES)
    return [r for r in records if r["target"]], errors


def backup(sandbox, targets, run_id="run-1"):
    run = BackupRun(
        caller_fleet(sandbox), [dict(t) for t in targets], run_id, "demo", BACKUP_OPTIONS, clock=sandbox.state.now, sleep=sandbox.state.clock.advance
    )
    return run.run()


def patching(sandbox, instances, run_id="run-1", **overrides):
    options = dict(PATCH_OPTIONS, **overrides)
    return PatchRun(caller_fleet(sandbox), [dict(i) for i in instances], run_id, options, False, sandbox.state.now, sandbox.state.clock.advance).run()


def retention(sandbox, current_run_id):
    """Retention as the backup role runs it: the run's claim first (in the first account and region), then the policy."""
    fleet = caller_fleet(sandbox)
    claim = _run_claim.RetentionClaim(fleet, (DEMO_ACCOUNTS[0]["account_id"], DEMO_REGIONS[0]), "demo", current_run_id, "AWX job 1", sleep=lambda s: None)
    assert claim.acquire()["won"]
    locations = [(a["account_id"], r) for a in DEMO_ACCOUNTS for r in DEMO_REGIONS]
    outcome = _retention.apply(fleet, locations, "demo", {"keep_last": 0, "max_age_days": 1}, current_run_id, now=sandbox.state.now())
    warning = claim.finish(not outcome[2])
    return outcome[0], outcome[1], outcome[2] + ([warning] if warning else []), outcome[3]


# Post-checks without a health command and no compliance rescan: on main both fail before any call (KeyError 'since', the
# command listing's lower bound is not passed by RollbackRun), so the policy's SendCommand statements are not exercised here.
ROLLBACK_OPTIONS = dict(
    max_concurrent=5,
    wait_timeout=600,
    poll_interval=2,
    max_workers=4,
    rescan=False,
    post_checks={"ssm_online": True, "ec2_status": True, "timeout": 120},
)


def rollback(sandbox, instances, run_id="run-1"):
    options = dict(ROLLBACK_OPTIONS, run_started=sandbox.state.now() - 3600)
    return RollbackRun(caller_fleet(sandbox), [dict(i) for i in instances], run_id, options, False, sandbox.state.now, sandbox.state.clock.advance).run()


def denied(text, action):
    """AWS's refusal of ``action``, as EC2 (UnauthorizedOperation), SSM (AccessDeniedException) or STS (AccessDenied) word it."""
    return ("is not authorized to perform: %s" % action) in text and any(code in text for code in ("UnauthorizedOperation", "AccessDenied"))


def phase_calls(sandbox):
    """The AWS actions a phase called (IAM action names: ec2:CreateImage), from the sandbox's call counter."""
    return {op for op, count in sandbox.state.calls.snapshot()["operations"].items() if count}


def test_each_phase_passes_with_only_its_own_policy(enforced):
    sb = enforced
    iam_enforcement.attach(["discovery"])
    sb.state.calls.reset()
    targets, errors = discovery(sb)
    assert errors == []
    assert len(targets) >= 15 and {t["account_id"] for t in targets} == {"123456789012", "210987654321"}
    assert phase_calls(sb) <= {"ec2:DescribeInstances", "ssm:DescribeInstanceProperties", "sts:GetCallerIdentity", "sts:AssumeRole"}

    iam_enforcement.attach(["backup"])
    results = {r["name"]: r for r in backup(sb, targets)}
    assert results.pop("web-03")["backup_status"] == "failed"  # the demo's injected ami_fail, not a permission
    assert {r["backup_status"] for r in results.values()} == {"verified"}, [r["reason"] for r in results.values()]
    verified = [t for t in targets if t["name"] in results]

    iam_enforcement.attach(["patching"])
    patched = {r["name"]: r for r in patching(sb, verified)}
    assert patched.pop("pay-web-02")["patch_status"] == "failed"  # the demo's injected patch_fail
    assert {r["patch_status"] for r in patched.values()} == {"success"}, {n: r.get("error") for n, r in patched.items()}
    assert {r["post_checks"]["status"] for r in patched.values()} == {"passed"}
    documents = {c["document"] for c in sb.state.describe()["commands"]}
    assert documents == {"AWS-RunPatchBaseline", "AWS-RunShellScript", "AWS-RunPowerShellScript"}

    # Retention keeps each instance's newest verified AMI whatever its age: the next run's backups make run-1's retirable.
    sb.state.clock.advance(10 * DAY)
    iam_enforcement.attach(["backup"])
    assert {r["backup_status"] for r in backup(sb, verified, run_id="run-2")} == {"verified"}
    iam_enforcement.attach(["retention"])
    removed, _kept, errors, _orphans = retention(sb, current_run_id="run-2")
    assert errors == []
    assert sorted(r["ami_id"] for r in removed) == sorted(r["ami_id"] for r in results.values())
    left = {i["image_id"] for i in sb.state.describe()["images"]}
    assert not left & {r["ami_id"] for r in removed}


def test_backup_with_the_read_only_policy_creates_nothing(enforced):
    iam_enforcement.attach(["discovery"])
    targets, _errors = discovery(enforced)
    results = backup(enforced, targets[:2])
    assert {r["backup_status"] for r in results} == {"failed"}
    # Its first call (looking for this run's AMIs, ec2:DescribeImages) is refused before anything is created.
    assert all(denied(r["reason"], "ec2:DescribeImages") for r in results), [r["reason"] for r in results]
    assert enforced.state.describe()["images"] == []


def _prepared(sb, phase):
    """Everything the phases before ``phase`` leave behind, made with every phase policy attached."""
    iam_enforcement.attach(iam_enforcement.PHASES)
    state = {}
    if phase == "discovery":
        return state
    # A Linux and a Windows instance: both health-check documents are sent.
    state["targets"] = [t for t in discovery(sb)[0] if t["name"] in ("web-01", "app-win-01")]
    if phase == "backup":
        return state
    backup(sb, state["targets"])
    if phase == "rollback":
        patching(sb, state["targets"])
        return state
    sb.state.clock.advance(10 * DAY)
    if phase == "retention":
        # The next run's AMIs: retention keeps an instance's newest verified AMI, so only run-1's are retirable.
        backup(sb, state["targets"], run_id="run-2")
    return state


def _run_phase(sb, phase, state):
    """Run one phase; return (the text of every error it reported, whether it did its job).

    An AWS error a phase does not handle itself ends the module with its message (_module.py); here it is that text."""
    try:
        return _run_phase_unguarded(sb, phase, state)
    except Exception as exc:  # pylint: disable=broad-except
        return describe_aws_error(exc), False


def _run_phase_unguarded(sb, phase, state):
    if phase == "discovery":
        targets, errors = discovery(sb)
        return " ".join(e["error"] for e in errors), bool(targets) and not errors
    if phase == "backup":
        results = backup(sb, state["targets"])
        return " ".join(r["reason"] for r in results), all(r["backup_status"] == "verified" for r in results)
    if phase == "patching":
        # A refused read leaves the wave waiting until wait_timeout: a short one (sandbox invocations take seconds).
        results = patching(sb, state["targets"], wait_timeout=300, poll_interval=10)
        text = " ".join(json.dumps(r, default=str) for r in results)
        done = all(r["patch_status"] == "success" and r["post_checks"]["status"] == "passed" and r["missing_count"] == 0 for r in results)
        return text, done
    if phase == "rollback":
        # web-01 has a data volume (created, swapped), app-win-01 is Windows (its own health-check document).
        results = rollback(sb, state["targets"])
        text = " ".join(json.dumps(r, default=str) for r in results)
        return text, all(r["rollback_status"] == "rolled_back" for r in results)
    removed, _kept, errors, _orphans = retention(sb, current_run_id="run-2")
    return " ".join(errors), bool(removed) and not errors


@pytest.mark.parametrize("phase", ["discovery", "backup", "patching", "retention", "rollback"])
def test_every_action_a_phase_calls_is_needed(enforced, phase):
    """Each action the phase called with its full policy, taken out of that policy alone, makes the phase fail with
    AccessDenied naming it. (GetCallerIdentity needs no permission, in AWS as in moto; AssumeRole is the caller's.)"""
    sb = enforced
    state = _prepared(sb, phase)
    iam_enforcement.attach([phase])
    sb.state.calls.reset()
    text, ok = _run_phase(sb, phase, state)
    assert ok, text
    called = phase_calls(sb) - {"sts:GetCallerIdentity", "sts:AssumeRole"}
    policy_actions = {a for s in iam_enforcement.load_policy(phase)["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert called <= policy_actions
    for action in sorted(called):
        sb.reset()
        sb.seed("demo")
        sb.state.update_settings(iam_enforcement=1)
        state = _prepared(sb, phase)
        iam_enforcement.attach([phase], remove_actions=[action])
        text, ok = _run_phase(sb, phase, state)
        assert not ok, "%s still did its job without %s" % (phase, action)
        assert denied(text, action), "%s without %s failed, but not naming it: %s" % (phase, action, text[:2000])


def test_the_caller_may_assume_only_the_landing_zone_roles(enforced):
    iam_enforcement.attach(["discovery"], remove_actions=["sts:AssumeRole"])
    targets, errors = discovery(enforced)
    assert sorted((e["account_id"], e["region"]) for e in errors) == [("210987654321", "eu-west-1"), ("210987654321", "us-east-1")]
    assert all(denied(e["error"], "sts:AssumeRole") for e in errors), errors
    assert {t["account_id"] for t in targets} == {"123456789012"}


def run_playbook(sandbox, tmp_path, *args):
    """ansible-playbook site.yml -i inventories/demo -e lz=demo ARGS with the caller's keys; returns (rc, output, CSV rows)."""
    env = dict(os.environ)
    env.update(sandbox.env("us-east-1"))
    env.update(
        AWS_ACCESS_KEY_ID=iam_enforcement.CALLER_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=iam_enforcement.CALLER_CREDENTIALS["aws_secret_access_key"],
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        CMS_PATCHING_REPORT_DIR=str(tmp_path / "reports"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    env.pop("AWS_PROFILE", None)
    command = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-i", "inventories/demo", "-e", "lz=demo"] + list(args)
    proc = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, check=False)
    announced = [line.split(": ", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("CSV report: ")]
    rows = []
    if announced:
        with open(announced[0], encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    return proc.returncode, proc.stdout, rows


def test_discovery_playbook_runs_with_the_read_only_policy(enforced, tmp_path):
    """site.yml -i inventories/demo --tags discovery through ansible-playbook with the caller's keys and only
    discovery.json: the aws_ec2 inventory reads 123456789012 with the caller's keys and 210987654321 through
    CmsInventoryReadOnly (inventory-read-only.json), discovery reads both through CmsPatchingRole."""
    iam_enforcement.attach(["discovery"])
    rc, output, rows = run_playbook(enforced, tmp_path, "--tags", "discovery")
    assert rc == 0, output[-3000:]
    assert "not authorized" not in output and "Failed to parse" not in output
    # The inventory's hosts are the candidates: all 30 instances of the landing zone, in both accounts.
    assert len(rows) == 30 and {r["account_id"] for r in rows} == {"123456789012", "210987654321"}
    operations = phase_calls(enforced)
    assert "ec2:DescribeInstances" in operations and "ssm:DescribeInstanceProperties" in operations
    assert not [op for op in operations if op.startswith(("ec2:Create", "ssm:Send", "ec2:Deregister", "ec2:Delete"))]


def test_whole_playbook_runs_with_the_four_phase_policies(enforced, tmp_path):
    """The whole site.yml, one principal per account holding the four phase policies (what a single job needs)."""
    enforced.state.update_settings(time_scale=4.0)
    # The demo landing zone rolls a failed patch back (patching.rollback_on_failure), which needs the rollback phase's
    # permissions, not among these four: this run keeps pay-web-02 failed and patched instead.
    rc, output, rows = run_playbook(enforced, tmp_path, "-e", "patching_rollback_on_failure=false")
    assert "not authorized" not in output, output[-3000:]
    assert rc == 2, output[-3000:]  # the demo's injected faults: web-03's AMI fails, pay-web-02's patch fails
    by_name = {r["name"]: r for r in rows}
    targets = {n: r for n, r in by_name.items() if r["target"] == "true"}
    assert {n for n, r in targets.items() if r["backup_status"] != "verified"} == {"web-03"}
    assert {n for n, r in targets.items() if r["patch_status"] != "success"} == {"web-03", "pay-web-02"}
    assert "Retire old pre-patch AMIs" in output
