"""A sliced job template emulated as AWX runs it: 3 slices of the demo inventory, each an ansible-runner job of its own
(own private data and report directory) started at once against one sandbox, with only what AWX passes a slice: the same
awx_workflow_job_id (AWX runs a sliced job as one workflow job) and an awx_job_id of its own, and NO slice number (the
slice number is a field of AWX's job record, never an extra var: awx/main/models/unified_jobs.py awx_meta_vars,
awx/main/models/workflow.py, awx/main/tasks/jobs.py build_inventory). Each slice works on its own hosts only, and all
share one run ID: every instance has exactly one row across the slices' CSVs, one AMI and at most one patch command.

Each slice names its report with its job ID, so all three land side by side under the run's S3 prefix; retention, which
works over the whole landing zone, is carried out once: the slices race for the run's retention claim in SSM Parameter
Store, one wins and the others say which job has it.

AWX slices an inventory by taking every n-th host (by name) into slice n and hands each slice its part of the inventory
as a script; here each slice's part is written as a YAML inventory with the same hosts, host variables and groups
(tests/integration/test_awx_runner.py covers the script form itself).
"""

import collections
import json
import re
import subprocess

import ansible_runner
import boto3
import pytest
import yaml
from awx_emulation import BIN, Job, job_env, prepare
from conftest import REPO, TIME_SCALE, calls, sessions

SLICES = 3
WORKFLOW_JOB_ID = 777
# AWX's job IDs of the slices: distinct, in no particular relation to the slice numbers.
JOB_IDS = (912, 805, 871)


