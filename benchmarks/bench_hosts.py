#!/usr/bin/env python
"""Per-host controller cost of a whole site.yml run: one host per instance in the host summary.

Every instance becomes a host of the in-memory inventory (add_host: targets, then the others) and the last play gives
each one its outcome (failed with the reason / changed / skipped) - one task per host. This runs the whole job
(discovery, backup, patching, retention, report) on a synthetic sandbox fleet and measures the controller's CPU time
(the ansible-playbook process and every worker and module it forks) per task, with benchmarks/callbacks/task_cpu.py.

Usage: python benchmarks/bench_hosts.py [--counts 1000,4000] [--strategies S1,S2] [--fail-ratio 0.1] [--out FILE]   (make bench runs it after bench_fleet.py)
--strategies: the outcome play's strategy per run (-e cms_patching_outcome_strategy=...): "default" (the playbook's,
ansible.builtin.linear: a worker process per host) and/or "cms.patching.linear_outcome" (opt-in, no worker) to compare.
--fail-ratio: that share of the instances (every n-th) gets an ami_fail fault, so they are held back and fail.
The "Hosts" section of --out (default benchmarks/RESULTS.md) is replaced with the result rows; the others are kept.
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
# The tasks whose work is per host: adding every instance to the inventory, the outcome play, the gates.
PER_HOST = {
    # The include tasks and the two tasks of roles/discovery/tasks/add_hosts.yml they run (for the targets, the other
    # instances, and a gate's held-back hosts); the targets' add_host loop by its name before add_hosts.yml.
    "add_host": (
        "Add every target to the in-memory inventory",
        "Add the instances that are not targets to the in-memory inventory",
        "Add the hosts to the in-memory inventory at once (in the controller under cms.patching.linear_outcome)",
        "Add the hosts left to one ansible.builtin.add_host each",
    ),
    "outcome": ("Note whether this run patched", "Outcome"),
    # Each gate's held-back list (computed once) and its include, skipped when nothing is held back; before, one add_host
    # loop per gate templated every instance's result.
    "gates": (
        "Find every host whose backup is not verified",
        "Hold back every host whose backup is not verified",
        "Find every host that was not patched successfully or whose wave never started",
        "Hold back every host that was not patched successfully or whose wave never started",
    ),
}


def part_of(task):
    """The PER_HOST part a task belongs to, or None. A role's task is named "<role> : <task>" by the callback: its name is
    matched with or without the role."""
    for part, names in PER_HOST.items():
        if task in names or task.rpartition(" : ")[2] in names:
            return part
    return None


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


def run_site(count, tmp, strategy="default", fail_ratio=0.0):
    """ansible-playbook site.yml on `count` instances (90 % SSM-managed targets); returns the measurements."""
    with serving(tmp, count, MANAGED, PHASES, "group_vars/all/landing_zone.yml", start_timeout=600) as env:
        env.update(
            ANSIBLE_CALLBACK_PLUGINS=str(REPO / "benchmarks" / "callbacks"),
            ANSIBLE_CALLBACKS_ENABLED="cms.patching.patch_report,task_cpu",
            CMS_BENCH_TASK_CPU=str(tmp / "task_cpu.json"),
        )
        post(env, "calls/reset", {})
        # Held-back hosts take the other path of every per-host step: the backup gate, a failed outcome, a report error.
        step = int(round(1 / fail_ratio)) if fail_ratio else 0
        for number in range(1, count + 1, step) if step else ():
            post(env, "faults", {"kind": "ami_fail", "instance_name": "syn-%05d" % number})
        started = time.monotonic()
        with open(tmp / "output.txt", "w", encoding="utf-8") as output:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-e", "lz=bench"]
                + ([] if strategy == "default" else ["-e", "cms_patching_outcome_strategy=" + strategy]),
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
        per_task.setdefault(row["task"], [0.0, 0.0, 0.0, 0.0])
        per_task[row["task"]][0] += row["cpu"]
        per_task[row["task"]][1] += row["wall"]
        per_task[row["task"]][2] += row.get("controller_cpu", 0.0)
        per_task[row["task"]][3] += row.get("controller_after_results", 0.0)
    result = {
        "instances": count,
        "strategy": strategy,
        "fail_ratio": fail_ratio,
        "targets": int(round(count * MANAGED)),
        "rc": os.waitstatus_to_exitcode(status),
        "wall": round(seconds, 1),
        "cpu": round(usage.ru_utime + usage.ru_stime, 1),
        "hosts_in_recap": measured["hosts"],
        "summary": summary[-1] if summary else text[-1500:],
        # Where the rest of the controller's CPU went (module runs included): the ten costliest tasks, CPU s.
        "top_tasks": sorted(((round(v[0], 2), name) for name, v in per_task.items()), reverse=True)[:10],
    }
    for part, names in PER_HOST.items():
        rows = [v for task, v in per_task.items() if part_of(task) == part]
        result[part + "_cpu"] = round(sum(v[0] for v in rows), 2)
        result[part + "_wall"] = round(sum(v[1] for v in rows), 2)
        result[part + "_controller_cpu"] = round(sum(v[2] for v in rows), 2)
        # The controller's work after the tasks' last result: the end of a role or play for every host when such a task
        # is the last of its role or play (the gates are), not the task's own work.
        result[part + "_after_results"] = round(sum(v[3] for v in rows), 2)
    return result


WHY = """The goal is <= 5 ms of controller time per host, add_host included. Ansible counts a host in its stats (PLAY RECAP,
AWX's job host summary) only from a task result of that host, and its linear strategy starts a worker process for every
host of every task that is not a `meta` task (`meta` results are not counted; a `run_once` or looped task counts for one
host only; a task skipped by `when` still starts its worker, which evaluates the condition). With ansible.builtin.linear
the outcome play therefore costs a fork, a worker and its result per instance. The opt-in strategy
cms.patching.linear_outcome computes each host's `cms.patching.host_outcome` result in the controller from the task's
templated arguments and hands it to Ansible's own result processing: same stats, callbacks and exit status, no worker.
What is left of the outcome play per host is the linear loop's own work (the host's variables, templating, the result,
the callbacks). The same strategy adds the hosts of a `cms.patching.add_hosts` task (the targets, the other instances,
held-back hosts) in the controller, without the add_host loop whose one worker templated every item. The gates compute
their held-back list once and add nothing when it is empty. A task's CPU runs from its start to the next task's start, so
the last task of a role or play (the gates are) also carries the controller's work between them, such as the end of the
role for every host: shown in brackets, and left out of the last column's bracketed figure.
ansible-core deprecates strategy plugins from collections (a warning when one is loaded, no removal date), so the
playbook's default stays ansible.builtin.linear; `-e cms_patching_outcome_strategy=cms.patching.linear_outcome` opts in."""


