"""extensions/awx/setup.yml without a controller: syntax, job templates that match site.yml, and a run of the playbook in
which every awx.awx module is a stand-in that records the arguments it was given. Each recorded call is checked against
the real awx.awx module's documented options (suboptions of the workflow nodes included), and the objects it makes are
checked against each other: every name a workflow node or inventory source refers to is made by the playbook.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
AWX_DIR = REPO / "extensions" / "awx"
BIN = pathlib.Path(sys.executable).parent
AWX_MODULES = pathlib.Path(yaml.__file__).parents[1] / "ansible_collections" / "awx" / "awx" / "plugins" / "modules"
USED = ("project", "credential", "inventory", "inventory_source", "job_template", "workflow_job_template")

# Prints nothing but its arguments (templated, omit removed: what the real module would get) to $AWX_CALLS.
STAND_IN = """#!/usr/bin/python
import json
import os
from ansible.module_utils.basic import _load_params
params = dict((k, v) for k, v in _load_params().items() if not k.startswith("_ansible"))
with open(os.environ["AWX_CALLS"], "a") as handle:
    handle.write(json.dumps({"module": %r, "params": params}) + "\\n")
print(json.dumps({"changed": True}))
raise SystemExit(0)
"""


def documented_options(module):
    """The real module's options (with the auth fragment's), as {name: spec} with aliases as names too."""
    source = (AWX_MODULES / ("%s.py" % module)).read_text()
    doc = yaml.safe_load(source.split("DOCUMENTATION = ", 1)[1].split("'''", 2)[1])
    auth = yaml.safe_load((AWX_MODULES.parent / "doc_fragments" / "auth.py").read_text().split("r'''", 1)[1].split("'''", 1)[0])
    options = dict(auth["options"], **doc["options"])
    for spec in list(options.values()):
        for alias in spec.get("aliases") or []:
            options[alias] = spec
    return options


def site_tags():
    """Every tag site.yml's plays give (the phase tags a job template may run)."""
    tags = set()

    def walk(node):
        if isinstance(node, dict):
            value = node.get("tags")
            tags.update([value] if isinstance(value, str) else value or [])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(yaml.safe_load((REPO / "playbooks" / "site.yml").read_text()))
    return tags - {"never", "always"}


def settings():
    data = {}
    for name in ("settings.yml", "job_templates.yml"):
        data.update(yaml.safe_load((AWX_DIR / "vars" / name).read_text()))
    return data


def test_syntax_check():
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", str(AWX_DIR / "setup.yml"), "-e", "cms_awx_lz=demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_job_templates_run_site_yml_with_its_tags():
    templates = settings()["cms_awx_job_templates"]
    assert {t["id"] for t in templates} >= {"discovery", "backup", "verify_backup", "full_patch", "patching", "retention"}
    known = site_tags()
    assert {"discovery", "backup", "patching", "retention", "verify_backup"} <= known
    for template in templates:
        assert (REPO / template["playbook"]).is_file(), template
        for tag in filter(None, template["job_tags"].split(",")):
            assert tag in known, "%s: tag %r is not a tag of playbooks/site.yml (%s)" % (template["name"], tag, sorted(known))


def test_survey_variables_are_read_by_the_config_role():
    defaults = (REPO / "roles" / "config" / "defaults" / "main.yml").read_text()
    for question in settings()["cms_awx_survey_questions"].values():
        assert question["type"] in ("text", "multiplechoice") and question["question_name"]
        # lz and run_id are the playbook's own extra variables.
        assert "{{ %s |" % question["variable"] in defaults or "{{ %s " % question["variable"] in defaults