@pytest.fixture
def awx(aws, monkeypatch):
    aws.seed("demo")
    aws.state.update_settings(time_scale=TIME_SCALE)
    aws.state.calls.reset()
    for name in ("ANSIBLE_CONFIG", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    yield aws
    aws.state.update_settings(time_scale=1.0)


def demo_inventory(aws, tmp_path):
    """The demo inventory as AWX imports it from the project's aws_ec2 sources: ansible-inventory --list."""
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", "inventories/demo", "--list"],
        cwd=REPO,
        env=dict(job_env(aws, tmp_path / "inventory"), ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def slice_inventory(inventory, number, count):
    """Slice `number` (1-based) of `count`, as AWX cuts it: every count-th host by name, with its variables and groups."""
    hostvars = inventory["_meta"]["hostvars"]
    hosts = sorted(hostvars)[number - 1 :: count]
    groups = {}
    for group, data in inventory.items():
        members = [h for h in data.get("hosts", []) if h in hosts] if isinstance(data, dict) else []
        if group not in ("_meta", "all", "ungrouped") and members:
            groups[group] = {"hosts": {h: None for h in members}}
    return hosts, {"all": {"hosts": {h: hostvars[h] for h in hosts}, "children": groups}}


def one_wave_lz(tmp_path):
    """The demo landing zone with percent waves: named canaries cannot work with slices (a slice without the named
    instance stops at the wave plan), so a sliced job template needs waves that do not name instances."""
    config = yaml.safe_load((REPO / "inventories/demo/.landing_zone.yml").read_text())
    config["cms_patching_landing_zone"]["patching"]["waves"] = [{"name": "canary", "percent": 10}, {"name": "rest"}]
    # Rollback is tested in test_rollback.py; here the injected patch failure stays failed (a slice's rollback of it with a
    # health command fails on main: see the report of helper h15).
    config["cms_patching_landing_zone"]["patching"]["rollback_on_failure"] = False
    # Which slice holds the injected patch failure (pay-web-02), and in which wave, depends on the random instance IDs. In a
    # slice's wave of 2-3 instances the demo's max_errors 50% allows 1 failure, and in a 1-instance canary the demo's
    # max_failure_rate 25 stops the slice's run: both are the wave rules working (tested in test_waves.py), not what this
    # test is about, so here one failure stops nothing and every verified instance is sent its patch.
    config["cms_patching_landing_zone"]["patching"]["max_errors"] = "100%"
    config["cms_patching_landing_zone"]["patching"]["max_failure_rate"] = 100
    directory = tmp_path / "lzs" / "demo"
    directory.mkdir(parents=True)
    (directory / ".landing_zone.yml").write_text("---\n" + yaml.safe_dump(config))
    return tmp_path / "lzs"


def seed_old_backup(aws):
    """A pre-patch AMI of an earlier run, 10 days old (the demo keeps 7 days): retention has one AMI to retire."""
    ec2 = sessions(aws)["123456789012"].client("ec2", region_name="us-east-1", endpoint_url=aws.endpoint)
    # web-01 by name: the first running instance by ID was web-03 one time in nine, whose AMI the demo fails (ami_fail).
    named = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web-01"]}])["Reservations"]
    instance_id = named[0]["Instances"][0]["InstanceId"]
    tags = {"cms:patching": "pre-patch", "cms:patching:lz": "demo", "cms:patching:run-id": "20200101-old", "cms:patching:instance-id": instance_id}
    image_id = ec2.create_image(
        InstanceId=instance_id,
        Name="cms-old-%s" % instance_id,
        NoReboot=True,
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["ImageId"]
    aws.state.clock.advance(10 * 86400)
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"
    aws.state.calls.reset()
    return image_id


def test_three_slices_share_one_run_and_touch_each_instance_once(awx, tmp_path):
    old_image = seed_old_backup(awx)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=awx.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="cms-reports")
    inventory = demo_inventory(awx, tmp_path)
    lz_path = one_wave_lz(tmp_path)
    started, parts = [], {}
    for number in range(1, SLICES + 1):
        directory = tmp_path / ("slice%d" % number)
        directory.mkdir()
        parts[number], content = slice_inventory(inventory, number, SLICES)
        (directory / "inventory.yml").write_text("---\n" + yaml.safe_dump(content))
        # What AWX passes a slice job (awx_meta_vars): its own job ID, the slices' common workflow job ID. No slice number.
        job_id = JOB_IDS[number - 1]
        extravars = {"lz": "demo", "awx_workflow_job_id": WORKFLOW_JOB_ID, "tower_workflow_job_id": WORKFLOW_JOB_ID}
        extravars.update(awx_job_id=job_id, tower_job_id=job_id)
        extravars.update(cms_patching_report_s3_bucket="cms-reports", cms_patching_report_s3_prefix="runs/{lz}/{run_id}")
        kwargs = prepare(awx, directory, extravars, inventory=str(directory / "inventory.yml"))
        kwargs["envvars"]["CMS_PATCHING_LZ_PATH"] = str(lz_path)
        thread, runner = ansible_runner.run_async(**kwargs)
        started.append((thread, runner, directory))
    assert sorted(h for hosts in parts.values() for h in hosts) == sorted(inventory["_meta"]["hostvars"])
    assert all(len(hosts) == 10 for hosts in parts.values())
    for thread, runner, directory in started:
        thread.join(timeout=900)
    jobs = [Job(runner, directory / "reports") for thread, runner, directory in started]
    # The slices ran at once: each started before any of them ended.
    spans = [job.span for job in jobs]
    assert max(span[0] for span in spans) < min(span[1] for span in spans), spans
    for job in jobs:
        assert job.runner.status in ("successful", "failed") and "Traceback" not in job.output, job.output[-3000:]

    # One run ID for all slices, from AWX's workflow job ID.
    run_ids = {job.artifacts["cms_patching"]["run_id"] for job in jobs}
    assert len(run_ids) == 1, run_ids
    [run_id] = run_ids
    assert re.match(r"^\d{8}-awx%d$" % WORKFLOW_JOB_ID, run_id)

    # Each slice reports its own hosts, and every instance of the inventory has exactly one row across the CSVs.
    rows = [row for job in jobs for row in job.rows()]
    assert {row["run_id"] for row in rows} == {run_id}
    per_instance = collections.Counter(row["instance_id"] for row in rows)
    assert set(per_instance) == set(inventory["_meta"]["hostvars"]) and set(per_instance.values()) == {1}
    for number, job in enumerate(jobs, start=1):
        assert {row["instance_id"] for row in job.rows()} == set(parts[number])

    # One AMI per target instance: 21 targets (one of them the demo's injected AMI failure), none made twice.
    targets = {row["instance_id"] for row in rows if row["target"] == "true"}
    assert len(targets) == 21 and calls(awx)["ec2:CreateImage"] == 21
    images = collections.Counter()
    for session in sessions(awx).values():
        for region in ("us-east-1", "eu-west-1"):
            ec2 = session.client("ec2", region_name=region, endpoint_url=awx.endpoint)
            for image in ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:cms:patching:run-id", "Values": [run_id]}])["Images"]:
                tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
                images[tags.get("cms:patching:instance-id") or image["Name"]] += 1
    assert sum(images.values()) == 21 and set(images.values()) == {1}
    # Patches: every instance patched by one slice only, with one command.
    patched = collections.Counter(i for c in awx.state.command_log() if c["document"] == "AWS-RunPatchBaseline" for i in c["instance_ids"])
    unpatched = {row["name"]: (row["patch_status"], row["error"]) for row in rows if row["backup_status"] == "verified" and row["instance_id"] not in patched}
    assert set(patched.values()) == {1} and len(patched) == 20, unpatched
    assert sum(row["patch_status"] == "success" for row in rows) == 19

    # Each slice's report is named with its own job ID (the only thing AWX gives each slice of its own), and the run's S3
    # prefix holds all three (CSV and JSON): no report overwrote another.
    names = [sorted(path.name for path in job.reports.glob("*.csv")) for job in jobs]
    assert names == [["demo-%s-job%d.csv" % (run_id, job_id)] for job_id in JOB_IDS], names
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="cms-reports", Prefix="runs/demo/%s/" % run_id).get("Contents", [])}
    assert keys == {"runs/demo/%s/%s%s" % (run_id, name[:-4], ext) for [name] in names for ext in (".csv", ".json")}, keys
    assert len(keys) == 2 * SLICES

    # Retention was carried out once for the run: one claim, made by one slice and marked done; the other two said which
    # job had it, in their output and in their report's run-level retention.
    log = awx.state.calls.log()
    claim_calls = [c for c in log if c["operation"] in ("ssm:PutParameter", "ssm:GetParameters")]
    assert {(c["account"], c["region"]) for c in claim_calls} == {("123456789012", "us-east-1")}
    ssm = sessions(awx)["123456789012"].client("ssm", region_name="us-east-1", endpoint_url=awx.endpoint)
    claims = ssm.get_parameters_by_path(Path="/cms-patching/demo/%s" % run_id, Recursive=True)["Parameters"]
    assert [c["Name"] for c in claims] == ["/cms-patching/demo/%s/retention/1" % run_id], claims
    claim = json.loads(claims[0]["Value"])
    assert claim["state"] == "done" and claim["claimant"] in {"AWX job %d" % job_id for job_id in JOB_IDS}
    documents = [json.loads(next(job.reports.glob("*.json")).read_text()) for job in jobs]
    retention = [d["retention"] for d in documents]
    assert sorted(r["won"] for r in retention) == [False, False, True], retention
    [winner] = [job_id for job_id, r in zip(JOB_IDS, retention) if r["won"]]
    assert claim["claimant"] == "AWX job %d" % winner
    for job, job_id, info in zip(jobs, JOB_IDS, retention):
        if job_id == winner:
            assert "this job (AWX job %d) claimed retention of run %s" % (winner, run_id) in job.output
            assert info["summary"]["removed"] == 1
        else:
            assert info["held_by"] == "AWX job %d" % winner and info["status"] in ("held", "done"), info
            assert "retention of run %s was claimed by AWX job %d" % (run_id, winner) in job.output
            assert "Removed 1 pre-patch AMI" not in job.output

    # The old AMI was deregistered by one call, after one launch-template scan (an AMI in use stays) per account and
    # region: three slices each running retention over the whole landing zone would scan three times and race to
    # deregister the same AMI.
    assert [c["operation"] for c in log].count("ec2:DeregisterImage") == 1
    scans = collections.Counter((c["account"], c["region"]) for c in log if c["operation"] == "ec2:DescribeLaunchTemplates")
    assert scans == {("123456789012", "us-east-1"): 1}, scans
    ec2 = sessions(awx)["123456789012"].client("ec2", region_name="us-east-1", endpoint_url=awx.endpoint)
    assert ec2.describe_images(Filters=[{"Name": "image-id", "Values": [old_image]}])["Images"] == []


