#!/usr/bin/env python
"""Fleet benchmarks on the local sandbox: API calls per instance, overhead beyond AWS's critical path, memory, blast radius.

Parts (``--parts``, comma-separated; default ``modules,aws,blast``; ``all`` adds ``baseline``):

- ``modules``  module logic, 1,000 instances in one account/region: discovery, backup (create + verify) and patching,
               each measured by its own call counter (sandbox ``fast`` profile).
- ``aws``      the whole job, ``ansible-playbook site.yml`` on 1,000 instances over 2 accounts x 2 regions (the second
               by AssumeRole) with the sandbox's ``realism: aws`` profile and its real durations on a clock
               ``--time-scale`` times faster (landing-zone poll/progress intervals divided by the same factor):
               API calls per instance (goal <= 1.1), throttled calls, the controller's overhead beyond the critical
               path and the ratio it projects at real durations (goal <= 1.2x), peak RSS of the playbook's process
               tree (goal <= 400 MiB). See bench_aws.py. Takes about 4-6 wall minutes at --time-scale 30.
- ``blast``    issue 8 item 1 with the module logic: peak invocations InProgress over a 1,000-instance wave with
               max_concurrency "10" (goal <= 10 and >= 8), and max_errors "5" with a patch fault on 30 % of the
               instances (failures <= 5 + those in flight when the 5th failed; the rest cancelled / not_run).
               See bench_blast.py. About 3 wall minutes.
- ``org``      organization scale (issue 11): a landing zone from an Organizations OU tree, 200 accounts x 3 regions,
               1,000 / 5,000 / 20,000 instances, and 4 parallel AWX-style slices; ``--scale org`` runs it alone. See
               bench_org.py (its own options: sizes, slices). Up to about 20 wall minutes per size on 2 cores.
- ``baseline`` ``ansible-playbook site.yml --tags discovery,backup`` on 500 instances of which 450 are targets, the
               workload the amazon.aws per-host baseline was measured on (445 s and 5.0 calls per instance at best;
               see ../shared/notes/anchors.md).

Usage: python benchmarks/bench_fleet.py [--parts modules,aws,blast] [--count 1000] [--time-scale 30]
                                        [--playbook-count 500] [--playbook-targets 450] [--out FILE]
Each part's results are printed and written to their own section of --out (default benchmarks/RESULTS.md);
the sections of parts not run are kept as they were.
"""

import argparse
import collections
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

import _call_floor
from _fleet_server import ACCOUNT, REGION, post, serving

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "collections")]

from ansible_collections.cms.patching.plugins.module_utils._backup import BackupRun  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._patch import PatchRun  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._retry import RetryPolicy  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._scan import scan  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cms.patching.plugins.module_utils._session import FleetSession  # noqa: E402  pylint: disable=wrong-import-position

BACKUP = dict(
    no_reboot=True,
    name_template="cms-patching-{instance_id}-{run_id}",
    description_template="bench",
    tags={},
    snapshot_tags_on_create=True,
    wait_timeout=900,
    poll_interval=2,
    max_concurrent_creates=10,
    max_workers=8,
)
PATCH = dict(
    wave="all",
    operation="Install",
    reboot_option="RebootIfNeeded",
    snapshot_id=None,
    max_concurrency="50%",
    max_errors="10%",
    delivery_timeout=600,
    execution_timeout=7200,
    wait_timeout=3600,
    poll_interval=2,
    require_backup=True,
    pre_checks={},
    post_checks={},
    max_workers=8,
)
PHASES = """\
  backup:
    wait_timeout: 900
    poll_interval: 2
    progress_interval: 0
"""


