"""Cancel means stop, and a run never patches an instance twice, whatever happens to its processes and clocks.

An AWX cancel (ansible-runner SIGKILLs ansible-playbook's process group), a Ctrl-C (SIGINT to the group) or a lost terminal
(SIGHUP) ends the playbook. ansible-core's workers run in their own session: after a SIGKILL or SIGHUP nothing reaches the
modules, which must notice that their controller is gone and stop between AWS calls. What reached
AWS is read from the sandbox's own logs: the call log (wall time, operation, write flag of every call) and the
command log (every SendCommand accepted).
"""

import collections
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import ANSIBLE_PLAYBOOK, REPO, TIME_SCALE, Run

# What "stop" allows: a call already on its way when the playbook exited.
GRACE_SECONDS = 2.0
# How long the sandbox is watched after the playbook exited: longer than a poll round, an AMI or an invocation below.
WATCH_SECONDS = 12.0
# The full demo run (test_site): two hosts fail on purpose.
SUMMARY = "30 seen, 21 targets; backup: 20 verified, 1 failed, 9 skipped; patch: 19 success, 1 failed, 10 skipped"
MARKER = "CMS_PATCHING_TEST_RUN"


class Playbook:
    """ansible-playbook site.yml in its own process group (as ansible-runner starts it), its output read by a thread."""

    def __init__(self, lz_env, run_id, *args):
        # Every process of this run (the workers and modules that outlive the playbook included) carries the marker.
        self.marker = uuid.uuid4().hex
        self.lines = []
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [ANSIBLE_PLAYBOOK, "site.yml", "-e", "lz=demo", "-e", "run_id=" + run_id] + list(args),
            cwd=REPO,
            env=dict(lz_env, **{MARKER: self.marker}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.exited_at = None
        # A module that outlives the playbook keeps the pipe open: read it aside so the exit is seen when it happens.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_until(self, condition, what, timeout=300):
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, "the playbook ended before %s:\n%s" % (what, self.output[-3000:])
            assert time.monotonic() < deadline, "never saw %s:\n%s" % (what, self.output[-3000:])
            time.sleep(0.1)

    def signal(self, signum):
        """Signal the playbook's whole process group (what ansible-runner's cancel and a terminal's Ctrl-C do)."""
        os.killpg(self.proc.pid, signum)

    def wait(self, timeout=600):
        self.proc.wait(timeout=timeout)
        self.exited_at = time.time()
        return self.proc.returncode

    def survivors(self):
        """Pids of this run's processes still alive (found by the marker in their environment)."""
        found = []
        needle = ("%s=%s" % (MARKER, self.marker)).encode()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % name, "rb") as handle:
                    if needle in handle.read().split(b"\0"):
                        with open("/proc/%s/stat" % name, encoding="utf-8") as stat:
                            if stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                                found.append(int(name))
            except OSError:
                continue
        return found

    def kill(self):
        """Kill whatever of this run is still running (the playbook, and any process that outlived it), by pid."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        for pid in self.survivors():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._reader.join(timeout=10)
        self.proc.stdout.close()


@pytest.fixture
def started(lz_env):
    """started(run_id, *args) -> Playbook; every process a test started is killed at its end, whatever the outcome."""
    runs = []

    def start(run_id, *args):
        runs.append(Playbook(lz_env, run_id, *args))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def first_call(aws, operation):
    return any(c["operation"] == operation for c in aws.state.calls.log())


def patch_installs(aws, run_id):
    """{instance id: number of AWS-RunPatchBaseline Install invocations of this run}, from the sandbox's command log."""
    counts = collections.Counter()
    for command in aws.state.command_log():
        if command["document"] == "AWS-RunPatchBaseline" and "run=%s " % run_id in command["comment"] + " ":
            if command["parameters"].get("Operation") == ["Install"]:
                counts.update(command["instance_ids"])
    return counts


def rest_wave_sent(aws, run_id):
    return any(
        c["document"] == "AWS-RunPatchBaseline" and "run=%s " % run_id in c["comment"] and c["comment"].endswith("wave=rest") for c in aws.state.command_log()
    )


def images_per_instance(aws):
    return collections.Counter(image["instance_id"] for image in aws.state.describe()["images"])


def late_writes(aws, run):
    """Write calls that reached the sandbox more than GRACE_SECONDS after the playbook exited.

    Every write (CreateImage, CreateTags, SendCommand, DeregisterImage, DeleteSnapshot, AssumeRole...: the sandbox's write flag, all
    but Describe/List/Get/Search) counts, except CancelCommand, which would only stop what the run had started.
    """
    return [c for c in aws.state.calls.log(since=run.exited_at + GRACE_SECONDS) if c["write"] and c["operation"] != "ssm:CancelCommand"]


