"""Helpers for tests that drive the fleet logic directly against the in-process sandbox.

Waiting is simulated: the code under test gets the sandbox clock as its clock and a sleep that moves sandbox
time forward, so a test walks through 'pending' -> 'available' (or past a deadline) without sleeping.
"""

from demo_fleet import BACKUP_OPTIONS, DEMO_ACCOUNTS, DEMO_REGIONS, DEMO_RULES, PATCH_OPTIONS

from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy
from ansible_collections.cms.patching.plugins.module_utils._scan import scan
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession


class SandboxTime:
    """AWS's clock as the sandbox keeps it: its resources live on the sandbox clock, which tests move forward.

    (The sandbox's HTTP Date header follows the wall clock, so the fleet's ServerClock would not see those jumps.)
    """

    def __init__(self, state, offset=0.0):
        self.state, self.offset = state, offset

    def observe(self, response):
        pass

    def now(self):
        return self.state.now() + self.offset


def fleet_for(sandbox, accounts=None):
    connection = dict(region="us-east-1", endpoint_url=sandbox.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    return FleetSession(connection, accounts or DEMO_ACCOUNTS, policy=RetryPolicy(base_delay=0.01, max_delay=0.02, sleep=lambda s: None))


def demo_targets(sandbox, fleet):
    records, errors = scan(fleet, [a["account_id"] for a in DEMO_ACCOUNTS], DEMO_REGIONS, {"tag:Environment": "demo"}, DEMO_RULES)
    assert not errors
    return [r for r in records if r["target"]]


def backup_run(sandbox, fleet, instances, run_id="run-1", check_mode=False, **options):
    opts = dict(BACKUP_OPTIONS, **options)
    return BackupRun(
        fleet, [dict(i) for i in instances], run_id, "demo", opts, check_mode=check_mode, clock=sandbox.state.now, sleep=sandbox.state.clock.advance
    )


def ops(sandbox):
    return sandbox.state.calls.snapshot()["operations"]


def patch_run(sandbox, fleet, instances, run_id="run-1", check_mode=False, **options):
    from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun

    opts = dict(PATCH_OPTIONS, **options)
    # backup_run tags the AMIs with landing zone demo; the patch gate wants the same landing zone.
    opts.setdefault("lz", "demo")
    opts.setdefault("run_started", sandbox.state.now() - 3600)
    return PatchRun(fleet, [dict(i) for i in instances], run_id, opts, check_mode, sandbox.state.now, sandbox.state.clock.advance)
