"""cms.patching.linear_outcome: the end of a role (implicit role_complete) and an implicit flush_handlers cost no host
variables, and the play still runs as under ansible.builtin.linear (roles once per host, handlers notified, stats)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest
from ansible.playbook.task import Task

from ansible_collections.cms.patching.plugins.strategy.linear_outcome import _NoVars, _VariablesForMeta

REPO = pathlib.Path(__file__).resolve().parents[4]
RECAP = re.compile(r"^(\S+)\s+: (ok=.*)$", re.MULTILINE)


class Manager:
    def __init__(self):
        self.asked = []
        self.extra_vars = {"lz": "demo"}

    def get_vars(self, play=None, host=None, task=None, **_kwargs):
        self.asked.append(task)
        return {"inventory_hostname": host}


def meta(action, implicit=True, when=None):
    task = Task()
    task.action = "meta"
    task.args = {"_raw_params": action}
    task.implicit = implicit
    if when is not None:
        task.when = when
    return task


@pytest.mark.parametrize(
    "task, computed",
    [
        (meta("role_complete", when=True), False),
        (meta("flush_handlers"), False),
        # A flush_handlers with a when evaluates it against the host's variables; explicit meta tasks are left alone.
        (meta("flush_handlers", when=["x is defined"]), True),
        (meta("role_complete", implicit=False), True),
        (meta("end_play"), True),
        (None, True),
    ],
)
def test_only_the_implicit_meta_tasks_that_read_no_variable_get_none(task, computed):
    manager = Manager()
    wrapped = _VariablesForMeta(manager)
    result = wrapped.get_vars(play=None, host="web-1", task=task)
    assert (manager.asked == [task]) is computed
    assert isinstance(result, _NoVars) is not computed
    # Everything else is the manager's own.
    assert wrapped.extra_vars == {"lz": "demo"}
    wrapped.extra_vars = {"lz": "prod"}
    assert manager.extra_vars == {"lz": "prod"}


ROLE = """
- name: In the role
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} in the role"
  changed_when: inventory_hostname in ['web-2', 'web-4']
  notify: Handler
"""
PLAY = """
- name: Roles and handlers
  hosts: web
  gather_facts: false
  strategy: "{{ strategy_under_test }}"
  handlers:
    - name: Handler
      ansible.builtin.debug:
        msg: "handler ran on {{ inventory_hostname }}"
  tasks:
    - name: Import the role
      ansible.builtin.import_role:
        name: r
    - name: Include it again
      ansible.builtin.include_role:
        name: r
    - name: Afterwards every host still has its variables
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }} {{ instance_id }} of {{ ansible_play_hosts | length }}"
"""


def run(tmp_path, strategy):
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(ROLE)
    (tmp_path / "inventory.yml").write_text("web:\n  hosts:\n%s" % "".join("    web-%d: {instance_id: i-%d}\n" % (n, n) for n in range(1, 6)))
    (tmp_path / "play.yml").write_text(PLAY)
    proc = subprocess.run(
        [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            str(tmp_path / "play.yml"),
            "-e",
            "strategy_under_test=" + strategy,
        ],
        cwd=REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(tmp_path / "roles"), ANSIBLE_NOCOLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout


def test_roles_and_handlers_run_as_under_linear(tmp_path):
    rc, slow = run(tmp_path, "ansible.builtin.linear")
    assert rc == 0, slow
    rc, fast = run(tmp_path, "cms.patching.linear_outcome")
    assert rc == 0, fast
    assert dict(RECAP.findall(fast)) == dict(RECAP.findall(slow)) and len(RECAP.findall(fast)) == 5, fast
    # The role ran as often on each host, the handler on the hosts that notified it, and every host kept its variables.
    in_role = sorted(re.findall(r'"(web-\d) in the role"', fast))
    assert in_role == sorted(re.findall(r'"(web-\d) in the role"', slow)) and set(in_role) == {"web-%d" % n for n in range(1, 6)}, fast
    for output in (fast, slow):
        assert sorted(re.findall(r"handler ran on (web-\d)", output)) == ["web-2", "web-4"], output
        assert sorted(re.findall(r'"(web-\d i-\d) of 5"', output)) == ["web-%d i-%d" % (n, n) for n in range(1, 6)], output