def render(rows):
    lines = [
        "| outcome strategy | instances (AMI failures) | hosts in recap | rc | wall s | CPU s, whole run | add_host ms/host"
        " | outcome ms/host (controller alone) | gates ms/host (controller after their last result) | per-host ms/host"
        " (without the controller's work after the tasks' last result) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        add = 1000.0 * r["add_host_cpu"] / r["instances"]
        outcome = 1000.0 * r["outcome_cpu"] / r["instances"]
        alone = 1000.0 * r.get("outcome_controller_cpu", 0.0) / r["instances"]
        gates = 1000.0 * r.get("gates_cpu", 0.0) / r["instances"]
        gates_after = 1000.0 * r.get("gates_after_results", 0.0) / r["instances"]
        after = 1000.0 * sum(r.get(part + "_after_results", 0.0) for part in PER_HOST) / r["instances"]
        failures = "%d (%d %%)" % (r["instances"], round(100 * r.get("fail_ratio", 0.0)))
        strategy = "ansible.builtin.linear (default)" if r.get("strategy", "default") == "default" else r["strategy"]
        total = add + outcome + gates
        lines.append(
            "| %s | %s | %d | %d | %.1f | %.1f | %.1f | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) |"
            % (strategy, failures, r["hosts_in_recap"], r["rc"], r["wall"], r["cpu"], add, outcome, alone, gates, gates_after, total, total - after)
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,4000")
    parser.add_argument("--strategies", default="default,cms.patching.linear_outcome", help="comma-separated: default, cms.patching.linear_outcome")
    parser.add_argument("--fail-ratio", type=float, default=0.0, help="share of the instances whose AMI fails (held back), e.g. 0.1")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    rows = []
    for count in [int(c) for c in args.counts.split(",")]:
        for strategy in args.strategies.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                row = run_site(count, pathlib.Path(tmp), strategy, args.fail_ratio)
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
    rest = ""
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text, rest = text[:start], ("\n" + text[end:].lstrip("\n")) if end >= 0 else ""
    out.write_text(text.rstrip("\n") + "\n" + section + rest, encoding="utf-8")
    print(section)


if __name__ == "__main__":
    main()
