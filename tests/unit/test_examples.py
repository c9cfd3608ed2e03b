"""Every module's EXAMPLES run as written: valid YAML tasks, only options the module has (the required ones given), and
every variable path they use - lz.config.accounts, scan.instances, backup.instances[].backup_status, patch.pending -
exists in what the module that registers the variable really returns (landing_zone: a real result for the demo landing
zone; the AWS modules: their RETURN documentation, as ansible-doc shows it)."""

import ast
import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import jinja2
import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from jinja2 import nodes

from ansible_collections.cms.patching.plugins.modules import landing_zone

REPO = pathlib.Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))
# Variables every play has, and the inputs an example leaves to the reader (named so in the example's own words).
MAGIC = {"hostvars", "groups", "ansible_play_hosts", "ansible_play_hosts_all", "inventory_hostname", "playbook_dir", "ansible_check_mode", "group_names"}
INPUTS = {"run_id", "wave_instances", "cms_patching_failure"}
# Filters that keep a list's elements as they are (what comes out has the same keys as what went in).
SAME_ELEMENTS = {"list", "selectattr", "rejectattr", "unique", "sort", "reverse", "first", "last", "select", "reject"}
TEMPLATED_KEYWORDS = ("when", "until", "failed_when", "changed_when")


def module_doc(name):
    proc = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "ansible-doc"), "-t", "module", "--json", "cms.patching.%s" % name],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
    )
    return json.loads(proc.stdout)["cms.patching.%s" % name]


def examples(name):
    tree = ast.parse((REPO / "plugins" / "modules" / ("%s.py" % name)).read_text())
    [text] = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "EXAMPLES"]
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def docs():
    return {name: module_doc(name) for name in MODULES}


@pytest.fixture(scope="module")
def registered():
    """register name -> the module whose EXAMPLES register it (one module per name across all EXAMPLES)."""
    owners = {}
    for name in MODULES:
        for task in examples(name):
            if "register" in task:
                owners.setdefault(task["register"], set()).add(next(k for k in task if k.startswith("cms.patching.")).split(".")[-1])
    assert all(len(o) == 1 for o in owners.values()), owners
    return {var: o.pop() for var, o in owners.items()}


@pytest.fixture(scope="module")
def landing_zone_result():
    """What landing_zone really returns, for the demo landing zone."""
    out = io.StringIO()
    with patch_module_args({"name": "demo", "search_paths": [str(REPO / "inventories")]}), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        landing_zone.main()
    result = json.loads(out.getvalue())
    assert not result.get("failed"), result
    return result


# -- the Jinja side: which variable paths and element keys an expression uses ------------------------------------------


def path_of(node):
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        base = path_of(node.node)
        return base + (node.attr,) if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        base = path_of(node.node)
        return base + (node.arg.value,) if base else None
    return None


def source_path(node):
    """The variable path a chain of element-preserving filters starts from."""
    while isinstance(node, nodes.Filter) and node.name in SAME_ELEMENTS:
        node = node.node
    return path_of(node)


def element_keys(node):
    """The element keys a filter reads: selectattr('x'), map(attribute='x'), items2dict(key_name=..., value_name=...)."""
    if node.name in ("selectattr", "rejectattr") and node.args and isinstance(node.args[0], nodes.Const):
        return [node.args[0].value]
    keys = [kw.value.value for kw in node.kwargs if kw.key in ("attribute", "key_name", "value_name") and isinstance(kw.value, nodes.Const)]
    if node.name == "items2dict" and not keys:
        keys = ["key", "value"]
    return keys


def uses(expression):
    """(variable paths, [(list path, element key)]) of one Jinja expression."""
    tree = jinja2.Environment().parse("{{ %s }}" % expression)
    paths = {p for n in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)) for p in [path_of(n)] if p}
    # A loop variable or a filter's own argument is not a variable path of the example.
    elements = [(source_path(f.node), key) for f in tree.find_all(nodes.Filter) for key in element_keys(f) if source_path(f.node)]
    return paths, elements


def expressions(value):
    if isinstance(value, str):
        for start in range(len(value)):
            if value.startswith("{{", start):
                end = value.index("}}", start)
                yield value[start + 2 : end]
    elif isinstance(value, dict):
        for item in value.values():
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def task_expressions(task):
    for key, value in task.items():
        if key in TEMPLATED_KEYWORDS:
            yield from (value if isinstance(value, list) else [value])
        elif key != "name":
            yield from expressions(value)


# -- the return side ---------------------------------------------------------------------------------------------------


