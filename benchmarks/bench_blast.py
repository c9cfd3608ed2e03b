"""Blast radius at fleet size (issue 8 item 1): one patch wave of 1,000 instances over 2 accounts x 2 regions, run
by the module logic (PatchRun, as ssm_patch_run runs it) against the sandbox.

- concurrency: max_concurrency "10": the peak number of invocations InProgress at once over the whole wave, from the
  sandbox's invocation timelines (state.peak_in_progress(comment_contains="wave=<name>")), against the budget; with
  invocations lasting several poll intervals the budget should also be used (peak >= 80 % of it).
- error budget: max_errors "5" with a patch_fail fault on 30 % of the instances: how many fail (at most 5 + the
  invocations in flight when the 5th failure ended), and how many are reported cancelled / not_run instead.

The sandbox runs its clock `time_scale` times faster than the wall; invocations last `invocation_seconds` to
`invocation_max_seconds` on that clock (the fast profile otherwise: no throttling or server errors, which the
playbook benchmark covers).
"""

import collections
import random
import sys
import time

from bench_aws import ACCOUNTS, REGIONS, REPO

sys.path[:0] = [str(REPO), str(REPO / "collections")]

# pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun  # noqa: E402
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy  # noqa: E402
from ansible_collections.cms.patching.plugins.module_utils._scan import scan  # noqa: E402
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession  # noqa: E402

TIME_SCALE = 60.0
# 45-90 s on AWS's clock = 0.75-1.5 wall seconds: 3-6 poll intervals of 0.25 s.
SETTINGS = {"time_scale": TIME_SCALE, "invocation_seconds": 45.0, "invocation_max_seconds": 90.0, "reboot_seconds": 5.0, "reboot_max_seconds": 10.0}
POLL_INTERVAL = 0.25
OPTIONS = dict(
    operation="Install",
    reboot_option="RebootIfNeeded",
    snapshot_id=None,
    delivery_timeout=600,
    execution_timeout=7200,
    # AWS's clock: 1,000 invocations of ~75 s, 10 at a time, take about 2.5 hours there.
    wait_timeout=86400,
    poll_interval=POLL_INTERVAL,
    require_backup=False,
    pre_checks={},
    post_checks={},
    compliance_wait=300,
    max_workers=8,
    lz="bench",
)


