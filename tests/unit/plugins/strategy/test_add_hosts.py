"""cms.patching.add_hosts (roles/discovery/tasks/add_hosts.yml): the hosts, groups and variables it registers are those an
ansible.builtin.add_host loop registered, under cms.patching.linear_outcome (added by the controller, no loop) and under
ansible.builtin.linear (handed to the loop); and the gates add nothing, and start no add_host task, when no host is held back."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from ansible_collections.cms.patching.plugins.plugin_utils._add_hosts import add_host_entries

REPO = pathlib.Path(__file__).resolve().parents[4]
STRATEGIES = ("cms.patching.linear_outcome", "ansible.builtin.linear")
# Two instances discovery found (one named by the inventory), as inventory_hosts gives them; then the odd forms add_host
# accepts: a port in the name, groups as a comma-separated string, a host added twice (its variables are merged).
HOSTS = [
    {
        "name": "i-0123456789abcdef0",
        "groups": ["cms_patching_targets", "cms_patching_account_111111111111", "cms_patching_region_eu_west_1", "cms_patching_patch_group_web"],
        "instance_id": "i-0123456789abcdef0",
        "account_id": "111111111111",
        "region": "eu-west-1",
    },
    {
        "name": "web-2.example",
        "groups": ["cms_patching_targets", "cms_patching_account_222222222222", "cms_patching_region_us_east_1"],
        "instance_id": "i-0fedcba9876543210",
        "account_id": "222222222222",
        "region": "us-east-1",
    },
    {"name": "db-1.example:2222", "groups": "cms_patching_skipped, extra", "instance_id": "i-1", "region": "eu-west-1"},
    {"name": "web-2.example", "groups": ["cms_patching_failed"], "cms_patching_failure": "i-0fedcba9876543210: no verified backup"},
]
# What the roles did before add_hosts.yml: one ansible.builtin.add_host per host, each argument templated.
OLD_LOOP = """
    - name: Add every host, one add_host each (as before)
      ansible.builtin.add_host:
        name: "{{ item.name }}"
        groups: "{{ item.groups }}"
        instance_id: "{{ item.instance_id | default(omit) }}"
        account_id: "{{ item.account_id | default(omit) }}"
        region: "{{ item.region | default(omit) }}"
        cms_patching_failure: "{{ item.cms_patching_failure | default(omit) }}"
      loop: "{{ hosts_to_add }}"
      run_once: true
      changed_when: false
"""
NEW = """
    - name: Add every host
      ansible.builtin.include_role:
        name: cms.patching.discovery
        tasks_from: add_hosts.yml
      vars:
        discovery_add_hosts: "{{ hosts_to_add }}"
      run_once: true
"""
PLAY = """
- name: Add
  hosts: localhost
  gather_facts: false
  strategy: "{{ strategy_under_test }}"
  tasks:
%s
    - name: Dump what the inventory holds
      ansible.builtin.copy:
        dest: "{{ dump }}"
        mode: "0600"
        content: >-
          {{ {'groups': groups | dict2items | rejectattr('key', 'eq', 'ungrouped') | items2dict,
              'play_hosts_all': ansible_play_hosts_all,
              'added': __discovery_add_hosts | default({}) | dict2items
                       | selectattr('key', 'in', ['added', 'pending', 'failed', 'msg']) | items2dict,
              'hostvars': dict(groups['all'] | zip(groups['all'] | map('extract', hostvars)
                                                   | map('dict2items')
                                                   | map('selectattr', 'key', 'in', ['instance_id', 'account_id', 'region',
                                                                                     'cms_patching_failure', 'ansible_ssh_port',
                                                                                     'group_names'])
                                                   | map('items2dict')))} | to_json }}
