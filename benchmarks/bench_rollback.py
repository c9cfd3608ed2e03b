#!/usr/bin/env python
"""Rollback benchmark on the local sandbox: 100 instances, 2 accounts x 2 regions, half with a data volume.

Backs the fleet up (not measured), then rolls every instance back to its verified AMI with the module logic
(``_rollback.RollbackRun``, max_concurrent 5 per account/region) and reports API calls per instance and wall time
against the sandbox's critical path: with max_concurrent instances at once per account/region, each of the
ceil(25 / 5) = 5 batches of a location takes at least one rollback's own durations (restored volume, root
replacement, stop, detach, attach, start; root only for the instances without a data volume).

Usage: python benchmarks/bench_rollback.py [--count 100] [--time-scale 10] [--out FILE]
The Markdown table is printed and appended to --out (default benchmarks/RESULTS.md).
"""

import argparse
import datetime
import math
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "collections")]

from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._rollback import RollbackRun  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._scan import scan  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession  # noqa: E402  pylint: disable=wrong-import-position

ACCOUNTS = [
    {"account_id": "123456789012"},
    {"account_id": "210987654321", "role_arn": "arn:aws:iam::210987654321:role/CmsPatchingRole", "external_id": "cms-demo"},
]
REGIONS = ["us-east-1", "eu-west-1"]
BACKUP = dict(
    no_reboot=True,
    name_template="cms-patching-{instance_id}-{run_id}",
    description_template="bench",
    tags={},
    snapshot_tags_on_create=True,
    wait_timeout=900,
    poll_interval=1,
    max_concurrent_creates=10,
    max_workers=8,
)
ROLLBACK = dict(max_concurrent=5, wait_timeout=3600, poll_interval=1, max_workers=8, post_checks={})


def spec(count):
    instances = []
    for index in range(count):
        account = ("own", "payments")[index % 2]
        region = REGIONS[(index // 2) % 2]
        item = {"name": "rb-%03d" % index, "account": account, "region": region}
        if (index // 4) % 2 == 0:
            item["data_volume_gib"] = 20
        instances.append(item)
    return {
        "name": "rollback-bench",
        "landing_zone": "bench",
        "accounts": [
            {"alias": "own", "id": ACCOUNTS[0]["account_id"]},
            {"alias": "payments", "id": ACCOUNTS[1]["account_id"], "role_arn": ACCOUNTS[1]["role_arn"], "external_id": "cms-demo"},
        ],
        "regions": REGIONS,
        "tags": {"Environment": "bench"},
        "instances": instances,
    }


def critical_path(settings, count, with_data, locations, max_concurrent, poll):
    """Sandbox seconds a location's batches need at least: its batches one after another, each the slowest rollback in it."""
    one_data = settings["volume_create_seconds"] + settings["root_replace_seconds"] + settings["instance_stop_seconds"]
    one_data += 2 * settings["volume_attach_seconds"] + settings["instance_start_seconds"]
    batches = math.ceil(count / locations / max_concurrent)
    # Each step is seen one poll round after it ends at best.
    return batches * (one_data + 6 * poll if with_data else settings["root_replace_seconds"] + poll)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--time-scale", type=float, default=10.0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()

    from sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    with Sandbox.start(settings={"time_scale": args.time_scale}) as sandbox:
        sandbox.seed(spec(args.count))
        connection = dict(region="us-east-1", endpoint_url=sandbox.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
        session = FleetSession(connection, ACCOUNTS, policy=RetryPolicy(base_delay=0.2, max_delay=2.0))
        records, _errors = scan(session, [a["account_id"] for a in ACCOUNTS], REGIONS, {"tag:Environment": "bench"}, {})
        targets = [r for r in records if r["target"]]
        run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-rbbench"
        backups = BackupRun(session, targets, run_id, "bench", BACKUP).run()
        assert all(b["backup_status"] == "verified" for b in backups), "backups not verified"
        session.stats.calls.clear()
        sandbox_started = sandbox.state.now()
        started = time.monotonic()
        results = RollbackRun(session, targets, run_id, ROLLBACK).run()
        seconds = time.monotonic() - started
        sandbox_seconds = sandbox.state.now() - sandbox_started
        settings = sandbox.state.settings.as_dict()
    calls = dict(session.stats.calls)
    total = sum(calls.values())
    rolled = sum(r["rollback_status"] == "rolled_back" for r in results)
    # Sandbox seconds between two rounds: the module sleeps poll_interval of wall time.
    poll = ROLLBACK["poll_interval"] * args.time_scale
    floor = critical_path(settings, len(targets), True, len(ACCOUNTS) * len(REGIONS), ROLLBACK["max_concurrent"], 0)
    floor_polled = critical_path(settings, len(targets), True, len(ACCOUNTS) * len(REGIONS), ROLLBACK["max_concurrent"], poll)
    table = "\n".join(
        [
            "| phase | instances | wall s | sandbox s | critical path, sandbox s (with one poll round per step) | API calls | calls / instance | notes |",
            "|---|---|---|---|---|---|---|---|",
            "| rollback (ec2_rollback), 2 accounts x 2 regions, about half with a data volume, max_concurrent 5 "
            "| %d | %.1f | %.0f | %.0f (%.0f) | %d | %.2f | %d rolled back; %s |"
            % (
                len(targets),
                seconds,
                sandbox_seconds,
                floor,
                floor_polled,
                total,
                total / max(1, len(targets)),
                rolled,
                ", ".join("%s %d" % kv for kv in sorted(calls.items())),
            ),
        ]
    )
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "\n## Rollback\n\nMeasured %s, time_scale %s (sandbox seconds per wall second), poll_interval %s s (wall). The critical path is "
        "5 batches of 5 per account/region, each a data-volume rollback's own durations (restore 2 s, root replacement 4 s, stop 2 s, "
        "detach 1 s, attach 1 s, start 2 s); in brackets with one poll round after each of its 6 waits. Every write is one call per "
        "volume or instance (CreateVolume, CreateReplaceRootVolumeTask, Stop/Detach/Attach/Start, CreateTags before and after); "
        "each round reads 3 calls per account/region.\n\n%s\n" % (stamp, args.time_scale, ROLLBACK["poll_interval"], table)
    )
    with open(args.out, "a", encoding="utf-8") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
