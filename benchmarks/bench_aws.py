"""The full job (`ansible-playbook site.yml`) on 1,000 instances over 2 accounts x 2 regions, sandbox `realism: aws`.

AWS's durations are the aws profile's (AMIs 5-20 min, snapshots up to 30 min and the image waits for them,
patches 3-15 min, reboots 1-3 min) on a clock `time_scale` times faster than the wall. The landing zone's
controller-side intervals (poll_interval, progress_interval: controller seconds) are divided by the same
factor; its timeouts are compared on AWS's clock and stay real.

Critical path, from the sandbox's own state: the slowest AMI (CreateImage until the image and every snapshot
of it are done) plus, for each wave, its slowest AWS-RunPatchBaseline invocation (RequestedDateTime until it
ended, reboot included). Everything else in the measured wall time is the controller's overhead.
"""

import csv
import json
import os
import pathlib
import re
import sys
import tempfile
import time

from _call_floor import call_floor, patch_commands
from _proc import run_sampled

REPO = pathlib.Path(__file__).resolve().parents[1]
ACCOUNTS = [
    {"account_id": "123456789012"},
    {"account_id": "210987654321", "role_arn": "arn:aws:iam::210987654321:role/CmsPatchingRole", "external_id": "cms-bench"},
]
REGIONS = ["us-east-1", "eu-west-1"]
# Real-time intervals of the landing zone (seconds); the benchmark divides them by time_scale.
REAL_BACKUP_POLL = 30
REAL_PATCH_POLL = 30
REAL_PROGRESS = 60
WAVE_RE = re.compile(r"wave=(\S+)")
RUN_COMMENT = "cms.patching run="  # how every command the collection sends begins (_runcommand.comment_for)
TASK_RE = re.compile(r"^(.+?) -+ (\d+\.\d+)s$")
TASK_START_RE = re.compile(r"^TASK \[(.+?)\] \**\n\w+ (\d+ \w+ \d+  ?\d+:\d+:\d+) [+-]\d+ \([\d:.]+\) +(\d+):(\d+):(\d+\.\d+) ", re.M)


def landing_zone(time_scale, canary, real=None):
    """The landing zone file: controller intervals scaled, AWS-clock timeouts real.

    real: the real-time intervals {"backup_poll", "patch_poll", "progress"} (seconds), default REAL_*."""
    real = dict({"backup_poll": REAL_BACKUP_POLL, "patch_poll": REAL_PATCH_POLL, "progress": REAL_PROGRESS}, **(real or {}))
    backup_poll = max(1, round(real["backup_poll"] / time_scale))
    patch_poll = max(1, round(real["patch_poll"] / time_scale))
    progress = max(1, round(real["progress"] / time_scale))
    accounts = "\n".join(
        '    - account_id: "%s"%s'
        % (a["account_id"], "" if "role_arn" not in a else "\n      role_arn: %s\n      external_id: %s" % (a["role_arn"], a["external_id"]))
        for a in ACCOUNTS
    )
    return """---
cms_patching_landing_zone:
  accounts:
%s
  regions: [%s]
  targets:
    filters:
      "tag:Environment": bench
  backup:
    # AWS clock. The slowest snapshot of the aws profile takes 30 minutes, but CreateImage's token bucket refills on
    # the wall clock: 1,000 CreateImage calls take minutes of wall time, which the scaled clock turns into hours.
    wait_timeout: 10800
    poll_interval: %d
    progress_interval: %d
  patching:
    max_concurrency: "100%%"
    max_errors: "10%%"
    wait_timeout: 10800
    poll_interval: %d
    progress_interval: %d
    max_failure_rate: 10
    waves:
      - name: canary
        names: [%s]
      - name: rest
    post_checks:
      ssm_online: true
      ec2_status: true
""" % (accounts, ", ".join(REGIONS), backup_poll, progress, patch_poll, progress, ", ".join(canary)), {
        "backup_poll_interval": backup_poll,
        "patch_poll_interval": patch_poll,
        "progress_interval": progress,
        "real": real,
    }


def critical_path(sandbox):
    """(seconds on AWS's clock, detail) of the slowest AMI plus each wave's slowest patch, from the sandbox's state."""
    from moto.ec2.models import ec2_backends  # pylint: disable=import-outside-toplevel

    from sandbox.ec2.backup_images import BackupImage  # pylint: disable=import-outside-toplevel

    slowest_ami = 0.0
    images = 0
    for regions in list(ec2_backends.values()):
        for backend in list(regions.values()):
            for image in list(backend.amis.values()):
                if isinstance(image, BackupImage):
                    images += 1
                    # pylint: disable=protected-access  # the sandbox's own schedule is the ground truth here
                    done = max([image._transition.end] + [s._transition.end for s in image.snapshots])
                    slowest_ami = max(slowest_ami, done - image._transition.start)
    waves = {}
    state = sandbox.state
    for command in state.commands.all():
        # The run's own commands only (the seeded fleet's last patch scan is not the run's work).
        if command.document.name != "AWS-RunPatchBaseline" or not command.request["Comment"].startswith(RUN_COMMENT):
            continue
        match = WAVE_RE.search(command.request["Comment"])
        wave = match.group(1) if match else "?"
        for timeline in state.commands.timelines(command):
            if timeline.executed_from is not None:
                waves[wave] = max(waves.get(wave, 0.0), timeline.ended - command.requested_at)
    total = slowest_ami + sum(waves.values())
    return total, {"images": images, "slowest_ami": round(slowest_ami), "slowest_patch_per_wave": {k: round(v) for k, v in waves.items()}}