"""


def ansible_playbook(inventory, playbook, vars_file, strategy, dump, env=None, extra=()):
    """Run ansible-playbook from the checkout on these files, with the strategy under test and the dump path as extra vars."""
    return subprocess.run(
        [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            "-e",
            "@%s" % vars_file,
            "-e",
            "strategy_under_test=%s dump=%s" % (strategy, dump),
            *extra,
        ],
        cwd=REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )


def run(tmp_path, strategy, tasks, hosts, extra=(), env=None):
    (tmp_path / "hosts.json").write_text(json.dumps({"hosts_to_add": hosts}))
    (tmp_path / "localhost.ini").write_text('localhost ansible_connection=local ansible_python_interpreter="{{ ansible_playbook_python }}"\n')
    (tmp_path / "play.yml").write_text(PLAY % tasks)
    dump = tmp_path / ("dump-%s.json" % strategy)
    proc = ansible_playbook(tmp_path / "localhost.ini", tmp_path / "play.yml", tmp_path / "hosts.json", strategy, dump, env, extra)
    return proc.returncode, (json.loads(dump.read_text()) if dump.exists() else None), proc.stdout


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_add_hosts_registers_what_the_add_host_loop_did(tmp_path, strategy):
    rc, old, output = run(tmp_path, "ansible.builtin.linear", OLD_LOOP, HOSTS)
    assert rc == 0, output
    rc, new, output = run(tmp_path, strategy, NEW, HOSTS)
    assert rc == 0, output
    assert new["groups"] == old["groups"]
    assert new["hostvars"] == old["hostvars"]
    assert new["play_hosts_all"] == old["play_hosts_all"]
    # The spot checks the roles and the report depend on.
    assert new["hostvars"]["db-1.example"] == {
        "instance_id": "i-1",
        "region": "eu-west-1",
        "ansible_ssh_port": 2222,
        "group_names": ["cms_patching_skipped", "extra"],
    }
    assert new["hostvars"]["web-2.example"]["cms_patching_failure"] == "i-0fedcba9876543210: no verified backup"
    assert new["groups"]["cms_patching_targets"] == ["i-0123456789abcdef0", "web-2.example"]
    assert new["groups"]["cms_patching_failed"] == ["web-2.example"]


def test_the_controller_adds_them_under_linear_outcome_and_the_loop_otherwise(tmp_path):
    _rc, fast, output = run(tmp_path, "cms.patching.linear_outcome", NEW, HOSTS)
    assert fast["added"] == {"added": 4, "pending": [], "msg": "4 host(s) added by the controller"}, output
    # No add_host loop ran: its task had no item.
    assert "ok: [localhost] => (item=" not in output, output
    _rc, slow, output = run(tmp_path, "ansible.builtin.linear", NEW, HOSTS)
    assert slow["added"]["added"] == 0 and slow["added"]["pending"] == HOSTS, output
    assert output.count("ok: [localhost] => (item=") == 4, output


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bad_hosts_fail_the_task_with_the_reason(tmp_path, strategy):
    rc, dump, output = run(tmp_path, strategy, NEW, [{"groups": ["g"]}])
    assert rc == 2 and dump is None, output
    assert "add_hosts: every host needs a name (name, host or hostname)" in output, output


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"hosts": [{"name": "h:22", "groups": "a, b,a", "v": 1}]}, [{"host_name": "h", "groups": ["a", "b"], "host_vars": {"v": 1, "ansible_ssh_port": 22}}]),
        # add_host's own precedence: name before hostname; groupname before groups; host and group stay variables.
        (
            {"hosts": [{"hostname": "x", "name": "n", "groupname": ["g1"], "groups": ["g2"], "host": "hv", "group": "gv"}]},
            [{"host_name": "n", "groups": ["g1"], "host_vars": {"host": "hv", "group": "gv"}}],
        ),
        ({"hosts": [{"host": "only-host"}]}, [{"host_name": "only-host", "groups": [], "host_vars": {"host": "only-host"}}]),
        ({"hosts": []}, []),
    ],
)
def test_add_host_entries_read_hosts_as_add_host_does(args, expected):
    assert add_host_entries(args) == (expected, None)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"hosts": "h1"}, "hosts must be a list of ansible.builtin.add_host arguments"),
        ({"hosts": [{"name": "h", "groups": {"g": 1}}]}, "the groups of host h must be a list"),
        ({"hosts": [], "group": "g"}, "unsupported option(s) group; supported: hosts"),
    ],
)
def test_add_host_entries_refuse_bad_arguments(args, message):
    entries, error = add_host_entries(args)
    assert entries is None and message in error


# The backup gate (roles/backup/tasks/record.yml) on a fake backup result; a callback notes every task that starts.
GATE = """
- name: Backup gate
  hosts: all:localhost
  gather_facts: false
  strategy: "{{ strategy_under_test }}"
  tasks:
    - name: The host names discovery keeps  # noqa: var-naming[no-role-prefix]
      ansible.builtin.set_fact:
        cms_patching_hosts: {"i-1": "web-1", "i-2": "web-2", "i-3": "web-3"}
      delegate_to: localhost
      delegate_facts: true
      run_once: true
    - name: The gate
      ansible.builtin.import_role:
        name: cms.patching.backup
        tasks_from: record.yml
        rolespec_validate: false
- name: Held back
  hosts: cms_patching_failed
  gather_facts: false
  tasks:
    - name: Dump
      ansible.builtin.copy:
        dest: "{{ dump }}"
        mode: "0600"
        content: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'cms_patching_failure'))) | to_json }}"
      run_once: true
      delegate_to: localhost
"""
TASK_LOG = """
import json, os
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_log"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_task_start(self, task, is_conditional):
        with open(os.environ["TASK_LOG"], "a") as out:
            out.write(json.dumps([task.get_name(), task.action]) + "\\n")
