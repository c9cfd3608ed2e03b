"""cms.patching.linear_outcome: host_outcome results made in the controller give every host the same status, output and
exit status as Ansible's own linear strategy, without a worker process per host; other tasks still go to workers."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from ansible_collections.cms.patching.plugins.plugin_utils._host_outcome import outcome_result

REPO = pathlib.Path(__file__).resolve().parents[4]
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.MULTILINE)
INVENTORY = """
all:
  children:
    cms_patching_targets:
      hosts:
        web-01: {}
        web-02: {cms_patching_failure: "i-02: backup not verified"}
        web-03: {}
    cms_patching_skipped:
      hosts:
        db-01: {}
    cms_patching_failed:
      hosts:
        web-02: {}
"""
# The outcome task as playbooks/hold_back.yml has it; msg carries the ID of the process that templated it (pipe lookup).
PLAY = """
- name: Outcome
  hosts: cms_patching_targets:cms_patching_skipped
  gather_facts: false
  strategy: "{{ strategy_under_test }}"
  tasks:
    - name: Outcome
      cms.patching.host_outcome:
        failed: "{{ 'cms_patching_failed' in group_names }}"
        changed: "{{ 'cms_patching_targets' in group_names }}"
        msg: >-
          {{ cms_patching_failure | default('patched' if 'cms_patching_targets' in group_names else 'not a target') }}
          pid={{ lookup('ansible.builtin.pipe', 'echo $PPID') }}
%s
"""


def run(tmp_path, strategy, extra=""):
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(PLAY % extra)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.junit",
        JUNIT_OUTPUT_DIR=str(tmp_path / "junit"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_NOCOLOR="1",
    )
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            str(tmp_path / "play.yml"),
            "-e",
            "strategy_under_test=%s" % strategy,
            "-v",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = proc.communicate(timeout=300)[0]
    recap = {m.group(1): tuple(int(v) for v in m.groups()[1:]) for m in RECAP.finditer(output[output.rindex("PLAY RECAP") :])}
    # One result line per host and task: "<status>: [<host>] => {json}" (default callback, -v).
    results = {}
    for match in re.finditer(r"^(ok|changed|fatal|skipping): \[([^\]]+)\](?:: FAILED!)? => (\{.*\})$", output, re.MULTILINE):
        results.setdefault(match.group(2), []).append((match.group(1), json.loads(match.group(3))))
    return proc.returncode, proc.pid, recap, results, output


def pids(results):
    return {host: int(re.search(r"pid=(\d+)", r[-1][1]["msg" if "msg" in r[-1][1] else "skip_reason"]).group(1)) for host, r in results.items()}


def test_same_stats_output_and_exit_status_as_linear(tmp_path):
    fast = run(tmp_path, "cms.patching.linear_outcome")
    slow = run(tmp_path, "ansible.builtin.linear")
    expected = {"web-01": (1, 1, 0, 0, 0), "web-02": (0, 0, 0, 1, 0), "web-03": (1, 1, 0, 0, 0), "db-01": (0, 0, 0, 0, 1)}
    for rc, _pid, recap, results, output in (fast, slow):
        assert rc == 2, output
        assert recap == expected, output
        assert results["web-02"][0][0] == "fatal" and results["web-02"][0][1]["msg"].startswith("i-02: backup not verified pid="), output
        assert results["db-01"][0][0] == "skipping" and results["db-01"][0][1]["skip_reason"].startswith("not a target"), output
    strip = re.compile(r"pid=\d+")
    assert {h: [(s, strip.sub("", json.dumps(d, sort_keys=True))) for s, d in r] for h, r in fast[3].items()} == {
        h: [(s, strip.sub("", json.dumps(d, sort_keys=True))) for s, d in r] for h, r in slow[3].items()
    }


def test_no_worker_per_host_under_linear_outcome(tmp_path):
    rc, pid, _recap, results, output = run(tmp_path, "cms.patching.linear_outcome")
    assert rc == 2, output
    # Every host's arguments were templated in the ansible-playbook process itself.
    assert set(pids(results).values()) == {pid}, output
    _rc, pid, _recap, results, output = run(tmp_path, "ansible.builtin.linear")
    # Ansible's linear strategy: one worker process per host, none of them the controller.
    assert pid not in pids(results).values() and len(set(pids(results).values())) == 4, output


def test_a_task_with_a_keyword_the_worker_implements_goes_to_a_worker(tmp_path):
    rc, pid, recap, results, output = run(tmp_path, "cms.patching.linear_outcome", "      when: inventory_hostname != 'web-03'")
    assert rc == 2, output
    assert recap["web-03"] == (0, 0, 0, 0, 1) and recap["web-01"] == (1, 1, 0, 0, 0) and recap["web-02"][3] == 1, output
    assert pid not in pids({h: r for h, r in results.items() if h != "web-03"}).values(), output


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"failed": True, "msg": "i-1: no AMI"}, {"failed": True, "changed": False, "msg": "i-1: no AMI"}),
        ({"failed": "yes", "changed": True}, {"failed": True, "changed": False, "msg": "failed"}),
        ({"changed": "true", "msg": "patched"}, {"changed": True, "msg": "patched"}),
        ({"changed": False, "msg": "not a target"}, {"skipped": True, "changed": False, "skip_reason": "not a target", "msg": "not a target"}),
    ],
)
def test_outcome_result(args, expected):
    assert outcome_result(args) == expected


def test_outcome_result_refuses_bad_arguments():
    assert outcome_result({"failed": "maybe"})["failed"] is True
    assert "failed and changed must be booleans" in outcome_result({"failed": "maybe"})["msg"]
    assert outcome_result({"status": "ok"}) == {
        "failed": True,
        "changed": False,
        "msg": "host_outcome: unsupported option(s) status; supported: failed, msg, changed",
    }


def test_a_task_compiles_each_template_once_and_renders_it_per_host(monkeypatch):
    """ansible-core compiles a template on every render; the controller's path compiles a task's templates once for all
    its hosts (1,000 hosts: about 1.5 ms of CPU a host saved) and still renders each host's own values."""
    from ansible._internal._templating import _engine  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.template import trust_as_template  # pylint: disable=import-outside-toplevel

    from ansible_collections.cms.patching.plugins.strategy.linear_outcome import _TaskTemplating  # pylint: disable=import-outside-toplevel

    compiled = []
    original = _engine.TemplateEngine._compile_template  # pylint: disable=protected-access

    def counting(self, template, options):
        compiled.append(str(template))
        return original(self, template, options)

    monkeypatch.setattr(_engine.TemplateEngine, "_compile_template", counting)
    loader = DataLoader()
    # As a playbook's task arguments are: trusted templates (ansible-core renders no others).
    args = {
        "failed": trust_as_template("{{ 'cms_patching_failed' in group_names }}"),
        "msg": trust_as_template("{{ cms_patching_failure | default('patched') }} on {{ inventory_hostname }}"),
    }
    templating = _TaskTemplating(loader)
    hosts = {
        "web-01": {"group_names": ["cms_patching_targets"], "inventory_hostname": "web-01"},
        "web-02": {"group_names": ["cms_patching_failed"], "inventory_hostname": "web-02", "cms_patching_failure": "no AMI"},
        "web-03": {"group_names": ["cms_patching_targets"], "inventory_hostname": "web-03"},
    }
    rendered = {host: templating.template(args, variables) for host, variables in hosts.items()}
    assert rendered == {
        "web-01": {"failed": False, "msg": "patched on web-01"},
        "web-02": {"failed": True, "msg": "no AMI on web-02"},
        "web-03": {"failed": False, "msg": "patched on web-03"},
    }
    assert sorted(compiled) == sorted(args.values())  # once each, not once per host


