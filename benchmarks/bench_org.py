#!/usr/bin/env python
"""Organization scale (issue 11 items 4 and 5): the whole job on a landing zone read from AWS Organizations.

The sandbox seeds an OU tree (root / workloads / prod|nonprod / team-NN, about 10 accounts per team OU, plus one
SUSPENDED account and an OU outside the landing zone) and a synthetic fleet spread over every member account and
region (90 % SSM-managed targets, 20 % Windows). The landing zone names only the `workloads` OU (recursive) and the
role to assume in each member: discovery lists the accounts through Organizations, as in production.

The sandbox runs the `realism: aws` profile (AWS's durations on a clock `time_scale` times faster than the wall, EC2's
token buckets per account and Region on the wall clock, 1 % server errors, compliance delay) exactly as bench_aws.py
does; the landing zone's controller intervals are divided by the same factor and its timeouts stay on AWS's clock.

Two ways to run the same landing zone:
- one controller: `ansible-playbook site.yml -e lz=bench` (discovery adds the hosts);
- split (item 5): N slices as parallel ansible-runner jobs against the same sandbox, the way AWX runs a sliced job
  template: slice n gets every N-th host (by name) of an inventory of the landing zone's instances, all share one
  awx_workflow_job_id and each has its own awx_job_id (tests/integration/test_slices.py does the same on the demo).

Measured: wall time against the critical path (slowest AMI + each wave's slowest patch, from the sandbox's state), API
calls per instance, throttled calls, controller peak RSS (every ansible process, /proc every 0.5 s), the per-host Ansible
cost (benchmarks/callbacks/task_cpu.py: CPU of the tasks whose work is per host, as bench_hosts.py), and for a split run
that each instance got one AMI and at most one patch (the sandbox's images and command log) under one run ID.

Usage: python benchmarks/bench_org.py [--sizes 1000:10,5000:50,20000:200] [--regions 3] [--slices 4 --slice-size 5000]
                                      [--time-scale 30] [--out benchmarks/RESULTS.md]
(`make bench PARTS=org` runs the default; a size is INSTANCES:ACCOUNTS.) Results go to the "org" section of --out.
"""

import argparse
import collections
import csv
import datetime
import json
import os
import pathlib
import resource
import sys
import tempfile
import time

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import bench_aws  # noqa: E402  pylint: disable=wrong-import-position
from _call_floor import call_floor, patch_commands, report_rows  # noqa: E402  pylint: disable=wrong-import-position
from _proc import PeakRss, run_sampled  # noqa: E402  pylint: disable=wrong-import-position
from bench_hosts import PER_HOST, part_of  # noqa: E402  pylint: disable=wrong-import-position

MANAGEMENT = "123456789012"
ROLE_NAME = "CmsPatchingRole"
EXTERNAL_ID = "cms-org-bench"
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1"]
ACCOUNTS_PER_TEAM = 10
# Real-time controller intervals (seconds), divided by time_scale. Each progress return ends a module process and the
# next one starts anew (new sessions, roles assumed again for the accounts it reaches): at organization scale the
# progress interval is 5 minutes, not the single landing zone's 1 minute (see the README, "Sizing").
REAL_POLL = 30
REAL_PROGRESS = 300
WORKFLOW_JOB_ID = 4242
# The reads a poll round makes per account and region (backup: images and snapshots; patching: commands, invocations).
POLL_OPERATIONS = ("ec2:DescribeImages", "ec2:DescribeSnapshots", "ssm:ListCommands", "ssm:ListCommandInvocations")


def member_id(index):
    return "3%011d" % index