def _fleet(sandbox):
    connection = dict(region=REGIONS[0], endpoint_url=sandbox.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    return FleetSession(connection, ACCOUNTS, policy=RetryPolicy(base_delay=0.2, max_delay=2.0))


def _seeded(count):
    from sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    sandbox = Sandbox.start(settings=SETTINGS)
    spec = {
        "count": count,
        "accounts": [dict({"id": a["account_id"]}, **{k: v for k, v in a.items() if k != "account_id"}) for a in ACCOUNTS],
        "regions": REGIONS,
        "reservations": 12,
        "managed_ratio": 1.0,
        "environment": "bench",
    }
    sandbox.seed({"synthetic": spec})
    fleet = _fleet(sandbox)
    records = [r for r in scan(fleet, [a["account_id"] for a in ACCOUNTS], REGIONS, {"tag:Environment": "bench"}, {})[0] if r["target"]]
    return sandbox, fleet, records


def _wave(fleet, records, wave, max_concurrency, max_errors):
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-blast"
    options = dict(OPTIONS, wave=wave, max_concurrency=max_concurrency, max_errors=max_errors, run_started=time.time() - 120)
    started = time.monotonic()
    results = PatchRun(fleet, records, run_id, options, False, time.time, time.sleep).run()
    return results, time.monotonic() - started


def _in_flight_at(sandbox, wave, moment):
    """Invocations of the wave InProgress at `moment` (sandbox time), and the failure ends in order."""
    state = sandbox.state
    running, failures = 0, []
    for command in state.commands.all():
        if "wave=%s" % wave not in command.request["Comment"]:
            continue
        for timeline in state.commands.timelines(command):
            if timeline.final.details == "Failed" and timeline.executed_from is not None:
                failures.append(timeline.ended)
            if moment is not None and any(start <= moment < end for start, end in timeline.in_progress()):
                running += 1
    return running, sorted(failures)


def _mean_in_progress(sandbox, wave):
    """Time-weighted mean number of invocations InProgress between the wave's first start and last end."""
    state = sandbox.state
    spans = []
    for command in state.commands.all():
        if "wave=%s" % wave in command.request["Comment"]:
            for timeline in state.commands.timelines(command):
                spans.extend(timeline.in_progress())
    if not spans:
        return 0.0
    first, last = min(a for a, _b in spans), max(b for _a, b in spans)
    return sum(b - a for a, b in spans) / (last - first) if last > first else 0.0


def concurrency(count=1000, max_concurrency="10"):
    sandbox, fleet, records = _seeded(count)
    try:
        wave = "conc%s" % max_concurrency.replace("%", "pct")
        results, seconds = _wave(fleet, records, wave, max_concurrency, "100%")
        peak = sandbox.state.peak_in_progress(comment_contains="wave=%s" % wave)
        mean = _mean_in_progress(sandbox, wave)
        commands = [c for c in sandbox.state.command_log() if "wave=%s" % wave in c["comment"]]
    finally:
        sandbox.stop()
    statuses = collections.Counter(r["patch_status"] for r in results)
    budget = int(max_concurrency) if not max_concurrency.endswith("%") else max(1, len(records) * int(max_concurrency[:-1]) // 100)
    return {
        "test": "max_concurrency %r" % max_concurrency,
        "instances": len(records),
        "locations": len({(r["account_id"], r["region"]) for r in records}),
        "budget": budget,
        "peak_in_progress": peak["peak"],
        "mean_in_progress": round(mean, 2),
        "send_commands": len(commands),
        "statuses": dict(statuses),
        "wall_seconds": round(seconds, 1),
        "calls": sum(fleet.stats.calls.values()),
        "goal_met": peak["peak"] <= budget and peak["peak"] >= 0.8 * budget and statuses.get("success", 0) == len(records),
    }


def error_budget(count=1000, max_errors="5", max_concurrency="10", fault_ratio=0.3, seed=8):
    sandbox, fleet, records = _seeded(count)
    try:
        faulty = random.Random(seed).sample([r["instance_id"] for r in records], int(len(records) * fault_ratio))
        for instance_id in faulty:
            sandbox.state.faults.add("patch_fail", instance_id=instance_id)
        wave = "err%s" % max_errors.replace("%", "pct")
        results, seconds = _wave(fleet, records, wave, max_concurrency, max_errors)
        _running, failures = _in_flight_at(sandbox, wave, None)
        allowed = int(max_errors)
        fifth = failures[allowed - 1] if len(failures) >= allowed else None
        in_flight, _failures = _in_flight_at(sandbox, wave, fifth)
        peak = sandbox.state.peak_in_progress(comment_contains="wave=%s" % wave)
    finally:
        sandbox.stop()
    statuses = collections.Counter(r["patch_status"] for r in results)
    failed = statuses.get("failed", 0)
    reasons = collections.Counter(r["error"].split(":")[0] for r in results if r["patch_status"] in ("cancelled", "not_run"))
    # The invocation that was the 5th failure is not "in flight" after it: the bound is 5 + the others running then.
    bound = allowed + in_flight
    return {
        "test": "max_errors %r, max_concurrency %r, patch_fail on %d%%" % (max_errors, max_concurrency, round(100 * fault_ratio)),
        "instances": len(records),
        "faulty": len(faulty),
        "failed": failed,
        "in_flight_when_budget_spent": in_flight,
        "bound": bound,
        "beyond_budget": max(0, failed - allowed),
        "statuses": dict(statuses),
        "cancelled_or_not_run": statuses.get("cancelled", 0) + statuses.get("not_run", 0),
        "reasons": dict(reasons),
        "peak_in_progress": peak["peak"],
        "wall_seconds": round(seconds, 1),
        "goal_met": failed <= bound
        and sum(statuses.values()) == len(records)
        and statuses.get("cancelled", 0) + statuses.get("not_run", 0) + statuses.get("success", 0) + failed == len(records),
    }


if __name__ == "__main__":
    import json

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(json.dumps(concurrency(size), indent=1))
    print(json.dumps(error_budget(size), indent=1))