"""


def run_gate(tmp_path, strategy, statuses):
    (tmp_path / "callbacks").mkdir(exist_ok=True)
    (tmp_path / "callbacks" / "task_log.py").write_text(TASK_LOG)
    (tmp_path / "inventory.yml").write_text("all:\n  children:\n    cms_patching_targets:\n      hosts: {web-1: {}, web-2: {}, web-3: {}}\n")
    result = {"instances": [{"instance_id": "i-%d" % n, "backup_status": s, "reason": "AMI failed" if s == "failed" else ""} for n, s in statuses]}
    (tmp_path / "vars.json").write_text(json.dumps({"__backup_result": result, "report_set_stats": False}))
    (tmp_path / "gate.yml").write_text(GATE)
    log = tmp_path / ("tasks-%s.jsonl" % strategy)
    dump = tmp_path / ("held-%s.json" % strategy)
    env = {"ANSIBLE_CALLBACK_PLUGINS": str(tmp_path / "callbacks"), "ANSIBLE_CALLBACKS_ENABLED": "task_log", "TASK_LOG": str(log)}
    proc = ansible_playbook(tmp_path / "inventory.yml", tmp_path / "gate.yml", tmp_path / "vars.json", strategy, dump, env)
    started = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    return proc.returncode, started, (json.loads(dump.read_text()) if dump.exists() else None), proc.stdout


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gate_with_nothing_held_back_starts_no_add_host_task(tmp_path, strategy):
    rc, started, held, output = run_gate(tmp_path, strategy, [(1, "verified"), (2, "verified"), (3, "verified")])
    assert rc == 0, output
    assert held is None, output
    # The hosts are never templated one by one: no add_host (nor add_hosts) task even starts.
    actions = [action for _name, action in started]
    assert not {"ansible.builtin.add_host", "add_host", "cms.patching.add_hosts"} & set(actions), started
    assert "ansible.builtin.set_fact" in actions or "set_fact" in actions, started


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gate_holds_back_the_hosts_without_a_verified_backup(tmp_path, strategy):
    rc, _started, held, output = run_gate(tmp_path, strategy, [(1, "verified"), (2, "failed"), (3, "verified")])
    assert rc == 0, output
    assert held == {"web-2": "i-2: no verified backup, so it is not patched: failed: AMI failed"}, output


# record.yml with the backup result registered on every host of the play (run_once), as the backup task registers it.
RELEASE = """
- name: Backup gate on a registered result
  hosts: all:localhost
  gather_facts: false
  strategy: "{{ strategy_under_test }}"
  tasks:
    - name: The host names discovery keeps  # noqa: var-naming[no-role-prefix]
      ansible.builtin.set_fact:
        cms_patching_hosts: {"i-1": "web-1", "i-2": "web-2"}
      delegate_to: localhost
      delegate_facts: true
      run_once: true
    - name: The backup result, on every host as a run_once register puts it
      ansible.builtin.set_fact:
        __backup_result: "{{ fake_backup_result }}"
      run_once: true
    - name: The gate
      ansible.builtin.import_role:
        name: cms.patching.backup
        tasks_from: record.yml
        rolespec_validate: false
    - name: Dump
      ansible.builtin.copy:
        dest: "{{ dump }}"
        mode: "0600"
        content: >-
          {{ {'kept': hostvars['localhost']['cms_patching_results']['backup'],
              'registered': dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, '__backup_result')))}
             | to_json }}
      run_once: true
      delegate_to: localhost
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_registered_backup_result_is_released_once_kept(tmp_path, strategy):
    """The result stays once, in cms_patching_results: a second copy in every host's variables would double what the
    controller holds of the run's backups until the run ends."""
    result = {"instances": [{"instance_id": "i-%d" % n, "backup_status": "verified", "reason": ""} for n in (1, 2)]}
    (tmp_path / "inventory.yml").write_text("all:\n  children:\n    cms_patching_targets:\n      hosts: {web-1: {}, web-2: {}}\n")
    (tmp_path / "vars.json").write_text(json.dumps({"fake_backup_result": result, "report_set_stats": False}))
    (tmp_path / "release.yml").write_text(RELEASE)
    dump = tmp_path / ("release-%s.json" % strategy)
    proc = ansible_playbook(tmp_path / "inventory.yml", tmp_path / "release.yml", tmp_path / "vars.json", strategy, dump)
    assert proc.returncode == 0, proc.stdout
    dumped = json.loads(dump.read_text())
    assert dumped["kept"] == result, proc.stdout
    assert dumped["registered"] == {"web-1": {}, "web-2": {}, "localhost": {}}, proc.stdout