def organization_spec(accounts):
    """The OU tree: workloads/{prod,nonprod}/team-NN with ACCOUNTS_PER_TEAM members each, a suspended one, an OU outside."""
    teams = []
    for first in range(0, accounts, ACCOUNTS_PER_TEAM):
        members = [{"id": member_id(i), "name": "member-%05d" % i} for i in range(first, min(first + ACCOUNTS_PER_TEAM, accounts))]
        teams.append({"name": "team-%02d" % len(teams), "accounts": members})
    prod, nonprod = teams[::2], teams[1::2]
    return {
        "management_account": MANAGEMENT,
        "role_name": ROLE_NAME,
        "external_id": EXTERNAL_ID,
        "ous": [
            {
                "name": "workloads",
                "ous": [
                    {"name": "prod", "ous": prod, "accounts": [{"id": "399999999999", "name": "closed-member", "state": "SUSPENDED"}]},
                    {"name": "nonprod", "ous": nonprod},
                ],
            },
            # Outside the landing zone's OU: never listed, never assumed.
            {"name": "sandbox", "accounts": [{"id": "388888888888", "name": "playground"}]},
        ],
    }


def landing_zone_ous(spec, name="workloads"):
    """How many OUs the landing zone reads (the named OU and every OU under it): one page of each listing per OU."""

    def count(node):
        return 1 + sum(count(child) for child in node.get("ous") or [])

    return sum(count(ou) for ou in spec["ous"] if ou["name"] == name)


def landing_zone(ou_id, regions, time_scale):
    poll = max(1, round(REAL_POLL / time_scale))
    progress = max(1, round(REAL_PROGRESS / time_scale))
    config = {
        "cms_patching_landing_zone": {
            "organization": {"ous": [ou_id], "recursive": True, "role_name": ROLE_NAME, "external_id": EXTERNAL_ID},
            "regions": regions,
            "targets": {"filters": {"tag:Environment": "bench"}},
            # AWS clock; see bench_aws.landing_zone.
            "backup": {"wait_timeout": 10800, "poll_interval": poll, "progress_interval": progress},
            "patching": {
                "max_concurrency": "100%",
                "max_errors": "10%",
                "wait_timeout": 10800,
                "poll_interval": poll,
                "progress_interval": progress,
                "max_failure_rate": 10,
                # Percent waves: a named canary cannot be sliced (a slice without it stops at the wave plan).
                "waves": [{"name": "canary", "percent": 1}, {"name": "rest"}],
                "post_checks": {"ssm_online": True, "ec2_status": True},
            },
        }
    }
    return "---\n" + yaml.safe_dump(config, sort_keys=False), {"poll_interval": poll, "progress_interval": progress}


def inventory_of(rows):
    """The landing zone's instances as an inventory (what an aws_ec2 source gives AWX): host = instance ID."""
    hosts = {}
    for row in rows:
        hosts[row["instance_id"]] = {"instance_id": row["instance_id"], "region": row["region"], "account_id": row["account"], "cms_patching_name": row["name"]}
    return hosts


def slice_inventory(hosts, number, count):
    """Slice `number` (1-based) of `count`: every count-th host by name, as AWX cuts a sliced job's inventory."""
    names = sorted(hosts)[number - 1::count]
    return names, {"all": {"hosts": {h: hosts[h] for h in names}}}


def per_host_cost(task_cpu_files, instances):
    """ms of CPU per instance in the per-host tasks (add_host, outcome), summed over every job, and the whole run's CPU."""
    per_task = collections.defaultdict(float)
    controller = 0.0
    for path in task_cpu_files:
        if not path.exists():
            continue
        for row in json.loads(path.read_text())["tasks"]:
            per_task[row["task"]] += row["cpu"]
            controller += row.get("controller_cpu", 0.0)
    parts = dict.fromkeys(PER_HOST, 0.0)
    for task, cpu in per_task.items():
        if part_of(task):
            parts[part_of(task)] += cpu
    return {
        "add_host_ms": round(1000.0 * parts["add_host"] / instances, 1),
        "outcome_ms": round(1000.0 * parts["outcome"] / instances, 1),
        "gates_ms": round(1000.0 * parts["gates"] / instances, 1),
        "per_host_ms": round(1000.0 * sum(parts.values()) / instances, 1),
        "run_cpu_s": round(sum(per_task.values()), 1),
        "run_cpu_ms_per_instance": round(1000.0 * sum(per_task.values()) / instances, 1),
        "controller_process_cpu_s": round(controller, 1),
    }