def test_removed_hosts_answer_membership_like_the_list_they_replace():
    """Play._removed_hosts under the strategy: the same list (order, duplicates), with ``in`` from a count, so a play
    where many hosts fail does not test every host against every failed one for every host and task."""
    from ansible_collections.cms.patching.plugins.strategy.linear_outcome import _HostNames  # pylint: disable=import-outside-toplevel

    plain, names = ["web-01"], _HostNames(["web-01"])
    steps = [
        ("append", ("web-02",)),
        ("append", ("web-02",)),
        ("remove", ("web-02",)),
        ("extend", (["db-01", "db-02"],)),
        ("insert", (0, "web-03")),
        ("pop", ()),
        ("remove", ("web-01",)),
        ("__delitem__", (0,)),
        ("__setitem__", (0, "web-04")),
    ]
    for method, args in steps:
        getattr(plain, method)(*args)
        getattr(names, method)(*args)
        assert list(names) == plain
        for host in ("web-01", "web-02", "web-03", "web-04", "db-01", "db-02"):
            assert (host in names) == (host in plain), (method, host)
    names += ["web-05"]
    assert "web-05" in names and list(names)[-1] == "web-05"
    names.clear()
    assert "web-04" not in names and not names


def test_a_controller_task_builds_the_magic_variables_once_for_all_its_hosts(monkeypatch):
    """ansible-core builds ansible_play_hosts_all, ansible_play_hosts and ansible_play_batch for every host of every task
    (three passes over the play's hosts per host); for a task the controller runs itself they are built once and shared,
    with the same values, and built again when a host fails or the play's hosts change."""
    from ansible.inventory.manager import InventoryManager  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.playbook.play import Play  # pylint: disable=import-outside-toplevel
    from ansible.playbook.task import Task  # pylint: disable=import-outside-toplevel
    from ansible.vars.manager import VariableManager  # pylint: disable=import-outside-toplevel

    from ansible_collections.cms.patching.plugins.strategy import linear_outcome  # pylint: disable=import-outside-toplevel
    from ansible_collections.cms.patching.plugins.strategy.linear_outcome import _HostNames, _VariablesForMeta  # pylint: disable=import-outside-toplevel

    # The outcome task stands for a host_outcome task (its classification is _controller_action's, tested with playbooks above).
    monkeypatch.setattr(linear_outcome, "_controller_action", lambda task: linear_outcome.ACTION if task and task.action == "ansible.builtin.debug" else None)

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[])
    for name in ("web-01", "web-02", "web-03", "db-01"):
        inventory.add_host(name, group="all")
    manager = VariableManager(loader=loader, inventory=inventory)
    play = Play.load({"name": "Outcome", "hosts": "all", "gather_facts": False}, variable_manager=manager, loader=loader)
    play._removed_hosts = _HostNames()  # pylint: disable=protected-access  # as StrategyModule.run installs it
    outcome, ping = Task(), Task()  # made, not loaded: the unit tests' collection loader resolves no module in a play
    outcome.action, ping.action = "ansible.builtin.debug", "ansible.builtin.ping"
    built = []
    original = VariableManager._get_magic_variables  # pylint: disable=protected-access

    def counting(self, *args, **kwargs):
        built.append(kwargs.get("task"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VariableManager, "_get_magic_variables", counting)
    wrapper = _VariablesForMeta(manager)
    hosts = inventory.get_hosts()
    names = [h.name for h in hosts]
    lists = ("ansible_play_hosts_all", "ansible_play_hosts", "ansible_play_batch")

    def variables(task, host):
        return wrapper.get_vars(play=play, host=host, task=task, _hosts=names, _hosts_all=names)

    shared = [variables(outcome, host) for host in hosts]
    assert len(built) == 1
    expected = manager.get_vars(play=play, host=hosts[1], task=outcome, _hosts=names, _hosts_all=names)
    for host, host_vars in zip(hosts, shared):
        assert host_vars["inventory_hostname"] == host.name
        assert {k: host_vars[k] for k in lists} == {k: expected[k] for k in lists} == {k: names for k in lists}
    # A failed host: the next host's lists are built again, without it.
    built.clear()
    play._removed_hosts.append("web-02")  # pylint: disable=protected-access
    after = variables(outcome, hosts[2])
    assert len(built) == 1 and after["ansible_play_hosts"] == [n for n in names if n != "web-02"]
    assert after["ansible_play_hosts_all"] == names
    # A task a worker runs is left to ansible-core: built per host, as before.
    built.clear()
    for host in hosts:
        variables(ping, host)
    assert len(built) == len(hosts)
    assert "_get_magic_variables" not in vars(manager)


def test_a_worker_forks_with_the_controllers_objects_frozen_and_the_controller_unfreezes(monkeypatch):
    """The fork inherits a frozen heap (its collector never scans, so never copies, the controller's objects); the
    controller's own objects are back under its collector right after, even when queueing fails."""
    import gc  # pylint: disable=import-outside-toplevel

    from ansible.plugins.strategy.linear import StrategyModule as Linear  # pylint: disable=import-outside-toplevel

    from ansible_collections.cms.patching.plugins.strategy.linear_outcome import StrategyModule  # pylint: disable=import-outside-toplevel

    seen = []

    def queue(self, host, task, task_vars, play_context):
        seen.append(gc.get_freeze_count())
        if host == "broken":
            raise RuntimeError("fork failed")

    monkeypatch.setattr(Linear, "_queue_task", queue)
    strategy = StrategyModule.__new__(StrategyModule)  # no TaskQueueManager needed for the worker path
    monkeypatch.setattr(StrategyModule, "_in_controller", lambda self, task: None)
    assert gc.get_freeze_count() == 0
    strategy._queue_task("web-01", None, {}, None)  # pylint: disable=protected-access
    with pytest.raises(RuntimeError):
        strategy._queue_task("broken", None, {}, None)  # pylint: disable=protected-access
    assert seen[0] > 0 and seen[1] > 0  # every object of the controller was frozen when the worker was forked
    assert gc.get_freeze_count() == 0