def resolve_documented(returns, path):
    """Walk a RETURN documentation tree; returns the node at the path, or raises KeyError naming where it stopped."""
    current = {"contains": returns, "type": "dict"}
    for depth, key in enumerate(path):
        contains = current.get("contains")
        if contains is None:
            if current.get("type") in ("dict", "raw") or (current.get("type") == "list" and current.get("elements") != "dict"):
                return current  # documented as a whole: nothing deeper to check
            raise KeyError("%s is a %s" % (".".join(path[:depth]), current.get("type")))
        if key not in contains:
            raise KeyError("%s has no %r (it has %s)" % (".".join(path[:depth]) or "the result", key, ", ".join(sorted(contains))))
        current = contains[key]
    return current


def resolve_real(result, path):
    current = result
    for depth, key in enumerate(path):
        if not isinstance(current, dict) or key not in current:
            raise KeyError("%s has no %r (it has %s)" % (".".join(path[:depth]) or "the result", key, ", ".join(sorted(current))))
        current = current[key]
    return current


def check_path(path, registered, docs, lz_result):
    module = registered[path[0]]
    if module == "landing_zone":
        return resolve_real(lz_result, path[1:])
    return resolve_documented(docs[module]["return"], path[1:])


def check_element(path, key, registered, docs, lz_result):
    module = registered[path[0]]
    if module == "landing_zone":
        value = resolve_real(lz_result, path[1:])
        assert isinstance(value, list) and all(key in item for item in value), "%s[] has no %r" % (".".join(path), key)
        return
    node = resolve_documented(docs[module]["return"], path[1:])
    assert node.get("type") == "list" and node.get("elements") == "dict", "%s is not a list of dicts" % ".".join(path)
    assert key in (node.get("contains") or {}), "%s[] has no %r (it has %s)" % (".".join(path), key, ", ".join(sorted(node.get("contains") or {})))


# -- the tests ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_examples_are_tasks_of_documented_options(name, docs):
    tasks = examples(name)
    assert isinstance(tasks, list) and tasks
    options = docs[name]["doc"]["options"]
    required = {o for o, spec in options.items() if spec.get("required")}
    calls = 0
    for task in tasks:
        assert isinstance(task, dict) and task.get("name"), task
        modules = [k for k in task if "." in k]
        assert len(modules) == 1, "one FQCN module per task: %s" % task
        if modules[0] != "cms.patching.%s" % name:
            continue
        calls += 1
        args = task[modules[0]] or {}
        unknown = set(args) - set(options)
        assert not unknown, "%s: %s has no option %s" % (task["name"], modules[0], ", ".join(sorted(unknown)))
        assert required <= set(args), "%s: missing required %s" % (task["name"], ", ".join(sorted(required - set(args))))
    assert calls, "the EXAMPLES of %s never call it" % name


@pytest.mark.parametrize("name", MODULES)
def test_examples_use_only_what_the_modules_return(name, docs, registered, landing_zone_result):
    for task in examples(name):
        loop_vars = {"item", (task.get("loop_control") or {}).get("loop_var")}
        for expression in task_expressions(task):
            paths, elements = uses(expression)
            for path in paths:
                root = path[0]
                if root in registered:
                    try:
                        check_path(path, registered, docs, landing_zone_result)
                    except KeyError as exc:
                        pytest.fail("%s, task %r: {{ %s }}: %s" % (name, task["name"], ".".join(path), exc.args[0]))
                else:
                    assert root in MAGIC | INPUTS | loop_vars, "%s, task %r: %r is neither registered by an example nor a known input" % (
                        name,
                        task["name"],
                        root,
                    )
            for path, key in elements:
                if path[0] in registered:
                    check_element(path, key, registered, docs, landing_zone_result)


def test_the_checker_catches_a_path_the_module_does_not_return(docs, registered, landing_zone_result):
    # The mistake the EXAMPLES had: the accounts are under lz.config, not lz.
    with pytest.raises(KeyError, match="the result has no 'accounts'"):
        check_path(("lz", "accounts"), registered, docs, landing_zone_result)
    assert check_path(("lz", "config", "accounts"), registered, docs, landing_zone_result)
    with pytest.raises(AssertionError, match=r"backup.instances\[\] has no 'status'"):
        check_element(("backup", "instances"), "status", registered, docs, landing_zone_result)
    assert sorted(uses("backup.instances | rejectattr('backup_status', 'eq', 'verified') | items2dict(key_name='instance_id', value_name='reason')")[1]) == [
        (("backup", "instances"), "backup_status"),
        (("backup", "instances"), "instance_id"),
        (("backup", "instances"), "reason"),
    ]