def cancelled(aws, run, signum):
    """Signal the run, wait for the playbook to exit, watch the sandbox; return the calls that came too late."""
    run.signal(signum)
    assert run.wait(timeout=300) != 0
    time.sleep(WATCH_SECONDS)
    return late_writes(aws, run)


def csv_rows(tmp_path, run_id):
    report = tmp_path / "reports" / ("demo-%s.csv" % run_id)
    return Run(subprocess.CompletedProcess([], 0, stdout="CSV report: %s\n" % report), tmp_path / "reports").by_name()


def assert_resumed_completely(aws, resumed, run_id):
    assert resumed.rc == 2, resumed.output[-3000:]
    assert "Duplicate" not in resumed.output and "Traceback" not in resumed.output
    assert SUMMARY in resumed.output, resumed.output[-3000:]
    rows = resumed.by_name()
    assert len(rows) == 30
    assert not [r for r in rows.values() if "Duplicate" in r["error"]]
    # One AMI per target over both runs (web-03's failed one included), one patch per instance.
    per_instance = images_per_instance(aws)
    assert len(per_instance) == 21 and set(per_instance.values()) == {1}
    installs = patch_installs(aws, run_id)
    assert set(installs.values()) == {1}
    verified = {r["instance_id"] for r in rows.values() if r["backup_status"] == "verified"}
    assert set(installs) == verified and len(verified) == 20
    return rows


def signal_ids(signums):
    return [signal.Signals(signum).name for signum in signums]


# SIGINT / SIGTERM (a Ctrl-C, a kill of the playbook): ansible-core 2.19 forwards them to its workers, which pass them on to their
# own process group, so the module gets the signal itself. SIGKILL of the group: ansible-runner's cancel (Runner.handle_termination,
# what an AWX cancel comes to); nothing is forwarded and the workers live in sessions of their own, so only the modules' watch of
# their controller stops them. SIGHUP: the operator's terminal or SSH session is gone; ansible-playbook dies without forwarding.
BACKUP_SIGNALS = [signal.SIGINT, signal.SIGKILL]
WAVE_SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]
# The controller can still write its report after these.
REPORTED = (signal.SIGINT, signal.SIGTERM)


@pytest.mark.parametrize("signum", BACKUP_SIGNALS, ids=signal_ids(BACKUP_SIGNALS))
def test_cancel_during_backup_stops_aws_writes_and_a_resume_adopts_the_amis(aws, tmp_path, playbook, started, signum):
    run_id = "20261201T140000Z-cancel-backup-%s" % signal.Signals(signum).name.lower()
    # AMIs take 20 sandbox s (5 wall s) and one module call waits for all of them (progress_interval 0): a module that outlived
    # its playbook would go on creating them, then tag them verified, while the sandbox is watched.
    aws.state.update_settings(ami_pending_seconds=20, snapshot_pending_seconds=20)
    run = started(run_id, "-e", "backup_progress_interval=0", "-e", "backup_max_concurrent_creates=2")
    run.wait_until(lambda: first_call(aws, "ec2:CreateImage"), "the first CreateImage")
    late = cancelled(aws, run, signum)
    assert late == [], "write calls more than %.0f s after the playbook exited: %s" % (GRACE_SECONDS, late)
    assert run.survivors() == [], "processes of the cancelled run still alive"
    if signum in REPORTED:
        # The report callback still wrote every row; the ones the run did not get to say so.
        rows = csv_rows(tmp_path, run_id)
        assert len(rows) == 30
        assert {r["patch_status"] for r in rows.values() if r["target"] == "true"} == {"not_run"}
    made = images_per_instance(aws)
    assert made and set(made.values()) == {1}

    # Right away, the same run ID: the AMIs the cancelled run made are adopted (the pending ones finish on the sandbox's clock).
    aws.state.update_settings(ami_pending_seconds=3, snapshot_pending_seconds=4)
    resumed = playbook("-e", "run_id=" + run_id)
    assert_resumed_completely(aws, resumed, run_id)


