"""A run interrupted mid-way (Ctrl-C, an AWX cancel) keeps its report and can be resumed by its run ID."""

import os
import signal
import subprocess
import time

from conftest import ANSIBLE_PLAYBOOK, REPO, Run, calls, patch_commands

RUN_ID = "20261127T120000Z-interrupted"


def start(lz_env, *args):
    return subprocess.Popen(  # pylint: disable=consider-using-with
        [ANSIBLE_PLAYBOOK, "site.yml", "-e", "lz=demo", "-e", "run_id=" + RUN_ID] + list(args),
        cwd=REPO,
        env=lz_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for(proc, text, timeout=300):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError("never saw %r:\n%s" % (text, "".join(seen)[-3000:]))


def test_ctrl_c_during_patching_keeps_every_row_and_the_run_resumes(aws, lz_env, tmp_path, playbook):
    # Patching takes long enough to be interrupted while a wave is running.
    aws.state.update_settings(invocation_seconds=120)
    proc = start(lz_env)
    wait_for(proc, "TASK [cms.patching.patching : Patch wave canary]")
    # Interrupt once the canary's commands are out (the sandbox's own log says so), however loaded the machine is.
    deadline = time.monotonic() + 120
    while not any("canary" in c["comment"] for c in aws.state.command_log()) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    report = tmp_path / "reports" / ("demo-%s.csv" % RUN_ID)
    interrupted = Run(subprocess.CompletedProcess([], 0, stdout="CSV report: %s\n" % report), tmp_path / "reports").by_name()
    assert len(interrupted) == 30
    assert sum(r["backup_status"] == "verified" for r in interrupted.values()) == 20
    assert interrupted["web-01"]["patch_status"] == "not_run"
    # Rows the run did not get to say so.
    assert interrupted["web-01"]["error"] == "patching phase did not run: the run was interrupted before it"
    canary_before = sorted(c["CommandId"] for c in patch_commands(aws) if c["Comment"].endswith("wave=canary"))
    assert canary_before
    creates_before = calls(aws)["ec2:CreateImage"]

    aws.state.update_settings(invocation_seconds=2)
    resumed = playbook("-e", "run_id=" + RUN_ID)
    assert resumed.rc == 2, resumed.output[-3000:]
    rows = resumed.by_name()
    assert rows["web-01"]["patch_status"] == "success" and rows["web-01"]["wave"] == "canary"
    # The canary's commands were found again, not sent again: every instance got exactly one patch command in this run
    # (the resume may send the canary instances that had not had a slot yet); no AMI was made twice.
    canary_after = [c for c in patch_commands(aws) if c["Comment"].endswith("wave=canary")]
    assert set(canary_before) <= {c["CommandId"] for c in canary_after}
    # Installs only: the demo rolls back pay-web-02 (its injected patch failure) and rescans it with AWS-RunPatchBaseline Scan,
    # which changes nothing on the instance and is not a patch.
    patched = [i for c in patch_commands(aws) if RUN_ID in c["Comment"] and c["Parameters"].get("Operation") == ["Install"] for i in c["InstanceIds"]]
    assert len(patched) == len(set(patched))
    assert rows["web-01"]["patch_command_id"] in {c["CommandId"] for c in canary_after}
    assert calls(aws)["ec2:CreateImage"] == creates_before
    assert rows["pay-eu-web-01"]["patch_status"] == "success"
