"""Packaging for AWX / Automation Platform: the execution environment definition, ansible-navigator's settings, the
collection tarball, the action group for module_defaults and the filter plugins' documentation."""

import inspect
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile

import jsonschema
import pytest
import yaml

from ansible_collections.cms.patching.plugins.filter.patching import FilterModule

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")


def pins(path):
    """name -> version of the name==version lines of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\[\]-]+)==(\S+)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def lint_schema(name):
    import ansiblelint.schemas

    return json.loads((pathlib.Path(ansiblelint.schemas.__file__).parent / ("%s.json" % name)).read_text())


def test_ansible_builder_creates_the_build_context(tmp_path):
    context = tmp_path / "context"
    proc = subprocess.run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "--file",
            str(REPO / "execution-environment.yml"),
            "--context",
            str(context),
            "--output-filename",
            "Containerfile",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    dev = pins(REPO / "requirements-dev.txt")
    # The image gets the ansible-core and ansible-runner the tests run with.
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==%s"' % (dev["ansible-core"], dev["ansible-runner"]) in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    # The modules' Python requirements are the collection's own requirements.txt, and amazon.aws comes from Galaxy.
    assert (context / "_build" / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert [c["name"] for c in galaxy["collections"]] == ["amazon.aws"]
    assert "ansible-galaxy collection install" in containerfile


def test_execution_environment_and_navigator_settings_follow_their_schemas():
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    jsonschema.validate(definition, lint_schema("execution-environment"))
    assert definition["version"] == 3
    navigator = yaml.safe_load((REPO / "ansible-navigator.yml").read_text())
    jsonschema.validate(navigator, lint_schema("ansible-navigator-config"))
    settings = navigator["ansible-navigator"]
    # Navigator runs the image the definition builds, with the AWS and cms.patching settings of the caller.
    assert settings["execution-environment"]["image"] in definition["options"]["tags"]
    passed = set(settings["execution-environment"]["environment-variables"]["pass"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "CMS_PATCHING_LZ_PATH"} <= passed


def test_the_collection_tarball_leaves_out_the_self_link_and_the_checkout_files(tmp_path):
    proc = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [artifact] = tmp_path.glob("cms-patching-*.tar.gz")
    with tarfile.open(artifact) as archive:
        names = archive.getnames()
    tops = {name.split("/", 1)[0] for name in names}
    # collections/ansible_collections/cms/patching -> ../../.. would be a directory loop once installed.
    assert not tops & {"collections", ".venv", "sandbox", "benchmarks", "tools", "reports", ".sandbox", ".cache", "Makefile"}
    assert not [n for n in names if n.startswith("tests/output")]
    # What ansible-builder and ansible-doc need from an installed collection stays.
    for name in ("meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt", "plugins/filter/wave_plan.yml"):
        assert name in names
    # Installed from the tarball, ansible-builder finds the collection's Python requirements (meta/execution-environment.yml).
    # (Outside this checkout, whose ansible.cfg would find cms.patching already installed through the self-link.)
    installed = tmp_path / "installed"
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "-p", str(installed), str(artifact)],
        capture_output=True,
        check=True,
        cwd=tmp_path,
        env={k: v for k, v in ENV.items() if k != "ANSIBLE_CONFIG"},
    )
    proc = subprocess.run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(installed)], capture_output=True, text=True, check=True, env=ENV)
    python = yaml.safe_load(proc.stdout)["python"]
    assert "boto3>=1.34.0  # from collection cms.patching" in python and "botocore>=1.34.0  # from collection cms.patching" in python


def test_the_aws_group_of_module_defaults_reaches_these_modules_and_amazon_aws(tmp_path):
    """group/cms.patching.aws sets the AWS options of this collection's modules and (extend_group) of amazon.aws's."""
    runtime = yaml.safe_load((REPO / "meta/runtime.yml").read_text())
    assert {"metadata": {"extend_group": ["amazon.aws.aws"]}} in runtime["action_groups"]["aws"]
    playbook = tmp_path / "defaults.yml"
    tasks = [
        {"name": name, module: args, "register": name, "ignore_errors": True}
        for name, module, args in (
            ("own", "cms.patching.ec2_patch_scan", {"accounts": [{"account_id": "123456789012"}], "regions": ["us-east-1"]}),
            ("theirs", "amazon.aws.ec2_instance_info", None),
        )
    ]
    tasks.append({"name": "show", "ansible.builtin.debug": {"msg": "OWN {{ own.msg }} THEIRS {{ theirs.msg }}"}})
    play = {"hosts": "localhost", "gather_facts": False, "module_defaults": {"group/cms.patching.aws": {"profile": "cms-no-such-profile"}}, "tasks": tasks}
    playbook.write_text(yaml.safe_dump([play]))
    env = dict(ENV, AWS_EC2_METADATA_DISABLED="true", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(playbook)], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300)
    # Both modules used the group's profile (and found no such profile, before any AWS call).
    [shown] = re.findall(r'"msg": "(OWN .*)"', proc.stdout) or [proc.stdout[-3000:] + proc.stderr[-2000:]]
    own, theirs = shown.split(" THEIRS ")
    assert "cms-no-such-profile" in own and "cms-no-such-profile" in theirs, shown


@pytest.mark.parametrize("name", sorted(FilterModule().filters()))
def test_every_filter_is_documented_for_ansible_doc(name):
    proc = subprocess.run([str(BIN / "ansible-doc"), "-t", "filter", "--json", "cms.patching.%s" % name], capture_output=True, text=True, check=False, env=ENV)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["cms.patching.%s" % name]
    assert doc["doc"]["name"] == name and doc["doc"]["short_description"]
    assert doc["examples"] and "cms.patching.%s" % name in doc["examples"]
    assert "_value" in doc["return"]
    # Every argument the filter takes is documented (the input is _input).
    arguments = list(inspect.signature(FilterModule().filters()[name]).parameters)
    assert set(doc["doc"]["options"]) == {"_input"} | set(arguments[1:])