def base_env(sandbox, tmp, name):
    env = dict(
        os.environ,
        CMS_PATCHING_LZ_PATH=str(tmp / "lzs"),
        CMS_PATCHING_REPORT_DIR=str(tmp / name / "reports"),
        ANSIBLE_LOCAL_TEMP=str(tmp / name / "ansible-tmp"),
        ANSIBLE_CALLBACK_PLUGINS=str(REPO / "benchmarks" / "callbacks"),
        ANSIBLE_CALLBACKS_ENABLED="cms.patching.patch_report,ansible.posix.profile_tasks,task_cpu",
        CMS_BENCH_TASK_CPU=str(tmp / name / "task_cpu.json"),
        # An empty STS credential cache per run, and per slice: AWX runs each slice in a container of its own.
        CMS_PATCHING_CREDENTIAL_CACHE=str(tmp / name / "sts-cache"),
        ANSIBLE_NOCOLOR="1",
        PATH="%s:%s" % (pathlib.Path(sys.executable).parent, os.environ.get("PATH", "")),
    )
    env.update(sandbox.env())
    (tmp / name).mkdir(parents=True, exist_ok=True)
    return env


def run_single(sandbox, tmp, strategy=None):
    """One controller: ansible-playbook site.yml. (rc, wall seconds, output, [task_cpu file], [CSV files], peak sampler)"""
    env = base_env(sandbox, tmp, "single")
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    log_path = REPO / "benchmarks" / "last-org-playbook.log"
    returncode, seconds, sampler = run_sampled(
        [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-e", "lz=bench"]
        + (["-e", "cms_patching_outcome_strategy=%s" % strategy] if strategy else []),
        REPO,
        env,
        log_path,
    )
    return {
        "rc": returncode,
        "wall_seconds": round(seconds, 1),
        "output": log_path.read_text(encoding="utf-8"),
        "task_cpu": [tmp / "single" / "task_cpu.json"],
        "reports": sorted((tmp / "single" / "reports").glob("*.csv")),
        "sampler": sampler,
        "started_epoch": time.time() - seconds,
    }


def run_slices(sandbox, tmp, hosts, slices, strategy=None):
    """N slices as parallel ansible-runner jobs (AWX's sliced job template); each slice's wall time."""
    import ansible_runner  # pylint: disable=import-outside-toplevel

    jobs = []
    # Every process under this one but itself (the sandbox runs in this process; the slices' jobs are its children).
    sampler = PeakRss(os.getpid())
    sampler.exclude_root = True
    sampler.start()
    started = time.monotonic()
    for number in range(1, slices + 1):
        name = "slice%d" % number
        env = base_env(sandbox, tmp, name)
        private = tmp / name / "private_data_dir"
        (private / "env").mkdir(parents=True)
        names, content = slice_inventory(hosts, number, slices)
        (tmp / name / "inventory.yml").write_text("---\n" + yaml.safe_dump(content))
        extravars = {
            "lz": "bench",
            "awx_workflow_job_id": WORKFLOW_JOB_ID,
            "tower_workflow_job_id": WORKFLOW_JOB_ID,
            "awx_job_id": WORKFLOW_JOB_ID + number,
            "cms_patching_slice_number": number,
            "cms_patching_slice_count": slices,
        }
        if strategy:
            extravars["cms_patching_outcome_strategy"] = strategy
        (private / "env" / "extravars").write_text(yaml.safe_dump(extravars))
        # ansible-runner as AWX uses it: the project directory is the working directory (its ansible.cfg applies).
        env.pop("ANSIBLE_CONFIG", None)
        thread, runner = ansible_runner.run_async(
            private_data_dir=str(private),
            project_dir=str(REPO),
            playbook="site.yml",
            inventory=str(tmp / name / "inventory.yml"),
            envvars={k: v for k, v in env.items() if k.startswith(("ANSIBLE_", "AWS_", "CMS_", "PATH"))},
            quiet=True,
            timeout=3600,
        )
        jobs.append({"number": number, "thread": thread, "runner": runner, "hosts": len(names), "dir": tmp / name})
    ended = {}
    while len(ended) < len(jobs):
        for job in jobs:
            if job["number"] not in ended and not job["thread"].is_alive():
                ended[job["number"]] = time.monotonic() - started
        time.sleep(0.5)
    sampler.stop()
    for job in jobs:
        job["wall_seconds"] = round(ended[job["number"]], 1)
        job["rc"] = job["runner"].rc
        job["status"] = job["runner"].status
        job["output"] = job["runner"].stdout.read()
        (REPO / "benchmarks" / ("last-org-slice%d.log" % job["number"])).write_text(job["output"], encoding="utf-8")
    return {
        "rc": max(job["rc"] or 0 for job in jobs),
        "wall_seconds": round(max(ended.values()), 1),
        "slices": [{k: job[k] for k in ("number", "hosts", "wall_seconds", "rc", "status")} for job in jobs],
        "output": jobs[0]["output"],
        "task_cpu": [job["dir"] / "task_cpu.json" for job in jobs],
        "reports": sorted(p for job in jobs for p in (job["dir"] / "reports").glob("*.csv")),
        "sampler": sampler,
        "started_epoch": time.time() - (time.monotonic() - started),
    }


def images_per_instance():
    """{instance ID: [run IDs of its pre-patch AMIs]} from the sandbox's EC2 state (every account and region)."""
    from moto.ec2.models import ec2_backends  # pylint: disable=import-outside-toplevel

    from sandbox.ec2.backup_images import BackupImage  # pylint: disable=import-outside-toplevel

    found = collections.defaultdict(list)
    for regions in list(ec2_backends.values()):
        for backend in list(regions.values()):
            for image in list(backend.amis.values()):
                if isinstance(image, BackupImage):
                    tags = backend.tags.get(image.id, {})
                    found[tags.get("cms:patching:instance-id") or getattr(image, "instance_id", None)].append(tags.get("cms:patching:run-id"))
    return found


def run(count, accounts, regions, time_scale=30.0, slices=0, strategy=None):
    """Seed an organization of `accounts` members x `regions` regions with `count` instances and run the job once."""
    from sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    regions = REGIONS[:regions]
    with tempfile.TemporaryDirectory() as tmp, Sandbox.start(settings={"realism": "aws", "time_scale": time_scale}) as sandbox:
        tmp = pathlib.Path(tmp)
        seeding = time.monotonic()
        spec = organization_spec(accounts)
        org = sandbox.seed_organization(spec)
        members = [{"id": member_id(i), "role_arn": "arn:aws:iam::%s:role/%s" % (member_id(i), ROLE_NAME), "external_id": EXTERNAL_ID} for i in range(accounts)]
        synthetic = {
            "count": count,
            "accounts": members,
            "regions": regions,
            "reservations": max(len(members) * len(regions), count // 25),
            "managed_ratio": 0.9,
            "windows_ratio": 0.2,
            "environment": "bench",
            "patch_scanned": True,  # as a managed fleet is (see bench_aws)
        }
        seeded = sandbox.seed({"synthetic": synthetic})
        seed_seconds = time.monotonic() - seeding
        print("seeded %d OUs, %d accounts, %d instances in %.1f s" % (len(org["ous"]), len(org["accounts"]), count, seed_seconds), file=sys.stderr)
        text, intervals = landing_zone(org["ous"]["workloads"], regions, time_scale)
        (tmp / "lzs" / "bench").mkdir(parents=True)
        (tmp / "lzs" / "bench" / ".landing_zone.yml").write_text(text)
        sandbox.state.calls.reset()
        aws_started = sandbox.state.now()
        # The sandbox serves every AWS call from this process, on the same cores as the controller: its CPU is not AWS's.
        own = resource.getrusage(resource.RUSAGE_SELF)
        sandbox_cpu = own.ru_utime + own.ru_stime
        if slices:
            result = run_slices(sandbox, tmp, inventory_of(seeded["instances"]), slices, strategy)
        else:
            result = run_single(sandbox, tmp, strategy)
        aws_seconds = sandbox.state.now() - aws_started
        own = resource.getrusage(resource.RUSAGE_SELF)
        sandbox_cpu = own.ru_utime + own.ru_stime - sandbox_cpu
        calls = sandbox.state.calls.snapshot()
        call_log = sandbox.state.calls.log()
        critical, detail = bench_aws.critical_path(sandbox)
        log = sandbox.state.command_log()
        images = images_per_instance()
        rows = []
        for path in result["reports"]:
            with path.open(encoding="utf-8") as handle:
                rows += list(csv.DictReader(handle))
        # Read before the temporary directory goes.
        cost = per_host_cost(result["task_cpu"], count)
    output = result["output"]
    patches = collections.Counter()
    for entry in log:
        operation = (entry.get("parameters") or {}).get("Operation") or ["Install"]
        if entry["document"] == "AWS-RunPatchBaseline" and "Install" in operation:
            patches.update(entry["instance_ids"])
    targets = [r for r in seeded["instances"] if r["managed"]]
    # Rows without an instance are the landing zone's own (an account skipped by the organization source, in every slice).
    per_row = collections.Counter(r["instance_id"] for r in rows if r.get("instance_id"))
    run_ids = {r["run_id"] for r in rows} | {rid for ids in images.values() for rid in ids}
    sts_calls = sum(1 for e in call_log if e["operation"].startswith("sts:"))
    # One controller's run only: each slice lists the organization and assumes the roles again, by design.
    floor = None if slices else call_floor(rows, patch_commands(log), assumed_accounts=accounts, ous=landing_zone_ous(spec))
    critical_wall = critical / time_scale
    seconds = result["wall_seconds"]
    summary = [line for line in output.splitlines() if line.startswith("bench run ")]
    return {
        "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "instances": count,
        "accounts": accounts,
        "regions": len(regions),
        "locations": accounts * len(regions),
        "slices": slices,
        "time_scale": time_scale,
        "intervals": intervals,
        "outcome_strategy": strategy or "ansible.builtin.linear (the default)",
        "seed_seconds": round(seed_seconds, 1),
        "sandbox_cpu_s": round(sandbox_cpu, 1),
        "organization": {"ous": len(org["ous"]), "accounts": len(org["accounts"])},
        "rc": result["rc"],
        "slice_results": result.get("slices", []),
        "wall_seconds": seconds,
        "aws_seconds": round(aws_seconds),
        "calls": calls["total"],
        "calls_per_instance": round(calls["total"] / count, 3),
        "operations": calls["operations"],
        "throttled": calls["throttled_total"],
        "throttled_detail": calls["throttled"],
        "sts_calls": sts_calls,
        "assume_role_calls": calls["operations"].get("sts:AssumeRole", 0),
        "polls": {op: n for op, n in calls["operations"].items() if op in POLL_OPERATIONS},
        "call_floor": floor,
        "critical_path_aws_seconds": round(critical),
        "critical_path_wall_seconds": round(critical_wall, 1),
        "critical_detail": detail,
        "ratio_on_scaled_clock": round(seconds / critical_wall, 3) if critical else None,
        "overhead_wall_seconds": round(seconds - critical_wall, 1),
        "projected_ratio": round((critical + seconds - critical_wall) / critical, 3) if critical else None,
        "peak_rss_mib": round(result["sampler"].peak / 2**20, 1),
        "peak_rss_processes": result["sampler"].processes,
        "peak_pss_mib": round(result["sampler"].peak_pss / 2**20, 1),
        "peak_pss_by_process": [[what, round(share / 2**20, 1)] for what, share in result["sampler"].peak_pss_by_process],
        "peak_pss_by_kind": [
            [what, round(share / 2**20, 1)] for what, share in sorted(result["sampler"].peak_pss_by_kind.items(), key=lambda item: -item[1]) if share >= 2**24
        ],
        "per_host": cost,
        "targets": len(targets),
        "csv_rows": len(rows),
        "instances_with_one_row": sum(1 for n in per_row.values() if n == 1),
        "instances_with_several_rows": sum(1 for n in per_row.values() if n > 1),
        "targets_with_one_ami": sum(1 for t in targets if len(images.get(t["instance_id"], [])) == 1),
        "instances_with_several_amis": sum(1 for ids in images.values() if len(ids) > 1),
        "patched_instances": len(patches),
        "patch_commands_max_per_instance": max(patches.values()) if patches else 0,
        "run_ids": sorted(r for r in run_ids if r),
        "statuses": dict(collections.Counter("%s/%s" % (r.get("backup_status"), r.get("patch_status")) for r in rows)),
        "summary": summary[-1] if summary else output[-1500:],
        "slowest_tasks": [(m.group(1).strip(), float(m.group(2))) for m in map(bench_aws.TASK_RE.match, output.splitlines()) if m][:10],
    }


def _pss(r):
    return "%.0f MiB" % r["peak_pss_mib"] if r.get("peak_pss_mib") else "not sampled"


def _goal(ok):
    return "yes" if ok else "NO"


def render(results):
    lines = [
        "| instances | accounts x regions | controllers | rc | wall s | critical path wall s (AWS s) | wall / critical (scaled clock) | projected at real "
        "durations | API calls / instance (poll reads) | throttled | STS calls (AssumeRole) | peak memory: PSS (RSS sum, MiB) | per-host ms (add_host + "
        "outcome + gates) | whole-run CPU ms / instance |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            "| %d | %d x %d | %s | %s | %.1f | %.1f (%d) | %.2fx | %.3fx | %.3f (%.3f) | %d | %d (%d) | %s (%.0f) | %.1f (%.1f + %.1f + %s) | %.1f |"
            % (
                r["instances"],
                r["accounts"],
                r["regions"],
                ("%d slices" % r["slices"]) if r["slices"] else "1",
                r["rc"],
                r["wall_seconds"],
                r["critical_path_wall_seconds"],
                r["critical_path_aws_seconds"],
                r["ratio_on_scaled_clock"],
                r["projected_ratio"],
                r["calls_per_instance"],
                sum(r["polls"].values()) / r["instances"],
                r["throttled"],
                r["sts_calls"],
                r["assume_role_calls"],
                _pss(r),
                r["peak_rss_mib"],
                r["per_host"]["per_host_ms"],
                r["per_host"]["add_host_ms"],
                r["per_host"]["outcome_ms"],
                # Runs measured before the gates were counted (and before role-prefixed names were matched) have none.
                ("%.1f" % r["per_host"]["gates_ms"]) if "gates_ms" in r["per_host"] else "not counted",
                r["per_host"]["run_cpu_ms_per_instance"],
            )
        )
    return "\n".join(lines)


def goals(r):
    return [
        "| goal (%d instances, %s) | measured | met |" % (r["instances"], ("%d slices" % r["slices"]) if r["slices"] else "one controller"),
        "|---|---|---|",
        "| wall time <= 1.2x the critical path, projected at real durations (critical + overhead) / critical | %.3fx | %s |"
        % (r["projected_ratio"], _goal(r["projected_ratio"] <= 1.2)),
        "| the same on the scaled clock (all overhead counted %gx too much: upper bound) | %.2fx | %s |"
        % (r["time_scale"], r["ratio_on_scaled_clock"], _goal(r["ratio_on_scaled_clock"] <= 1.2)),
        "| API calls per instance <= 1.1 | %.3f | %s |" % (r["calls_per_instance"], _goal(r["calls_per_instance"] <= 1.1)),
    ] + (report_rows(r["operations"], r["call_floor"], r["instances"], 1.1, goal_column=False) if r.get("call_floor") else []) + [
        "| controller peak memory <= 1 GiB (PSS of every ansible process; RSS summed over them, an upper bound that counts pages shared "
        "with the forks once per fork) | PSS %s, RSS sum %.0f MiB (%d processes) | %s |"
        % (_pss(r), r["peak_rss_mib"], r["peak_rss_processes"], _goal((r.get("peak_pss_mib") or r["peak_rss_mib"]) <= 1024)),
        "| per-host Ansible cost <= 5 ms per host | %.1f ms | %s |" % (r["per_host"]["per_host_ms"], _goal(r["per_host"]["per_host_ms"] <= 5)),
    ]


def detail(r):
    ops = ", ".join("%s %d" % kv for kv in sorted(r["operations"].items(), key=lambda kv: -kv[1]))
    throttled = ", ".join("%s %d" % kv for kv in sorted(r["throttled_detail"].items())) or "none"
    text = (
        "- %d instances, %d accounts x %d regions%s: rc %s; %s. Seeded in %.0f s. %d CSV rows (%d instances with one row, %d with more); "
        "%d of %d targets with exactly one AMI, %d instances with more than one; %d instances patched, at most %d AWS-RunPatchBaseline "
        "Install per instance; run IDs %s. Statuses %s. Throttled: %s. Critical path: slowest AMI %d s, slowest patch per wave %s (AWS s). "
        "CPU: Ansible %s s (controller process %s s), sandbox %s (on the same cores). Slowest tasks: %s. Calls: %s. Host summary strategy: %s. "
        "Memory at the peak (PSS MiB per process): %s. Each kind of process at its own peak (PSS MiB, 16 or more): %s."
        % (
            r["instances"],
            r["accounts"],
            r["regions"],
            (", %d slices (hosts %s, wall s %s, rc %s)" % (
                r["slices"],
                "/".join(str(s["hosts"]) for s in r["slice_results"]),
                "/".join(str(s["wall_seconds"]) for s in r["slice_results"]),
                "/".join(str(s["rc"]) for s in r["slice_results"]),
            )) if r["slices"] else "",
            r["rc"],
            ("slice 1: " if r["slices"] else "") + r["summary"],
            r["seed_seconds"],
            r["csv_rows"],
            r["instances_with_one_row"],
            r["instances_with_several_rows"],
            r["targets_with_one_ami"],
            r["targets"],
            r["instances_with_several_amis"],
            r["patched_instances"],
            r["patch_commands_max_per_instance"],
            ", ".join(r["run_ids"]) or "none",
            r["statuses"],
            throttled,
            r["critical_detail"]["slowest_ami"],
            r["critical_detail"]["slowest_patch_per_wave"],
            r["per_host"]["run_cpu_s"],
            r["per_host"]["controller_process_cpu_s"],
            ("%s s" % r["sandbox_cpu_s"]) if "sandbox_cpu_s" in r else "not measured",
            "; ".join("%s %.0f s" % (task, took) for task, took in r["slowest_tasks"][:6]),
            ops,
            r.get("outcome_strategy", "ansible.builtin.linear (the default)"),
            ", ".join("%s %.0f" % (what, mib) for what, mib in r.get("peak_pss_by_process") or []) or "not sampled",
            ", ".join("%s %.0f" % (what, mib) for what, mib in r.get("peak_pss_by_kind") or []) or "not sampled",
        )
    )
    return text


def section(results, not_run):
    stamp = "Measured %s on %d cores (`nproc`, shared with other jobs), sandbox (moto 5.2.5) in the benchmark's process." % (
        ", ".join(r.get("measured_at", "?") for r in results) or "-",
        os.cpu_count() or 0,
    )
    first = results[0] if results else None
    head = (
        "## Organization scale (issue 11): landing zone from AWS Organizations, `bench_org.py`\n\n%s Sandbox `realism: aws`, time_scale %g; "
        "OU tree workloads/{prod,nonprod}/team-NN (%d accounts per team OU, one SUSPENDED member skipped, one OU outside the landing zone), "
        "the landing zone names the workloads OU (recursive) and the role; about 33 instances per account and region (accounts grow with "
        "the fleet), 90 %% targets, 20 %% Windows; waves canary (1 %%) then rest; poll_interval %d s and progress_interval %d s wall (30 s / "
        "300 s real). Per-host ms: CPU of the add-host, outcome and gate tasks (bench_hosts.py's definition, role-prefixed names matched) "
        "per instance, summed over the jobs; "
        "whole-run CPU: every task of every job. Peak memory: every ansible process (for slices, all slices together).\n\n"
        % (
            stamp,
            first["time_scale"] if first else 30,
            ACCOUNTS_PER_TEAM,
            first["intervals"]["poll_interval"] if first else 1,
            first["intervals"]["progress_interval"] if first else 10,
        )
    )
    body = render(results) if results else "(nothing measured)"
    parts = [head, body, ""]
    for r in results:
        parts += ["", "\n".join(goals(r))]
    parts += ["", "Detail:", ""] + [detail(r) for r in results]
    if not_run:
        parts += ["", "Not run: " + "; ".join(not_run) + "."]
    return "\n".join(parts) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", default="1000:10,5000:50,20000:200", help="INSTANCES:ACCOUNTS,... (one controller each)")
    parser.add_argument("--regions", type=int, default=3)
    parser.add_argument("--slices", type=int, default=4, help="the split run: this many parallel slices (0: none)")
    parser.add_argument("--slice-size", default="5000:50", help="INSTANCES:ACCOUNTS of the split run")
    parser.add_argument("--time-scale", type=float, default=30.0)
    parser.add_argument(
        "--outcome-strategy", help="the host summary's strategy (-e cms_patching_outcome_strategy), e.g. cms.patching.linear_outcome; default: the playbook's"
    )
    parser.add_argument("--not-run", action="append", default=[], help="a size left out and why (written to the results)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--render", nargs="*", metavar="JSON", help="write the section from these saved results (last-org-*.json) and run nothing")
    args = parser.parse_args()
    if args.render is not None:
        import bench_fleet  # pylint: disable=import-outside-toplevel

        saved = []
        for path in map(pathlib.Path, args.render):
            saved.append(json.loads(path.read_text(encoding="utf-8")))
            # Results saved before measured_at was recorded: the file's time is when the run ended.
            saved[-1].setdefault("measured_at", datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        bench_fleet.write_sections(args.out, {"org": section(saved, args.not_run)})
        return
    plan = [(int(c), int(a), 0) for c, a in (s.split(":") for s in args.sizes.split(",") if s)]
    if args.slices:
        count, accounts = args.slice_size.split(":")
        plan.append((int(count), int(accounts), args.slices))
    results = []
    import bench_fleet  # pylint: disable=import-outside-toplevel

    for count, accounts, slices in plan:
        r = run(count, accounts, args.regions, time_scale=args.time_scale, slices=slices, strategy=args.outcome_strategy)
        (REPO / "benchmarks" / ("last-org-%d%s.json" % (count, "-slices" if slices else ""))).write_text(json.dumps(r, indent=1), encoding="utf-8")
        print(json.dumps({k: v for k, v in r.items() if k not in ("operations",)}), flush=True)
        results.append(r)
        bench_fleet.write_sections(args.out, {"org": section(results, args.not_run)})


if __name__ == "__main__":
    main()
