"""Cancel means stop: a signal to the module, or its controller exiting, stops it between AWS calls.

The process tests run real processes: a "module" that makes calls through RetryingClient (each call appends a line to a
file), under a parent that the test kills or signals.  ansible-core's workers run in their own session, so a Ctrl-C or
an AWX cancel never reaches the module as a signal: it must notice that its controller is gone.
"""

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import DEMO_ACCOUNTS, DEMO_REGIONS

from ansible_collections.cms.patching.plugins.module_utils import _cancel
from ansible_collections.cms.patching.plugins.module_utils._errors import FleetError

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
# The fake module: installs the watch, then makes calls through RetryingClient in `threads` threads until cancelled.
MODULE = textwrap.dedent("""
    import signal, sys, threading, time
    sys.path[:0] = [{repo!r}, {collections!r}]
    from ansible_collections.cms.patching.plugins.module_utils import _cancel
    from ansible_collections.cms.patching.plugins.module_utils._retry import CallStats, RetryingClient, RetryPolicy

    calls_path, result_path, threads, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    lock = threading.Lock()

    class Fake:
        class meta:
            method_to_api_mapping = {{"create_image": "CreateImage"}}
            class service_model:
                service_name = "ec2"
        def create_image(self, **kwargs):
            with lock, open(calls_path, "a") as handle:
                handle.write("call\\n")
            time.sleep(0.01)
            return {{}}

    _cancel.install()

    def marked(signum, frame):
        # Marks in the call log the moment the module handles the signal, then hands it to the watch's own handler.
        with lock, open(calls_path, "a") as handle:
            handle.write("signal\\n")
        _cancel._on_signal(signum, frame)

    for signum in _cancel.SIGNALS:
        signal.signal(signum, marked)
    with open(result_path + ".chain", "w") as handle:
        handle.write(" ".join(a.name for a in _cancel.ancestry()))
    client = RetryingClient(Fake(), RetryPolicy(), CallStats())
    outcome = []

    def loop():
        try:
            while True:
                if mode == "sleep":
                    _cancel.sleep(3600)
                client.create_image(InstanceId="i-01234567", Name="n")
        except _cancel.Cancelled as exc:
            with lock:
                outcome.append(str(exc))

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with open(result_path, "w") as handle:
        handle.write("\\n".join(outcome))
    """).format(repo=REPO, collections=os.path.join(REPO, "collections"))

# A parent that starts the module and then waits (as ansible's worker waits for the module).
PARENT = textwrap.dedent("""
    import subprocess, sys, time
    fd = int(sys.argv[1])
    subprocess.Popen([sys.executable] + sys.argv[2:], pass_fds=[fd])
    time.sleep(3600)
    """)

# A fake controller named ansible-playbook: it forks a worker (same command line, as ansible-core's workers), the worker
# starts its own session and runs the module through /bin/sh, as the local connection does.
CONTROLLER = "#!{python}\n" + textwrap.dedent("""
    import os, subprocess, sys, time
    fd = int(sys.argv[1])
    if os.fork() == 0:
        os.setsid()
        command = " ".join([sys.executable] + sys.argv[2:])
        subprocess.Popen(["/bin/sh", "-c", command + "; true"], pass_fds=[fd]).wait()
        os._exit(0)
    time.sleep(3600)
    """)


def lines(path):
    try:
        with open(path) as handle:
            return handle.read().count("call")
    except FileNotFoundError:
        return 0


def wait_for_calls(path, count=5, limit=20.0):
    deadline = time.monotonic() + limit
    while lines(path) < count:
        assert time.monotonic() < deadline, "the fake module never started calling"
        time.sleep(0.02)


def exited_within(read_fd, seconds):
    """True when every holder of the pipe's write end (the module) has exited within seconds."""
    try:
        ready, _w, _x = select.select([read_fd], [], [], seconds)
        return bool(ready) and os.read(read_fd, 1) == b""
    finally:
        os.close(read_fd)