def test_three_jobs_reaching_retention_at_once_carry_it_out_once(awx, tmp_path):
    """The tightest race: three jobs of one run (AWX job IDs of their own, one workflow job ID) that run nothing but
    retention, started together. One claims and retires the old AMI; the other two remove nothing and name it."""
    old_image = seed_old_backup(awx)
    lz_path = one_wave_lz(tmp_path)
    started = []
    for job_id in JOB_IDS:
        directory = tmp_path / ("job%d" % job_id)
        directory.mkdir()
        extravars = {"lz": "demo", "awx_workflow_job_id": WORKFLOW_JOB_ID, "tower_workflow_job_id": WORKFLOW_JOB_ID}
        extravars.update(awx_job_id=job_id, tower_job_id=job_id)
        kwargs = prepare(awx, directory, extravars, inventory=str(REPO / "inventories/demo"), tags="retention")
        kwargs["envvars"]["CMS_PATCHING_LZ_PATH"] = str(lz_path)
        thread, runner = ansible_runner.run_async(**kwargs)
        started.append((thread, runner, directory))
    for thread, runner, directory in started:
        thread.join(timeout=600)
    jobs = [Job(runner, directory / "reports") for thread, runner, directory in started]
    for job in jobs:
        assert job.runner.status == "successful", job.output[-3000:]
    log = awx.state.calls.log()
    assert [c["operation"] for c in log].count("ec2:DeregisterImage") == 1
    ssm = sessions(awx)["123456789012"].client("ssm", region_name="us-east-1", endpoint_url=awx.endpoint)
    [run_id] = {job.artifacts["cms_patching"]["run_id"] for job in jobs}
    claims = ssm.get_parameters_by_path(Path="/cms-patching/demo/%s" % run_id, Recursive=True)["Parameters"]
    assert len(claims) == 1 and json.loads(claims[0]["Value"])["state"] == "done", claims
    winner = json.loads(claims[0]["Value"])["claimant"]
    claimed = [job for job, job_id in zip(jobs, JOB_IDS) if "this job (AWX job %d) claimed retention" % job_id in job.output]
    assert len(claimed) == 1 and winner in claimed[0].output
    assert sum("retention of run %s was claimed by %s" % (run_id, winner) in job.output for job in jobs) == 2
    ec2 = sessions(awx)["123456789012"].client("ec2", region_name="us-east-1", endpoint_url=awx.endpoint)
    assert ec2.describe_images(Filters=[{"Name": "image-id", "Values": [old_image]}])["Images"] == []