def reboot_check(rows, rebooted):
    """The report's reboot column against the sandbox's own reboots: {"counts": {value: n}, "wrong": [instance ids]}.

    An instance the sandbox rebooted must say "yes"; one it did not, "no" or "pending"; "unknown" is wrong here, since
    every instance has a patch state from before the run (the seeded scan), and so is anything else."""
    counts, wrong = {}, []
    for row in rows:
        if row.get("patch_status") != "success":
            continue
        value = row.get("reboot") or ""
        counts[value] = counts.get(value, 0) + 1
        if value not in ("yes", "no", "pending") or (value == "yes") != (row["instance_id"] in rebooted):
            wrong.append(row["instance_id"])
    return {"counts": counts, "wrong": wrong}


def _rows_with_errors(path):
    """{error text (first 120 chars): rows} of the CSV rows whose error column is not empty."""
    found = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("error"):
                key = "%s/%s: %s" % (row.get("backup_status"), row.get("patch_status"), row["error"][:120])
                found[key] = found.get(key, 0) + 1
    return found


def calls_per_task(output, call_log):
    """{task: {operation: calls}}: each AWS call counted for the task that was running when it reached the sandbox.

    Task starts come from profile_tasks (elapsed time since the playbook started, to the millisecond), anchored to the
    wall clock by the first task's own timestamp (to the second): a call within a second of a task boundary may be
    counted for its neighbour, and tasks there make no AWS calls (set_fact, assert).
    """
    import datetime  # pylint: disable=import-outside-toplevel

    starts = []
    for match in TASK_START_RE.finditer(output):
        name, stamp, hours, minutes, seconds = match.groups()
        elapsed = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        absolute = datetime.datetime.strptime(" ".join(stamp.split()), "%d %B %Y %H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
        starts.append((name, elapsed, absolute))
    if not starts:
        return {}
    offset = starts[0][2] - starts[0][1]
    bounds = [(offset + elapsed, name) for name, elapsed, _absolute in starts]
    table = {}
    for entry in call_log:
        name = "(before the first task)"
        for start, task in bounds:
            if start <= entry["wall"]:
                name = task
            else:
                break
        ops = table.setdefault(name, {})
        ops[entry["operation"]] = ops.get(entry["operation"], 0) + 1
    return table


def run(count=1000, time_scale=30.0, canary_size=4, real=None):
    """Seed, run the whole playbook under the aws profile, and measure."""
    sys.path[:0] = [str(REPO)]
    from sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    with tempfile.TemporaryDirectory() as tmp, Sandbox.start(settings={"realism": "aws", "time_scale": time_scale}) as sandbox:
        tmp = pathlib.Path(tmp)
        started = time.monotonic()
        spec = {
            "count": count,
            "accounts": [dict({"id": a["account_id"]}, **{k: v for k, v in a.items() if k != "account_id"}) for a in ACCOUNTS],
            "regions": REGIONS,
            "reservations": 12,
            "managed_ratio": 1.0,
            "windows_ratio": 0.2,
            "environment": "bench",
            # As a managed fleet is: a daily patch scan has reported every instance, so 'reboot' can be told (and checked).
            "patch_scanned": True,
        }
        seeded = sandbox.seed({"synthetic": spec})
        print("seeded %d instances in %.1f s" % (count, time.monotonic() - started), file=sys.stderr)
        # The canary: the first instances of each account and region.
        firsts = {}
        for row in seeded["instances"]:
            firsts.setdefault((row["account"], row["region"]), []).append(row["name"])
        canary = sorted(name for names in firsts.values() for name in names[: max(1, canary_size // len(firsts))])
        text, intervals = landing_zone(time_scale, canary, real)
        (tmp / "lzs" / "bench" / "group_vars" / "all").mkdir(parents=True)
        (tmp / "lzs" / "bench" / "group_vars" / "all" / "landing_zone.yml").write_text(text)
        env = dict(os.environ, CMS_PATCHING_LZ_PATH=str(tmp / "lzs"), CMS_PATCHING_REPORT_DIR=str(tmp / "reports"), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        env["CMS_PATCHING_CREDENTIAL_CACHE"] = str(tmp / "sts-cache")  # an empty STS credential cache, as a new AWX job has
        env.update(sandbox.env())
        # Per-task wall times at the end of the output: where the overhead goes.
        env["ANSIBLE_CALLBACKS_ENABLED"] = "cms.patching.patch_report,ansible.posix.profile_tasks"
        wall_epoch = time.time()
        sandbox.state.calls.reset()
        aws_started = sandbox.state.now()
        # The playbook's output goes to a file as it runs (tail -f it to follow a run).
        log_path = REPO / "benchmarks" / "last-aws-playbook.log"
        returncode, seconds, sampler = run_sampled(
            [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-e", "lz=bench"], REPO, env, log_path
        )
        output = log_path.read_text(encoding="utf-8")
        aws_seconds = sandbox.state.now() - aws_started
        calls = sandbox.state.calls.snapshot()
        call_log = sandbox.state.calls.log()
        critical, detail = critical_path(sandbox)
        rebooted = {r["instance_id"] for r in sandbox.state.commands.reboots(sandbox.state.now())}
        log = sandbox.state.command_log()
        reports = sorted((tmp / "reports").glob("*.csv"))
        rows = reports[-1].read_text().splitlines()[1:] if reports else []
        report_rows = []
        if reports:
            with reports[-1].open(encoding="utf-8") as handle:
                report_rows = list(csv.DictReader(handle))
        if reports:
            (REPO / "benchmarks" / "last-aws-report.csv").write_text(reports[-1].read_text())
    patches = {}
    sent = {}
    for entry in log:
        if entry["document"] == "AWS-RunPatchBaseline" and entry["comment"].startswith(RUN_COMMENT):
            match = WAVE_RE.search(entry["comment"])
            sent.setdefault(match.group(1) if match else "?", []).append(entry["requested_at"])
            for instance_id in entry["instance_ids"]:
                patches[instance_id] = patches.get(instance_id, 0) + 1
    summary = [line for line in output.splitlines() if line.startswith("bench run ")]
    tasks = [(m.group(1).strip(), float(m.group(2))) for m in map(TASK_RE.match, output.splitlines()) if m]
    injected = {}
    writes = {}
    for entry in call_log:
        if entry["injected"] and entry["injected"].startswith("server_error"):
            injected[entry["operation"]] = injected.get(entry["operation"], 0) + 1
        if entry["operation"] in ("ec2:CreateImage", "ssm:SendCommand"):
            first, last = writes.get(entry["operation"], (entry["wall"], entry["wall"]))
            writes[entry["operation"]] = (min(first, entry["wall"]), max(last, entry["wall"]))
    critical_wall = critical / time_scale
    overhead = seconds - critical_wall
    # Dispatching is paced by poll rounds (one SendCommand per account/region per round), and each phase ends up to one
    # poll interval after AWS finished: both take as many AWS seconds at real speed, not as many wall seconds.
    spans = {wave: max(stamps) - min(stamps) for wave, stamps in sent.items()}
    boundaries = 1 + 2 * len(spans)  # AMIs done; per wave: invocations done, compliance reported
    poll_bound = sum(spans.values()) * (1 - 1 / time_scale) + boundaries * intervals["real"]["patch_poll"]
    return {
        "instances": count,
        "time_scale": time_scale,
        "intervals": intervals,
        "rc": returncode,
        "wall_seconds": round(seconds, 1),
        "aws_seconds": round(aws_seconds),
        "calls": calls["total"],
        "calls_per_instance": round(calls["total"] / count, 3),
        "operations": calls["operations"],
        "throttled": calls["throttled_total"],
        "throttled_detail": calls["throttled"],
        "server_errors": sum(injected.values()),
        "server_errors_detail": injected,
        "write_windows": {op: (round(a - wall_epoch, 1), round(b - wall_epoch, 1)) for op, (a, b) in writes.items()},
        "slowest_tasks": tasks[:12],
        "calls_per_task": calls_per_task(output, call_log),
        "reboot": reboot_check(report_rows, rebooted),
        "call_floor": call_floor(report_rows, patch_commands(log), assumed_accounts=sum(1 for a in ACCOUNTS if "role_arn" in a)),
        "rows_with_errors": _rows_with_errors(REPO / "benchmarks" / "last-aws-report.csv") if rows else {},
        "critical_path_aws_seconds": round(critical),
        "critical_path_wall_seconds": round(critical_wall, 1),
        "critical_detail": detail,
        "overhead_wall_seconds": round(overhead, 1),
        "projected_ratio": round((critical + overhead) / critical, 3) if critical else None,
        "dispatch_span_aws_seconds": {k: round(v) for k, v in spans.items()},
        "poll_bound_seconds": round(poll_bound),
        "projected_ratio_with_polls": round((critical + overhead + poll_bound) / critical, 3) if critical else None,
        # If every second of overhead were poll latency, it would grow with the clock: the ratio as measured.
        "ratio_on_scaled_clock": round(seconds / critical_wall, 3) if critical else None,
        "peak_rss_mib": round(sampler.peak / 2**20, 1),
        "peak_rss_processes": sampler.processes,
        # RSS counts the pages Ansible's forked workers share once per process; PSS splits them: what the controller really holds.
        "peak_pss_mib": round(sampler.peak_pss / 2**20, 1),
        "rss_samples": sampler.samples,
        "patch_commands_max_per_instance": max(patches.values()) if patches else 0,
        "patched_instances": len(patches),
        "csv_rows": len(rows),
        "summary": summary[-1] if summary else output[-1500:],
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000), indent=1))