@pytest.fixture
def files(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(MODULE)
    return str(module), str(tmp_path / "calls"), str(tmp_path / "result")


@pytest.fixture
def started():
    """Processes a test starts; killed afterwards whatever the test's outcome (a parent sleeps an hour otherwise)."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_under(parent_argv, files, started, threads=1, mode="calls"):
    module, calls, result = files
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(parent_argv + [str(write_fd), module, calls, result, str(threads), mode], pass_fds=[write_fd])
    started.append(proc)
    os.close(write_fd)
    return proc, read_fd


def test_module_stops_when_its_parent_is_killed(files, tmp_path, started):
    parent = tmp_path / "parent.py"
    parent.write_text(PARENT)
    proc, read_fd = start_under([sys.executable, str(parent)], files, started)
    module, calls, result = files
    wait_for_calls(calls)
    proc.kill()
    proc.wait()
    made = lines(calls)
    assert exited_within(read_fd, 2.0), "the module kept running after its parent was killed"
    assert lines(calls) - made <= 1  # at most the call that was already under way
    with open(result) as handle:
        assert handle.read().startswith("cancelled: ")


def test_module_stops_when_ansible_playbook_exits_although_its_worker_lives_on(files, tmp_path, started):
    controller = tmp_path / "ansible-playbook"
    controller.write_text(CONTROLLER.format(python=sys.executable))
    controller.chmod(0o755)
    proc, read_fd = start_under([str(controller)], files, started, threads=3)
    module, calls, result = files
    wait_for_calls(calls)
    with open(result + ".chain") as handle:
        chain = handle.read().split()
    # sh, the forked worker, the controller - and nothing above it (a shell above a nohup'd playbook may exit).
    assert chain[-2:] == ["ansible-playbook", "ansible-playbook"] and len(chain) == 3
    proc.kill()  # the controller; its worker (own session) and the module's shell live on
    proc.wait()
    made = lines(calls)
    assert exited_within(read_fd, 2.0), "the module kept calling AWS after ansible-playbook exited"
    assert lines(calls) - made <= 3  # at most one call per thread already under way
    with open(result) as handle:
        outcome = handle.read().splitlines()
    assert len(outcome) == 3 and all(o.startswith("cancelled: ") and "controller is gone" in o for o in outcome)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_the_module_stops_every_thread_between_calls(files, signum, started):
    module, calls, result = files
    proc = subprocess.Popen([sys.executable, module, calls, result, "4", "calls"])
    started.append(proc)
    wait_for_calls(calls)
    proc.send_signal(signum)
    assert proc.wait(timeout=2.0) == 0  # a clean exit, not killed by the signal
    with open(calls) as handle:
        log = handle.read().split()
    # After the module handled the signal, at most the call each thread had already begun.
    assert log.count("signal") == 1 and log[log.index("signal") + 1 :].count("call") <= 4
    with open(result) as handle:
        outcome = handle.read().splitlines()
    assert outcome == ["cancelled: received %s" % signal.Signals(signum).name] * 4


def test_a_signal_interrupts_a_long_sleep(files, started):
    module, calls, result = files
    proc = subprocess.Popen([sys.executable, module, calls, result, "1", "sleep"])
    started.append(proc)
    deadline = time.monotonic() + 20
    while not os.path.exists(result + ".chain"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=2.0) == 0
    assert lines(calls) == 0
    with open(result) as handle:
        assert handle.read() == "cancelled: received SIGTERM"


def test_cancelled_is_a_fleet_error_and_says_cancelled():
    exc = _cancel.Cancelled("received SIGTERM")
    assert isinstance(exc, FleetError) and str(exc) == "cancelled: received SIGTERM"


def test_check_and_sleep_without_a_watch_do_nothing_special():
    _cancel.check()
    _cancel.sleep(0)


def test_watching_restores_the_signal_handlers_and_forgets_the_cancel():
    before = signal.getsignal(signal.SIGTERM)
    with _cancel.watching():
        assert signal.getsignal(signal.SIGTERM) is _cancel._on_signal
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(_cancel.Cancelled, match="received SIGTERM"):
            _cancel.sleep(5)
        assert _cancel.cancelled() == "received SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    assert _cancel.cancelled() is None
    _cancel.check()


def test_watching_from_a_thread_watches_the_ancestry_without_signal_handlers():
    errors = []

    def run():
        try:
            with _cancel.watching():
                _cancel.check()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert errors == []


def test_ancestry_reads_proc_and_stops_at_the_parent_without_a_controller():
    chain = _cancel.ancestry()
    assert [a.pid for a in chain] == [os.getppid()]


class _Module:
    check_mode = False

    def __init__(self):
        self.failed = None
        self.exited = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise SystemExit(1)

    def exit_json(self, **kwargs):
        self.exited = kwargs
        raise SystemExit(0)


class _Fleet:
    warnings = []  # FleetSession.warnings: nothing degraded

    class stats:  # noqa: N801
        @staticmethod
        def as_dict():
            return {"calls": {"ec2:CreateImage": 3}, "retries": {}, "total": 3}


def test_run_fleet_module_reports_a_cancel_as_a_clean_failure_with_the_calls_made():
    from ansible_collections.cms.patching.plugins.module_utils._module import run_fleet_module

    def work():
        raise _cancel.Cancelled("received SIGTERM")

    module = _Module()
    with pytest.raises(SystemExit):
        run_fleet_module(module, _Fleet(), work)
    assert module.failed == {"msg": "cancelled: received SIGTERM", "cancelled": True, "api_calls": _Fleet.stats.as_dict()}


def test_run_fleet_module_reports_work_that_swallowed_the_cancel_as_cancelled():
    from ansible_collections.cms.patching.plugins.module_utils._module import run_fleet_module

    def work():
        # Per-item error handling (fan_out) caught the Cancelled of each item and the work returned.
        _cancel.cancel("the controller is gone")
        return {"changed": True, "instances": [{"instance_id": "i-01234567", "status": "failed", "error": "cancelled: the controller is gone"}]}

    module = _Module()
    with pytest.raises(SystemExit):
        run_fleet_module(module, _Fleet(), work)
    assert module.exited is None
    assert module.failed["msg"] == "cancelled: the controller is gone" and module.failed["cancelled"] is True
    assert module.failed["instances"][0]["instance_id"] == "i-01234567" and module.failed["api_calls"]["total"] == 3
    assert _cancel.cancelled() is None  # the watch ended with the work


def test_sigterm_stops_a_real_backup_module_in_its_poll_wait(demo, aws, run_module, tmp_path, started):
    """ami_backup_verified in its own process against the sandbox, waiting a 60 s poll interval: SIGTERM ends it at once, cleanly."""
    import json

    from ansible_collections.cms.patching.plugins.modules import ec2_patch_scan

    scan = run_module(ec2_patch_scan, dict(accounts=DEMO_ACCOUNTS, regions=DEMO_REGIONS, filters={"tag:Environment": "demo"}))
    targets = [i for i in scan["instances"] if i["target"]]
    aws.state.update_settings(ami_pending_seconds=3600)  # the module would poll for an hour
    aws.state.calls.reset()
    args = tmp_path / "args.json"
    module_args = dict(accounts=DEMO_ACCOUNTS, instances=targets, run_id="run-cancel", lz="demo", poll_interval=60, wait_timeout=3600)
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    code = "import sys; sys.path[:0] = [%r, %r]; from ansible_collections.cms.patching.plugins.modules import ami_backup_verified; ami_backup_verified.main()"
    env = dict(os.environ, **aws.env("us-east-1"))
    proc = subprocess.Popen(
        [sys.executable, "-c", code % (REPO, os.path.join(REPO, "collections")), str(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    started.append(proc)
    deadline = time.monotonic() + 60
    while True:
        ops = aws.state.calls.snapshot()["operations"]
        if ops.get("ec2:CreateImage", 0) == len(targets) and ops.get("ec2:DescribeImages", 0) > 0:
            break  # every AMI asked for, the first look at them made: the module is in (or entering) its poll wait
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    writes = {k: n for k, n in ops.items() if k.split(":")[1].startswith(("Create", "Deregister", "Delete"))}
    proc.send_signal(signal.SIGTERM)
    out, _err = proc.communicate(timeout=5)  # not the 60 s of its poll interval
    result = json.loads(out)
    assert result["failed"] and result["cancelled"] is True and result["msg"] == "cancelled: received SIGTERM"
    after = aws.state.calls.snapshot()
    assert {k: n for k, n in after["operations"].items() if k in writes or k.split(":")[1].startswith(("Create", "Deregister", "Delete"))} == writes
    # The result carries every call the module made: the sandbox saw no other.
    assert result["api_calls"]["total"] == after["total"]


def test_run_fleet_module_reports_a_cancel_wrapped_in_another_error_as_cancelled():
    from ansible_collections.cms.patching.plugins.module_utils._module import run_fleet_module

    def work():
        _cancel.cancel("received SIGINT")
        raise FleetError("could not read AMI state in 123456789012/eu-west-1: cancelled: received SIGINT")

    module = _Module()
    with pytest.raises(SystemExit):
        run_fleet_module(module, _Fleet(), work)
    assert module.failed == {"msg": "cancelled: received SIGINT", "cancelled": True, "api_calls": _Fleet.stats.as_dict()}
