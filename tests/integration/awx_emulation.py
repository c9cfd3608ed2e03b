"""Jobs run the way AWX / Ansible Automation Platform runs them, for the workflow and slicing tests.

ansible-runner with the project as the working directory (the project's ansible.cfg applies, no ANSIBLE_CONFIG), the
job's own private data directory and report directory (an AWX job's filesystem is its own and is thrown away), and its
extra variables written to env/extravars as AWX writes them: the job template's variables as they are, everything that
came from outside (a previous node's set_stats artifacts, survey answers) tagged !unsafe so Ansible never templates it.
"""

import csv
import os
import pathlib
import sys

import ansible_runner
import yaml
from conftest import REPO

BIN = pathlib.Path(sys.executable).parent


class Unsafe(str):
    """A string AWX writes as !unsafe."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))


def unsafe(value):
    """The value with every string in it tagged !unsafe, as AWX passes artifacts to the next workflow node."""
    if isinstance(value, dict):
        return {key: unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unsafe(item) for item in value]
    return Unsafe(value) if isinstance(value, str) else value


class Job:
    """One finished job: its runner, its report directory, its artifacts and its CSV rows."""

    def __init__(self, runner, reports):
        self.runner = runner
        self.reports = reports
        self.output = runner.stdout.read()
        self.events = list(runner.events)
        [stats] = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        self.stats = stats["event_data"]
        # When the job started and ended (ISO times of its first and last events).
        self.span = (self.events[0]["created"], stats["created"])

    @property
    def artifacts(self):
        """The job's artifact_data: what set_stats published, what AWX passes to the next workflow node."""
        return self.stats.get("artifact_data") or {}

    def rows(self):
        [path] = list(self.reports.glob("*.csv"))
        with open(path, encoding="utf-8") as handle:
            return list(csv.DictReader(handle))


def job_env(aws, directory):
    """The environment of one job: the sandbox's AWS settings and the job's own report and temp directories."""
    env = dict(aws.env("us-east-1"))
    env.update(
        CMS_PATCHING_REPORT_DIR=str(directory / "reports"),
        ANSIBLE_LOCAL_TEMP=str(directory / "ansible-tmp"),
        PATH="%s:%s" % (BIN, os.environ.get("PATH", "")),
        ANSIBLE_NOCOLOR="1",
    )
    return env


def prepare(aws, directory, extravars, **kwargs):
    """The keyword arguments of ansible_runner.run / run_async for one job; extravars as AWX writes them."""
    private = directory / "private_data_dir"
    (private / "env").mkdir(parents=True)
    (private / "env" / "extravars").write_text(yaml.dump(extravars, Dumper=_Dumper))
    return dict(
        private_data_dir=str(private),
        project_dir=str(REPO),
        playbook="site.yml",
        envvars=job_env(aws, directory),
        quiet=True,
        timeout=600,
        **kwargs,
    )


def run_job(aws, directory, extravars, **kwargs):
    return Job(ansible_runner.run(**prepare(aws, directory, extravars, **kwargs)), directory / "reports")
