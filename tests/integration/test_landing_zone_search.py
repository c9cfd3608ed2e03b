"""Landing zones where users keep them, read by the config role alone, and no external ID in inventory or -v output."""

import json
import pathlib
import subprocess
import sys

from conftest import ANSIBLE_PLAYBOOK, REPO

ANSIBLE_INVENTORY = str(pathlib.Path(sys.executable).parent / "ansible-inventory")
DEMO = (REPO / "inventories" / "demo" / ".landing_zone.yml").read_text()


def run(command, env, cwd, timeout=300):
    proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout


def user_project(tmp_path):
    """A project of its own: site.yml importing the installed collection's playbook, its landing zone in inventories/mylz/."""
    project = tmp_path / "project"
    (project / "inventories" / "mylz").mkdir(parents=True)
    (project / "inventories" / "mylz" / ".landing_zone.yml").write_text(DEMO)
    (project / "site.yml").write_text("---\n- name: Patch\n  ansible.builtin.import_playbook: cms.patching.site\n")
    return project


def project_env(lz_env, tmp_path):
    """No ansible.cfg of this repository: the collection as if installed, the report callback not enabled."""
    env = dict(lz_env)
    env.pop("ANSIBLE_CONFIG")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    return env


def test_a_user_project_finds_its_own_landing_zone_and_is_told_to_enable_the_report(aws, lz_env, tmp_path):
    project = user_project(tmp_path)
    rc, output = run([ANSIBLE_PLAYBOOK, "site.yml", "-e", "lz=mylz", "--tags", "config"], project_env(lz_env, tmp_path), project)
    assert rc == 0, output[-3000:]
    assert "unknown landing zone" not in output
    assert '"file": "%s"' % (project / "inventories" / "mylz" / ".landing_zone.yml") in output
    # Without the callback the run would leave no CSV: the config phase says so once, with the line to add.
    assert output.count("callbacks_enabled = cms.patching.patch_report") == 1, output[-3000:]
    assert aws.state.calls.snapshot()["total"] == 0


def test_an_inventory_source_directory_is_searched(aws, lz_env, tmp_path):
    zone = tmp_path / "elsewhere" / "zones" / "far"
    zone.mkdir(parents=True)
    (zone / ".landing_zone.yml").write_text(DEMO)
    (zone / "hosts.ini").write_text("[nothing]\n")
    rc, output = run([ANSIBLE_PLAYBOOK, "site.yml", "-e", "lz=far", "--tags", "config", "-i", str(zone)], lz_env, REPO)
    assert rc == 0, output[-3000:]
    assert '"file": "%s"' % (zone / ".landing_zone.yml") in output


def test_the_inventory_source_imports_no_landing_zone_and_no_external_id(aws, lz_env):
    rc, output = run([ANSIBLE_INVENTORY, "-i", "inventories/demo", "--list"], lz_env, REPO)
    assert rc == 0, output[-3000:]
    inventory = json.loads(output[output.index("{") :])
    assert len(inventory["_meta"]["hostvars"]) == 30
    assert "cms-demo" not in output and "cms_patching_landing_zone" not in output and "external_id" not in output


def test_no_external_id_at_any_verbosity(aws, playbook):
    run_ = playbook("--tags", "config", "-vvv")
    assert run_.rc == 0, run_.output[-3000:]
    assert "cms-demo" not in run_.output
    # The configuration is shown, with the external ID masked.
    assert '"external_id": "********"' in run_.output and "arn:aws:iam::210987654321:role/CmsPatchingRole" in run_.output
