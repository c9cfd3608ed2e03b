#!/usr/bin/env python
"""Per-host controller cost of a whole site.yml run: one host per instance in the host summary.

Every instance becomes a host of the in-memory inventory (add_host: targets, then the others) and the last play gives
each one its outcome (failed with the reason / changed / skipped) - one task per host. This runs the whole job
(discovery, backup, patching, retention, report) on a synthetic sandbox fleet and measures the controller's CPU time
(the ansible-playbook process and every worker and module it forks) per task, with benchmarks/callbacks/task_cpu.py.

Usage: python benchmarks/bench_hosts.py [--counts 1000,4000] [--out FILE]   (make bench runs it after bench_fleet.py)
The result rows are appended to the "Hosts" section of --out (default benchmarks/RESULTS.md).
"""

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from _fleet_server import REPO, post, serving

MANAGED = 0.9
# The tasks whose work is per host: adding every instance to the inventory, and the outcome play.
PER_HOST = {
    "add_host": ("Add every target to the in-memory inventory", "Add the instances that are not targets to the in-memory inventory"),
    "outcome": ("Note whether this run patched", "Outcome"),
}
PHASES = """\
  backup:
    wait_timeout: 1800
    poll_interval: 2
    progress_interval: 30
  patching:
    max_concurrency: "50%"
    max_errors: "50%"
    wait_timeout: 3600
    poll_interval: 2
    progress_interval: 30
"""


def run_site(count, tmp):
    """ansible-playbook site.yml on `count` instances (90 % SSM-managed targets); returns the measurements."""
    with serving(tmp, count, MANAGED, PHASES, "group_vars/all/landing_zone.yml", start_timeout=600) as env:
        env.update(
            ANSIBLE_CALLBACK_PLUGINS=str(REPO / "benchmarks" / "callbacks"),
            ANSIBLE_CALLBACKS_ENABLED="cms.patching.patch_report,task_cpu",
            CMS_BENCH_TASK_CPU=str(tmp / "task_cpu.json"),
        )
        post(env, "calls/reset", {})
        started = time.monotonic()
        with open(tmp / "output.txt", "w", encoding="utf-8") as output:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-e", "lz=bench"],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
    measured = json.loads((tmp / "task_cpu.json").read_text())
    text = (tmp / "output.txt").read_text()
    summary = [line for line in text.splitlines() if line.startswith("bench run ")]
    per_task = {}
    for row in measured["tasks"]:
        per_task.setdefault(row["task"], [0.0, 0.0, 0.0])
        per_task[row["task"]][0] += row["cpu"]
        per_task[row["task"]][1] += row["wall"]
        per_task[row["task"]][2] += row.get("controller_cpu", 0.0)
    result = {
        "instances": count,
        "targets": int(round(count * MANAGED)),
        "rc": os.waitstatus_to_exitcode(status),
        "wall": round(seconds, 1),
        "cpu": round(usage.ru_utime + usage.ru_stime, 1),
        "hosts_in_recap": measured["hosts"],
        "summary": summary[-1] if summary else text[-1500:],
    }
    for part, names in PER_HOST.items():
        result[part + "_cpu"] = round(sum(per_task.get(n, [0, 0, 0])[0] for n in names), 2)
        result[part + "_wall"] = round(sum(per_task.get(n, [0, 0, 0])[1] for n in names), 2)
        result[part + "_controller_cpu"] = round(sum(per_task.get(n, [0, 0, 0])[2] for n in names), 2)
    return result


WHY = """The goal is <= 5 ms of controller time per host, add_host included. Adding every instance to the inventory is well
within it; the one task per host that gives each instance its status is not: Ansible counts a host in its stats (PLAY
RECAP, AWX's job host summary) only from a task result of that host, and it runs every task of every host that is not
a `meta` task in its own forked worker process (`meta` tasks run in the controller but are not counted; a `run_once` or
looped task counts for one host only). The controller's share is the host's variables, the fork, the result and the
callbacks; the rest is the worker. Both grow with the controller's size (every instance's results are facts of
localhost). Getting under 5 ms would take a strategy plugin counting one batched result for many hosts, on ansible-core's
private internals; not done. `-e cms_patching_host_summary=failed` runs the outcome task on the failed hosts only."""


def render(rows):
    lines = [
        "| instances | hosts in recap | rc | wall s | CPU s, whole run | add_host ms/host | outcome ms/host (controller alone) | per-host ms/host |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        add = 1000.0 * r["add_host_cpu"] / r["instances"]
        outcome = 1000.0 * r["outcome_cpu"] / r["instances"]
        alone = 1000.0 * r.get("outcome_controller_cpu", 0.0) / r["instances"]
        lines.append(
            "| %d | %d | %d | %.1f | %.1f | %.1f | %.1f (%.1f) | %.1f |"
            % (r["instances"], r["hosts_in_recap"], r["rc"], r["wall"], r["cpu"], add, outcome, alone, add + outcome)
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,4000")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    rows = []
    for count in [int(c) for c in args.counts.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            row = run_site(count, pathlib.Path(tmp))
        print(json.dumps(row), flush=True)
        rows.append(row)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        "\n## Hosts: one host per instance (bench_hosts.py)\n\nMeasured %s on %d cores; `ansible-playbook site.yml` (discovery, backup, patching, "
        "retention, report) on a synthetic fleet, 90 %% targets. CPU = the controller process plus every worker and module it forked.\n\n%s\n\n%s\n"
        % (stamp, os.cpu_count() or 0, render(rows), WHY)
    )
    out = pathlib.Path(args.out)
    text = out.read_text(encoding="utf-8") if out.exists() else ""
    marker = "\n## Hosts: one host per instance"
    if marker in text:
        text = text[: text.index(marker)]
    out.write_text(text.rstrip("\n") + "\n" + section, encoding="utf-8")
    print(section)


if __name__ == "__main__":
    main()