def fleet(endpoint):
    connection = dict(region=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    return FleetSession(connection, [{"account_id": ACCOUNT}], policy=RetryPolicy(base_delay=0.2, max_delay=2.0))


def measure(name, count, work, session):
    session.stats.calls.clear()
    session.stats.retries.clear()
    started = time.monotonic()
    result = work()
    seconds = time.monotonic() - started
    calls = dict(session.stats.calls)
    return result, {"phase": name, "instances": count, "seconds": round(seconds, 1), "calls": sum(calls.values()), "detail": calls}


def module_benchmarks(count):
    from sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    rows = []
    with Sandbox.start() as sandbox:
        started = time.monotonic()
        sandbox.seed(
            {"synthetic": {"count": count, "accounts": [ACCOUNT], "regions": [REGION], "reservations": 10, "managed_ratio": 1.0, "environment": "bench"}}
        )
        print("seeded %d instances in %.1f s" % (count, time.monotonic() - started), file=sys.stderr)
        session = fleet(sandbox.endpoint)
        records, row = measure("discovery (ec2_patch_scan)", count, lambda: scan(session, [ACCOUNT], [REGION], {"tag:Environment": "bench"}, {})[0], session)
        rows.append(row)
        targets = [r for r in records if r["target"]]
        run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-bench"
        backups, row = measure("backup (ami_backup_verified)", len(targets), lambda: BackupRun(session, targets, run_id, "bench", BACKUP).run(), session)
        row["beyond_create_image"] = row["calls"] - row["detail"].get("ec2:CreateImage", 0)
        row["verified"] = sum(b["backup_status"] == "verified" for b in backups)
        rows.append(row)
        verified = [t for t, b in zip(targets, backups) if b["backup_status"] == "verified"]
        options = dict(PATCH, run_started=time.time() - 120, lz="bench")
        patched, row = measure(
            "patching (ssm_patch_run)", len(verified), lambda: PatchRun(session, verified, run_id, options, False, time.time, time.sleep).run(), session
        )
        row["success"] = sum(p["patch_status"] == "success" for p in patched)
        row["statuses"] = dict(collections.Counter(p["patch_status"] for p in patched))
        rows.append(row)
    return rows


def sandbox_calls(url):
    with urllib.request.urlopen(url + "/calls", timeout=10) as response:  # nosec - loopback
        return json.loads(response.read())


def playbook_benchmark(count, targets, settings=None, profile=False):
    """ansible-playbook --tags discovery,backup on `count` instances of which `targets` are SSM-managed targets."""
    with tempfile.TemporaryDirectory() as tmp, serving(pathlib.Path(tmp), count, targets / count, PHASES, ".landing_zone.yml") as env:
        post(env, "calls/reset", {})
        post(env, "settings", settings or {})
        if profile:
            env["ANSIBLE_CALLBACKS_ENABLED"] = "cms.patching.patch_report,ansible.posix.profile_tasks"
        started = time.monotonic()
        run = subprocess.run(
            [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-e", "lz=bench", "--tags", "discovery,backup"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        calls = sandbox_calls(env["CMS_SANDBOX_URL"])
        if profile:
            pathlib.Path(profile).write_text(run.stdout, encoding="utf-8")
        summary = [line for line in run.stdout.splitlines() if line.startswith("bench run ")]
        return {
            "phase": "playbook --tags discovery,backup",
            "instances": count,
            "targets": targets,
            "seconds": round(seconds, 1),
            "calls": calls["total"],
            "detail": calls["operations"],
            "rc": run.returncode,
            "summary": summary[-1] if summary else run.stdout[-2000:],
        }


def render(rows):
    lines = [
        "| phase | instances | wall s | API calls | calls / instance | notes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        notes = []
        if "beyond_create_image" in row:
            notes.append("%.3f calls/instance beyond CreateImage; %d verified" % (row["beyond_create_image"] / row["instances"], row["verified"]))
        if "statuses" in row:
            notes.append(", ".join("%d %s" % (n, status) for status, n in sorted(row["statuses"].items())))
        if "targets" in row:
            notes.append("%d targets; rc %s; %s" % (row["targets"], row["rc"], row["summary"]))
        notes.append(", ".join("%s %d" % (k, v) for k, v in sorted(row["detail"].items())))
        per = row["calls"] / row["instances"] if row["instances"] else 0
        lines.append("| %s | %d | %.1f | %d | %.3f | %s |" % (row["phase"], row["instances"], row["seconds"], row["calls"], per, "; ".join(notes)))
    return "\n".join(lines)


PARTS = ("modules", "aws", "blast", "baseline", "org")
MARK = "<!-- part:%s -->"
END = "<!-- /part:%s -->"


def stamp():
    return "Measured %s on %d cores (`nproc`), sandbox (moto 5.2.5) on the same machine." % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        os.cpu_count() or 0,
    )


def modules_section(count):
    return "## Module logic, %d instances, one account/region (sandbox `fast` profile)\n\n%s\n\n%s\n" % (count, stamp(), render(module_benchmarks(count)))


def baseline_section(count, targets):
    rows = []
    # The baseline was measured on plain moto, where an AMI is available at once: the same here, for a fair comparison.
    row = playbook_benchmark(count, targets, settings={"ami_pending_seconds": 0, "snapshot_pending_seconds": 0})
    row["phase"] += " (AMIs available at once, as in plain moto)"
    rows.append(row)
    row = playbook_benchmark(count, targets)
    row["phase"] += " (sandbox: AMIs pending 3 s, snapshots 4 s)"
    rows.append(row)
    return (
        "## Playbook, discovery and backup, against the amazon.aws baseline\n\n%s\n\n%s\n\n"
        "Baseline (../shared/notes/anchors.md): amazon.aws `ec2_ami` per host with one batched snapshot check, "
        "450 targets of 500: 445 s and 5.0 API calls per instance; with `ec2_ami` waiting per host: 812 s and 7.0.\n" % (stamp(), render(rows))
    )


def aws_section(count, time_scale, real=None):
    import bench_aws  # pylint: disable=import-outside-toplevel

    r = bench_aws.run(count, time_scale=time_scale, real=real)
    crit = r["critical_detail"]
    waves = ", ".join("%s %d s" % (k, v) for k, v in sorted(crit["slowest_patch_per_wave"].items()))
    ops = ", ".join("%s %d" % (k, v) for k, v in sorted(r["operations"].items()))
    throttled = ", ".join("%s %d" % (k, v) for k, v in sorted(r["throttled_detail"].items())) or "none"
    real_critical = r["critical_path_aws_seconds"]
    lines = [
        "| measure | value | goal | met |",
        "|---|---|---|---|",
        "| playbook rc; report | %s; %d CSV rows; %s | 0 | %s |" % (r["rc"], r["csv_rows"], r["summary"], "yes" if r["rc"] == 0 else "NO"),
        "| API calls per instance seen | %.3f (%d calls / %d instances) | <= 1.1 | %s |"
        % (r["calls_per_instance"], r["calls"], r["instances"], "yes" if r["calls_per_instance"] <= 1.1 else "NO"),
    ]
    lines += _call_floor.report_rows(r["operations"], r["call_floor"], r["instances"], 1.1)
    lines += [
        "| throttled calls (answered ThrottlingException / RequestLimitExceeded) | %d (%s) | - | - |" % (r["throttled"], throttled),
        "| server errors injected (aws profile: 1 %%) | %d | - | - |" % r["server_errors"],
        "| critical path on AWS's clock (slowest AMI + each wave's slowest patch) | %d s = %.1f wall s (slowest AMI %d s; %s) | - | - |"
        % (real_critical, r["critical_path_wall_seconds"], crit["slowest_ami"], waves),
        "| measured wall time | %.1f s (AWS clock advanced %d s) | - | - |" % (r["wall_seconds"], r["aws_seconds"]),
        "| controller overhead beyond the critical path | %.1f wall s | - | - |" % r["overhead_wall_seconds"],
        "| projected at real durations: (critical path + overhead) / critical path | %.3fx (%d s + %.0f s over %d s) | <= 1.2x | %s |"
        % (r["projected_ratio"], real_critical, r["overhead_wall_seconds"], real_critical, "yes" if r["projected_ratio"] <= 1.2 else "NO"),
        "| the same, adding what grows with real poll intervals: dispatch rounds (%s on AWS's clock) and one poll interval (%d s) per phase end "
        "| %.3fx (+%d s) | <= 1.2x | %s |"
        % (
            ", ".join("%s %d s" % kv for kv in sorted(r["dispatch_span_aws_seconds"].items())),
            r["intervals"]["real"]["patch_poll"],
            r["projected_ratio_with_polls"],
            r["poll_bound_seconds"],
            "yes" if r["projected_ratio_with_polls"] <= 1.2 else "NO",
        ),
        "| same ratio if all overhead were poll latency that grows with the clock (measured wall / critical wall) | %.3fx | (upper bound) | %s |"
        % (r["ratio_on_scaled_clock"], "yes" if r["ratio_on_scaled_clock"] <= 1.2 else "no"),
        "| controller peak memory (ansible-playbook + its children, /proc every 0.5 s): PSS (shared pages split between the processes"
        " that share them) | %.1f MiB PSS; RSS summed over the processes %.1f MiB (%d processes at the RSS peak; counts the forks' shared"
        " pages once per fork) | <= 400 MiB | %s |"
        % (r["peak_pss_mib"], r["peak_rss_mib"], r["peak_rss_processes"], "yes" if r["peak_pss_mib"] <= 400 else "NO"),
        "| AWS-RunPatchBaseline per instance (sandbox command log) | at most %d; %d instances patched | <= 1 | %s |"
        % (r["patch_commands_max_per_instance"], r["patched_instances"], "yes" if r["patch_commands_max_per_instance"] <= 1 else "NO"),
        "| reboot of each patched instance (from patch states) against the sandbox's own reboots (the fleet has a patch state from its last"
        " scan) | %s; %d wrong | 0 wrong | %s |"
        % (
            ", ".join("%s %d" % kv for kv in sorted(r["reboot"]["counts"].items())),
            len(r["reboot"]["wrong"]),
            "yes" if not r["reboot"]["wrong"] else "NO",
        ),
    ]
    (REPO / "benchmarks" / "last-aws-result.json").write_text(json.dumps(r, indent=1), encoding="utf-8")
    seconds_of = {}
    for task, took in r["slowest_tasks"]:
        seconds_of.setdefault(task, took)
    lines += ["", "Where the wall time and the calls go (tasks making AWS calls; profile_tasks times, calls by the task running when they arrived):", ""]
    lines += ["| task | wall s | AWS calls | by operation |", "|---|---|---|---|"]
    for task, task_ops in sorted(r["calls_per_task"].items(), key=lambda item: -sum(item[1].values())):
        lines.append(
            "| %s | %s | %d | %s |"
            % (task, seconds_of.get(task, "<1"), sum(task_ops.values()), ", ".join("%s %d" % kv for kv in sorted(task_ops.items(), key=lambda kv: -kv[1])))
        )
    windows = "; ".join("%s from %.0f s to %.0f s after the start" % (op, a, b) for op, (a, b) in sorted(r["write_windows"].items()))
    errors = "; ".join("%d x %s" % (n, text) for text, n in sorted(r["rows_with_errors"].items())) or "none"
    lines += ["", "Write calls: %s. CSV rows with an error text: %s." % (windows, errors)]
    iv = r["intervals"]
    return (
        "## Whole job at realistic durations: `ansible-playbook site.yml`, %d instances, 2 accounts x 2 regions, sandbox `realism: aws`\n\n"
        "%s time_scale %g: AMIs 5-20 min, snapshots 2-30 min (the image waits for them), patches 3-15 min, reboots 1-3 min on AWS's clock; "
        "landing zone poll_interval backup %d s / patching %d s, progress_interval %d s (wall; %d s / %d s / %d s real), waves canary (4: one per "
        "account/region) then rest, every instance scanned for patches before the run (as a daily scan does), "
        "max_concurrency 100%%, post-checks ssm_online + ec2_status (no command), backup wait_timeout 3 h and patching 3 "
        "h on AWS's clock (EC2's token buckets refill on the wall clock, so the throttled CreateImage phase lasts as long in wall seconds as on AWS "
        "and 30x longer on the scaled clock). Overhead counts everything that is not "
        "AWS working: config, discovery, dispatch rounds, poll latency, compliance reporting delay (60 s aws), the post-checks, retention, "
        "the report.\n\n%s\n\nCalls by operation: %s.\n"
        % (
            count,
            stamp(),
            time_scale,
            iv["backup_poll_interval"],
            iv["patch_poll_interval"],
            iv["progress_interval"],
            iv["real"]["backup_poll"],
            iv["real"]["patch_poll"],
            iv["real"]["progress"],
            "\n".join(lines),
            ops,
        )
    )


def blast_section(count):
    import bench_blast  # pylint: disable=import-outside-toplevel

    conc = bench_blast.concurrency(count)
    errs = bench_blast.error_budget(count)
    lines = [
        "| wave | instances | measured | goal | met |",
        "|---|---|---|---|---|",
        '| max_concurrency "10", max_errors 100%% | %d in %d account/regions | peak %d InProgress at once, time-weighted mean %.1f '
        "(%d SendCommand; statuses %s; %.0f wall s) | <= %d and >= %d | %s |"
        % (
            conc["instances"],
            conc["locations"],
            conc["peak_in_progress"],
            conc["mean_in_progress"],
            conc["send_commands"],
            conc["statuses"],
            conc["wall_seconds"],
            conc["budget"],
            int(0.8 * conc["budget"] + 0.999),
            "yes" if conc["goal_met"] else "NO",
        ),
        '| max_errors "5", max_concurrency "10", patch_fail on %d instances (30 %%) | %d | %d failed (%d beyond the budget); %d in flight when '
        "the 5th failed; %d cancelled/not_run (%s); statuses %s; peak %d | failed <= 5 + in flight = %d; the rest cancelled/not_run | %s |"
        % (
            errs["faulty"],
            errs["instances"],
            errs["failed"],
            errs["beyond_budget"],
            errs["in_flight_when_budget_spent"],
            errs["cancelled_or_not_run"],
            ", ".join("%s: %d" % kv for kv in errs["reasons"].items()),
            errs["statuses"],
            errs["peak_in_progress"],
            errs["bound"],
            "yes" if errs["goal_met"] else "NO",
        ),
    ]
    return (
        "## Blast radius (issue 8 item 1): wave-wide rate control, module logic (PatchRun), 2 accounts x 2 regions\n\n"
        "%s Sandbox `fast` profile with invocations of 45-90 s (+ 5-10 s reboots) on a clock 60x the wall, poll_interval 0.25 s "
        "(15 s on AWS's clock: 3-6 polls per invocation). Peaks from the sandbox's invocation timelines "
        '(`state.peak_in_progress(comment_contains="wave=<name>")`).\n\n%s\n' % (stamp(), "\n".join(lines))
    )


def write_sections(path, sections):
    """Replace (or append) each part's section in the results file, keeping the others."""
    path = pathlib.Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if MARK % "modules" not in text:
        text = "# Fleet benchmarks\n\n`make bench` (or `.venv/bin/python benchmarks/bench_fleet.py --parts ...`) re-runs them.\n"
    for part in PARTS:
        if part not in sections:
            continue
        block = "%s\n%s%s" % (MARK % part, sections[part], END % part)
        if MARK % part in text:
            head, _sep, rest = text.partition(MARK % part)
            text = head + block + rest.partition(END % part)[2]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--parts", default="modules,aws,blast", help="comma-separated: modules, aws, blast, baseline, or all")
    parser.add_argument("--count", type=int, default=1000, help="instances for the modules, aws and blast parts")
    parser.add_argument("--time-scale", type=float, default=30.0, help="aws part: sandbox seconds per wall second")
    parser.add_argument(
        "--real-intervals",
        default="",
        help="aws part: the landing zone's intervals in real seconds, BACKUP_POLL/PATCH_POLL/PROGRESS (default 30/30/60), scaled like AWS's clock",
    )
    parser.add_argument("--playbook-count", type=int, default=500)
    parser.add_argument("--playbook-targets", type=int, default=450)
    parser.add_argument("--scale", choices=("fleet", "org"), default="fleet", help="org: the organization-scale benchmark alone (bench_org.py)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    if args.scale == "org":
        args.parts = "org"
    parts = [p for p in PARTS if p != "org"] if args.parts == "all" else [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error("unknown part(s) %s; known: %s" % (", ".join(unknown), ", ".join(PARTS)))
    sys.path.insert(0, str(REPO / "benchmarks"))
    sections = {}
    for part in parts:
        if part == "modules":
            sections[part] = modules_section(args.count)
        elif part == "aws":
            real = dict(zip(("backup_poll", "patch_poll", "progress"), map(int, args.real_intervals.split("/")))) if args.real_intervals else None
            sections[part] = aws_section(args.count, args.time_scale, real)
        elif part == "blast":
            sections[part] = blast_section(args.count)
        elif part == "org":
            # bench_org.py writes its own section after every size (a long run keeps what it measured so far).
            subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_org.py"), "--out", args.out], check=True)
            continue
        else:
            sections[part] = baseline_section(args.playbook_count, args.playbook_targets)
        print(sections[part], flush=True)
        write_sections(args.out, sections)


if __name__ == "__main__":
    main()