@pytest.mark.parametrize("signum", WAVE_SIGNALS, ids=signal_ids(WAVE_SIGNALS))
def test_cancel_during_a_patch_wave_stops_aws_writes_and_a_resume_patches_each_instance_once(aws, tmp_path, playbook, started, signum):
    run_id = "20261201T140000Z-cancel-wave-%s" % signal.Signals(signum).name.lower()
    # Invocations take 20 sandbox s (5 wall s) and one module call waits for the whole wave (progress_interval 0): a module that
    # outlived its playbook would dispatch the canary's second instance (50 % of 2 run at once) and send the post-check commands
    # while the sandbox is watched.
    aws.state.update_settings(invocation_seconds=20)
    run = started(run_id, "-e", "patching_progress_interval=0")
    run.wait_until(lambda: patch_installs(aws, run_id), "the first patch command")
    late = cancelled(aws, run, signum)
    assert late == [], "write calls more than %.0f s after the playbook exited: %s" % (GRACE_SECONDS, late)
    assert run.survivors() == [], "processes of the cancelled run still alive"
    if signum in REPORTED:
        rows = csv_rows(tmp_path, run_id)
        assert len(rows) == 30
        assert sum(r["backup_status"] == "verified" for r in rows.values()) == 20
    sent = patch_installs(aws, run_id)
    assert sent and set(sent.values()) == {1}

    # Right away, the same run ID: the canary's command is found, not sent again; every other instance is patched once.
    aws.state.update_settings(invocation_seconds=2)
    resumed = playbook("-e", "run_id=" + run_id)
    assert_resumed_completely(aws, resumed, run_id)


def test_kills_resumes_and_skewed_clocks_never_patch_an_instance_twice(aws, playbook, started):
    """Issue 8 item 2's proof: AWS-RunPatchBaseline Install invocations per instance, counted from the sandbox's command log.

    The run ID carries the controller's time, as a default run ID does. AWS's clock is first 10 minutes behind the controller's
    (set before any AMI or command exists), so every command of the run is older than its run ID says; for the last resume it
    jumps to 10 minutes ahead. Finding the run's commands by a time window misses them and patches again.
    """
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-one-patch"
    # The sandbox's clock moves back with the skew: seed again after it, so the demo's faults start on the skewed clock.
    aws.reset()
    aws.state.update_settings(clock_skew_seconds=-600, time_scale=TIME_SCALE, invocation_seconds=20)
    aws.seed("demo")
    aws.state.calls.reset()
    # The clock's last jump (20 minutes) must not end the waves: they get an hour.
    wait = ("-e", "patching_wait_timeout=3600")
    # 1. AWX cancels in the canary wave: SIGKILL of the playbook's process group (ansible-runner's cancel).
    first = started(run_id, *wait)
    first.wait_until(lambda: patch_installs(aws, run_id), "the canary's first patch command")
    first.signal(signal.SIGKILL)
    first.wait()
    assert set(patch_installs(aws, run_id).values()) == {1}
    # 2. Resumed at once (the killed run's command still running), then Ctrl-C once the next wave has been sent.
    second = started(run_id, *wait)
    second.wait_until(lambda: rest_wave_sent(aws, run_id), "the rest wave's first patch command")
    second.signal(signal.SIGINT)
    assert second.wait() != 0
    installs = patch_installs(aws, run_id)
    assert set(installs.values()) == {1}, {i: n for i, n in installs.items() if n > 1}
    before = set(installs)
    # 3. Resumed with AWS's clock 10 minutes ahead of the controller's (a forward jump: what was running has ended).
    aws.state.update_settings(clock_skew_seconds=600, invocation_seconds=2)
    third = playbook("-e", "run_id=" + run_id, *wait)
    assert third.rc == 2, third.output[-3000:]
    assert SUMMARY in third.output, third.output[-3000:]
    installs = patch_installs(aws, run_id)
    assert set(installs.values()) == {1}, {i: n for i, n in installs.items() if n > 1}
    assert before < set(installs)
    # Every instance with a verified backup was patched exactly once over the three processes; no other instance was.
    rows = third.by_name()
    verified = {r["instance_id"] for r in rows.values() if r["backup_status"] == "verified"}
    assert set(installs) == verified and len(verified) == 20
    # The report names, for each, the one command that patched it.
    # (Installs only: a rolled-back instance is rescanned with AWS-RunPatchBaseline Scan after its patch.)
    sent_in = {
        i: c["command_id"]
        for c in aws.state.command_log()
        if c["document"] == "AWS-RunPatchBaseline" and c["parameters"].get("Operation") == ["Install"]
        for i in c["instance_ids"]
    }
    assert {r["instance_id"]: r["patch_command_id"] for r in rows.values() if r["instance_id"] in verified} == {i: sent_in[i] for i in verified}
