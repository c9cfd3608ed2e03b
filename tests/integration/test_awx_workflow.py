"""The "patch after approval" workflow of extensions/awx/ emulated as AWX runs it: job 1 (the backup node) and job 2 (the
patching node) are two ansible-runner jobs, and job 1's artifact_data - the set_stats data AWX keeps as the job's
artifacts - is job 2's extra variables, tagged !unsafe as AWX passes them. Job 2 must patch behind job 1's backups: the
same run ID, no new AMI, patches sent only to the instances job 1 verified.
"""

import re

import pytest
from awx_emulation import run_job, unsafe
from conftest import TIME_SCALE, calls

# The run ID roles/config derives from AWX's workflow job ID when nothing else gives one.
WORKFLOW_RUN_ID = re.compile(r"^\d{8}-awx4242$")


@pytest.fixture
def awx(aws, monkeypatch):
    """The demo landing zone seeded; the project's ansible.cfg is found in the working directory, as in AWX."""
    aws.seed("demo")
    aws.state.update_settings(time_scale=TIME_SCALE)
    aws.state.calls.reset()
    for name in ("ANSIBLE_CONFIG", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    yield aws
    aws.state.update_settings(time_scale=1.0)


def test_patching_node_reuses_the_backup_nodes_run_id_and_amis(awx, tmp_path):
    # Job 1, the backup node: a job of its own (no workflow ID), so its run ID is a new one.
    backup = run_job(awx, tmp_path / "job1", {"lz": "demo"}, tags="discovery,backup")
    # The demo's injected AMI failure fails web-03's host (rc 2); the other 20 targets are verified.
    assert backup.runner.rc == 2, backup.output[-3000:]
    run_id = backup.artifacts["cms_patching"]["run_id"]
    assert not WORKFLOW_RUN_ID.match(run_id)
    backup_rows = {r["name"]: r for r in backup.rows()}
    verified = {r["instance_id"] for r in backup_rows.values() if r["backup_status"] == "verified"}
    assert len(verified) == 20 and backup_rows["web-03"]["backup_status"] == "failed"
    amis = {r["instance_id"]: r["ami_id"] for r in backup_rows.values() if r["ami_id"]}
    creates = calls(awx)["ec2:CreateImage"]
    assert creates == 21
    assert not [c for c in awx.state.command_log() if c["document"] == "AWS-RunPatchBaseline"]

    # Job 2, the patching node: job 1's artifacts as extra variables (!unsafe), plus AWX's workflow variables - the
    # artifact's run ID must win over the one the workflow job ID would give.
    extravars = dict(unsafe(backup.artifacts), lz="demo", awx_workflow_job_id=4242, tower_workflow_job_id=4242, awx_job_id=4244)
    patching = run_job(awx, tmp_path / "job2", extravars, tags="patching")
    # web-03 (no verified backup) and pay-web-02 (the injected patch failure) fail their hosts.
    assert patching.runner.rc == 2, patching.output[-3000:]
    assert "Traceback" not in patching.output

    # One run ID for both jobs: in job 2's artifacts, its CSV and every command comment.
    assert patching.artifacts["cms_patching"]["run_id"] == run_id
    rows = {r["name"]: r for r in patching.rows()}
    assert {r["run_id"] for r in rows.values()} == {run_id}
    # No new AMI: job 2 found job 1's (the failed one is not made again either: its host is held back).
    assert calls(awx)["ec2:CreateImage"] == creates
    assert {r["instance_id"]: r["ami_id"] for r in rows.values() if r["ami_id"]} == amis
    # Patches were sent, to exactly the instances job 1 verified, each command carrying the run ID.
    sent = [c for c in awx.state.command_log() if c["document"] == "AWS-RunPatchBaseline"]
    assert sent and all("run=%s " % run_id in c["comment"] for c in sent)
    assert {i for c in sent for i in c["instance_ids"]} == verified
    assert sum(r["patch_status"] == "success" for r in rows.values()) == 19
    assert rows["web-03"]["patch_status"] in ("skipped", "not_run") and rows["pay-web-02"]["patch_status"] == "failed"


def test_without_an_artifact_every_workflow_node_derives_one_run_id(awx, tmp_path):
    # Nodes that run before any set_stats (or all slices of a sliced job, which AWX runs as one workflow job) share the
    # ID AWX's workflow job ID gives: the second job resumes the first's backups.
    workflow = {"lz": "demo", "awx_workflow_job_id": 4242, "tower_workflow_job_id": 4242}
    first = run_job(awx, tmp_path / "job1", dict(workflow, awx_job_id=4243), tags="discovery,backup")
    run_id = first.artifacts["cms_patching"]["run_id"]
    assert WORKFLOW_RUN_ID.match(run_id), run_id
    creates = calls(awx)["ec2:CreateImage"]
    # Tower's older name alone is enough.
    second = run_job(awx, tmp_path / "job2", {"lz": "demo", "tower_workflow_job_id": 4242}, tags="discovery,backup")
    assert second.artifacts["cms_patching"]["run_id"] == run_id
    assert calls(awx)["ec2:CreateImage"] == creates
    # An artifact of another landing zone's node (a workflow patching two landing zones one after the other) is not
    # this landing zone's run.
    other = dict(workflow, cms_patching=unsafe({"lz": "other", "run_id": "20261127T100000Z-other"}))
    assert run_job(awx, tmp_path / "job4", other, tags="discovery").artifacts["cms_patching"]["run_id"] == run_id
    # An explicit run_id (the survey's) still wins over both.
    third = run_job(awx, tmp_path / "job3", dict(workflow, run_id=unsafe("20261127T100000Z-survey")), tags="discovery")
    assert third.artifacts["cms_patching"]["run_id"] == "20261127T100000Z-survey"
