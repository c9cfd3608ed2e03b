"""Helpers for tests that drive the fleet logic directly against the in-process sandbox.

Waiting is simulated: the code under test gets the sandbox clock as its clock and a sleep that moves sandbox
time forward, so a test walks through 'pending' -> 'available' (or past a deadline) without sleeping.
"""

from conftest import DEMO_ACCOUNTS, DEMO_REGIONS

from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy
from ansible_collections.cms.patching.plugins.module_utils._scan import scan
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession

BACKUP_OPTIONS = dict(
    no_reboot=True,
    name_template="cms-patching-{instance_id}-{run_id}",
    description_template="Pre-patch backup of {instance_id} ({name}) for run {run_id} in landing zone {lz}",
    tags={"Team": "platform"},
    snapshot_tags_on_create=True,
    wait_timeout=300,
    poll_interval=2,
    max_concurrent_creates=10,
    max_workers=4,
)
DEMO_RULES = {"exclude_tags": {"Patch": "never"}, "instance_states": ["running"], "require_ssm_online": True}


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


PATCH_OPTIONS = dict(
    wave="all",
    operation="Install",
    reboot_option="RebootIfNeeded",
    baseline_override=None,
    install_override_list=None,
    snapshot_id=None,
    max_concurrency="50%",
    max_errors="100%",
    delivery_timeout=600,
    execution_timeout=7200,
    wait_timeout=10800,
    poll_interval=2,
    output_s3_bucket=None,
    output_s3_prefix=None,
    cloudwatch_output=False,
    require_backup=True,
    pre_checks={},
    post_checks={},
    max_workers=4,
)


def patch_run(sandbox, fleet, instances, run_id="run-1", check_mode=False, **options):
    from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun

    opts = dict(PATCH_OPTIONS, **options)
    # backup_run tags the AMIs with landing zone demo; the patch gate wants the same landing zone.
    opts.setdefault("lz", "demo")
    opts.setdefault("run_started", sandbox.state.now() - 3600)
    return PatchRun(fleet, [dict(i) for i in instances], run_id, opts, check_mode, sandbox.state.now, sandbox.state.clock.advance)
