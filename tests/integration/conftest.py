"""Integration tests: the real playbooks, run with ansible-playbook against the session's sandbox.

Each test gets a freshly seeded demo landing zone and its own report directory; sandbox time runs faster than
wall time so AMIs and commands finish in a fraction of the demo's seconds.
"""

import csv
import json
import os
import pathlib
import subprocess
import sys
import urllib.request

import boto3
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(pathlib.Path(sys.executable).parent / "ansible-playbook")
TIME_SCALE = 4.0


class Run:
    def __init__(self, proc, report_dir):
        self.rc = proc.returncode
        self.output = proc.stdout
        self.report_dir = report_dir

    @property
    def csv_path(self):
        """The CSV this run wrote, as the callback announced it."""
        announced = [line.split(": ", 1)[1].strip() for line in self.output.splitlines() if line.startswith("CSV report: ")]
        assert len(announced) == 1, "expected one 'CSV report:' line\n%s" % self.output[-3000:]
        path = pathlib.Path(announced[0])
        assert path.parent == self.report_dir and path.is_file()
        return path

    def rows(self):
        with open(self.csv_path, encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def by_name(self):
        return {r["name"]: r for r in self.rows()}


@pytest.fixture
def lz_env(aws, tmp_path):
    aws.seed("demo")
    aws.state.update_settings(time_scale=TIME_SCALE)
    aws.state.calls.reset()
    env = dict(os.environ)
    env.update(aws.env("us-east-1"))
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        CMS_PATCHING_REPORT_DIR=str(tmp_path / "reports"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("AWS_PROFILE", None)
    yield env
    aws.state.update_settings(time_scale=1.0)


@pytest.fixture
def playbook(lz_env, tmp_path):
    """playbook(*args, lz='demo', env=None) -> Run; runs ansible-playbook site.yml from the repo root."""

    def run(*args, lz="demo", env=None, timeout=600):
        command = [ANSIBLE_PLAYBOOK, "site.yml"] + (["-e", "lz=%s" % lz] if lz else []) + list(args)
        proc = subprocess.run(
            command,
            cwd=REPO,
            env=dict(lz_env, **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(proc, tmp_path / "reports")

    return run


def calls(aws):
    return aws.state.calls.snapshot()["operations"]


def write_calls(aws):
    prefixes = ("Create", "Send", "Delete", "Deregister", "Cancel", "Run", "Terminate", "Modify", "Start", "Stop")
    return {op: n for op, n in calls(aws).items() if op.split(":", 1)[1].startswith(prefixes)}


def control(aws, path):
    with urllib.request.urlopen(aws.endpoint + "/_sandbox/" + path, timeout=10) as response:  # nosec - loopback
        return json.loads(response.read())


ACCOUNTS = {"123456789012": None, "210987654321": "arn:aws:iam::210987654321:role/CmsPatchingRole"}


def sessions(aws):
    """boto3 sessions for both demo accounts (the second by assume-role, as the modules do)."""
    base = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    sts = base.client("sts", region_name="us-east-1", endpoint_url=aws.endpoint)
    creds = sts.assume_role(RoleArn=ACCOUNTS["210987654321"], RoleSessionName="tests", ExternalId="cms-demo")["Credentials"]
    other = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"]
    )
    return {"123456789012": base, "210987654321": other}


def patch_commands(aws):
    """Every AWS-RunPatchBaseline command in both demo accounts and regions."""
    found = []
    for session in sessions(aws).values():
        for region in ("us-east-1", "eu-west-1"):
            ssm = session.client("ssm", region_name=region, endpoint_url=aws.endpoint)
            for command in ssm.list_commands()["Commands"]:
                if command["DocumentName"] == "AWS-RunPatchBaseline":
                    found.append(command)
    return found


def sent_instance_ids(aws):
    return {i for command in patch_commands(aws) for i in command["InstanceIds"]}
