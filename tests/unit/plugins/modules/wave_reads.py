"""A wave of a few hundred instances patched the way roles/patching/tasks/wave.yml does it: ssm_patch_run called again
and again (a new PatchRun each time, as each call is a new module process) until nothing is pending.

Used by test_patch_run_reads.py to count the AWS calls per operation from the sandbox's call log.
"""

from conftest import OWN_ACCOUNT
from fleet_helpers import backup_run, fleet_for

from ansible_collections.cms.patching.plugins.module_utils._runcache import RunCache

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]


class SandboxTime:
    """AWS's clock as the module sees it (fleet.server_clock): the sandbox's own clock, which the tests move by sleeping."""

    def __init__(self, sandbox):
        self.sandbox = sandbox

    def observe(self, response):
        pass

    def now(self):
        return self.sandbox.state.now()


def seed_wave(aws, count=240, regions=None):
    """``count`` managed Linux instances in one account and ``regions`` (4 locations), each with a verified AMI of run-1."""
    regions = regions or REGIONS
    summary = aws.seed(
        {
            "synthetic": {
                "count": count,
                "accounts": [OWN_ACCOUNT],
                "regions": regions,
                "managed_ratio": 1.0,
                "windows_ratio": 0.0,
                "reservations": min(count, 4 * len(regions)),
            }
        }
    )
    instances = [
        {"instance_id": r["instance_id"], "account_id": r["account"], "region": r["region"], "name": r["name"], "platform": "linux"}
        for r in summary["instances"]
    ]
    fleet = fleet_for(aws, accounts=[{"account_id": OWN_ACCOUNT}])
    fleet.server_clock = SandboxTime(aws)
    results = backup_run(aws, fleet, instances, max_concurrent_creates=100, max_workers=4).run()
    assert {r["backup_status"] for r in results} == {"verified"}
    return fleet, instances


def realistic_durations(aws):
    """Patches of 1-10 minutes and reboots of up to 2 (AWS's clock), compliance reported up to 40 s after an invocation ends."""
    aws.state.update_settings(
        invocation_seconds=60.0, invocation_max_seconds=600.0, reboot_seconds=20.0, reboot_max_seconds=120.0, compliance_delay_seconds=40.0
    )


def call_log(aws):
    return aws.state.calls.log()


def patch_wave(aws, fleet, instances, cache_root=None, wave="rest", progress_interval=120, poll_interval=30, max_calls=200, **options):
    """Call PatchRun.run(progress_interval) until nothing is pending, a new PatchRun each time (a new module process).

    Returns (the last call's results, [the AWS calls each call made, as the sandbox logged them]).
    """
    from fleet_helpers import patch_run

    per_call = []
    while True:
        logged = len(call_log(aws))
        cache = RunCache("demo", "run-1", wave, root=str(cache_root)) if cache_root else None
        run = patch_run(aws, fleet, instances, wave=wave, poll_interval=poll_interval, lookback_hours=168, **dict({"max_concurrency": "100%"}, **options))
        run.cache = cache
        results = run.run(progress_interval=progress_interval)
        per_call.append(call_log(aws)[logged:])
        if not any(r["patch_status"] == "pending" for r in results) or len(per_call) >= max_calls:
            return results, per_call


def operations(calls):
    """{operation: count} of logged calls."""
    counts = {}
    for call in calls:
        counts[call["operation"]] = counts.get(call["operation"], 0) + 1
    return counts