def run_setup(tmp_path, *extra):
    """Runs setup.yml with awx.awx replaced by recording stand-ins; returns (completed process, recorded calls)."""
    collection = tmp_path / "collections" / "ansible_collections" / "awx" / "awx"
    (collection / "plugins" / "modules").mkdir(parents=True)
    (collection / "meta").mkdir()
    runtime = yaml.safe_load((AWX_MODULES.parents[1] / "meta" / "runtime.yml").read_text())
    (collection / "meta" / "runtime.yml").write_text(yaml.safe_dump({"requires_ansible": ">=2.15", "action_groups": runtime["action_groups"]}))
    (collection / "galaxy.yml").write_text(yaml.safe_dump({"namespace": "awx", "name": "awx", "version": "0.0.1", "readme": "x", "authors": ["x"]}))
    for module in USED:
        (collection / "plugins" / "modules" / ("%s.py" % module)).write_text(STAND_IN % module)
    log = tmp_path / "calls.jsonl"
    log.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CONTROLLER_"))}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        AWX_CALLS=str(log),
        ANSIBLE_NOCOLOR="1",
    )
    command = [str(BIN / "ansible-playbook"), str(AWX_DIR / "setup.yml"), "-e", "cms_awx_controller_host=https://awx.example.com"]
    for value in extra:
        command += ["-e", value]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    return proc, [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def awx_calls(tmp_path_factory):
    """The calls setup.yml makes for the demo landing zone."""
    proc, recorded = run_setup(
        tmp_path_factory.mktemp("awx_setup"),
        "cms_awx_lz=demo",
        "cms_awx_scm_url=https://git.example.com/cms.patching.git",
        "cms_awx_execution_environment=cms-patching-ee",
        "cms_awx_job_slice_count=3",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return recorded


def test_the_aws_credential_is_made_from_inputs_never_logged(tmp_path):
    secret = "wJalrXUtnFEMI-not-a-real-secret"
    inputs = json.dumps({"cms_awx_aws_credential_inputs": {"username": "AKIAEXAMPLE", "password": secret}})
    proc, recorded = run_setup(tmp_path, "cms_awx_lz=demo", "cms_awx_scm_url=https://git.example.com/x.git", inputs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [credential] = [c["params"] for c in recorded if c["module"] == "credential"]
    assert credential["state"] == "present" and credential["inputs"]["password"] == secret
    # The task that passes the secret never logs it (Ansible shows neither its arguments nor its result).
    [play] = yaml.safe_load((AWX_DIR / "setup.yml").read_text())
    [task] = [t for t in play["tasks"] if "inputs" in t.get("awx.awx.credential", {})]
    assert task["no_log"] is True and secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "extra",
    [("cms_awx_lz=nosuchlz", "cms_awx_scm_url=https://git.example.com/x.git"), ("cms_awx_lz=../demo",), ("cms_awx_lz=demo",)],
    ids=["no-inventory-sources", "not-a-directory-name", "no-scm-url"],
)
def test_nothing_is_made_without_a_landing_zone_and_a_repository(tmp_path, extra):
    proc, recorded = run_setup(tmp_path, *extra)
    assert proc.returncode != 0 and recorded == []
    assert "Give the landing zone with -e cms_awx_lz=<name>" in proc.stdout


def test_every_call_uses_documented_options(awx_calls):
    assert {call["module"] for call in awx_calls} == set(USED)
    for call in awx_calls:
        options = documented_options(call["module"])
        for name, value in call["params"].items():
            assert name in options, "%s: %s is not an option of awx.awx.%s" % (call["module"], name, call["module"])
            if "choices" in options[name] and not isinstance(value, list):
                assert value in options[name]["choices"], (call["module"], name, value)
        # The controller comes from module_defaults (the group reaches every awx.awx module).
        assert call["params"]["controller_host"] == "https://awx.example.com"
    node_options = documented_options("workflow_job_template")["workflow_nodes"]["suboptions"]
    [workflow] = [c["params"] for c in awx_calls if c["module"] == "workflow_job_template"]
    for node in workflow["workflow_nodes"]:
        assert set(node) <= set(node_options), node
        assert set(node.get("related", {})) <= set(node_options["related"]["suboptions"]), node


def test_objects_refer_to_each_other(awx_calls):
    by_module = {}
    for call in awx_calls:
        by_module.setdefault(call["module"], []).append(call["params"])
    [project] = by_module["project"]
    [inventory] = by_module["inventory"]
    assert project["scm_type"] == "git" and project["scm_update_on_launch"] is True
    assert "variables" not in inventory  # the landing zone is read from the project by the config role, not imported
    # One aws_ec2 source per account file of inventories/demo/, sourced from the project.
    sources = by_module["inventory_source"]
    files = sorted(p.name for p in (REPO / "inventories" / "demo").glob("*.aws_ec2.yml"))
    assert sorted(s["source_path"] for s in sources) == ["inventories/demo/%s" % f for f in files]
    assert len(files) == 2
    for source in sources:
        assert (source["source"], source["source_project"], source["inventory"]) == ("scm", project["name"], inventory["name"])
        assert source["credential"] == "cms.patching AWS" and source["overwrite"] is True
    # The AWS credential is referenced (it must exist), not made without inputs.
    [credential] = by_module["credential"]
    assert credential["state"] == "exists" and credential["credential_type"] == "Amazon Web Services"
    templates = {t["name"]: t for t in by_module["job_template"]}
    for template in templates.values():
        assert template["project"] == project["name"] and template["inventory"] == inventory["name"]
        assert template["credentials"] == [credential["name"]] and template["extra_vars"] == {"lz": "demo"}
        assert template["ask_variables_on_launch"] is False and template["execution_environment"] == "cms-patching-ee"
        if template["survey_enabled"]:
            assert {q["variable"] for q in template["survey_spec"]["spec"]} <= {"lz", "run_id"}
            assert all(q["question_name"] and q["type"] for q in template["survey_spec"]["spec"])
        else:
            assert "survey_spec" not in template
    # Sliced: the job templates without retention (every slice would run it over the whole landing zone).
    sliced = {name for name, t in templates.items() if t["job_slice_count"] == 3}  # an int, as the module expects
    assert sliced == {"cms.patching demo backup", "cms.patching demo patch after backup"}
    assert all(t["job_slice_count"] == 1 for name, t in templates.items() if name not in sliced)
    assert all("retention" not in templates[name]["job_tags"] and templates[name]["job_tags"] for name in sliced)
    # The workflow: discovery -> backup -> approval -> (approved) patching -> retention and report; every job template
    # node names a job template the playbook made.
    [workflow] = by_module["workflow_job_template"]
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}

    def next_of(identifier, kind):
        return [n["identifier"] for n in nodes[identifier].get("related", {}).get(kind, [])]

    assert next_of("discovery", "always_nodes") == ["backup"]
    assert next_of("backup", "always_nodes") == ["approval"]
    assert next_of("approval", "success_nodes") == ["patching"]
    assert next_of("patching", "always_nodes") == ["report"]
    assert nodes["approval"]["unified_job_template"]["type"] == "workflow_approval"
    tags = {}
    for identifier in ("discovery", "backup", "patching", "report"):
        job = nodes[identifier]["unified_job_template"]
        assert job["type"] == "job_template" and job["name"] in templates, job
        tags[identifier] = templates[job["name"]]["job_tags"]
    assert tags == {"discovery": "discovery", "backup": "backup", "patching": "patching", "report": "retention"}
