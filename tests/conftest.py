"""Shared fixtures: one in-process sandbox (moto, extended) for the whole test session.

moto's backends are process-wide, so one sandbox serves every test; tests that use it start from a reset one.
The modules reach it through botocore's AWS_ENDPOINT_URL, exactly as they reach the sandbox of ``make demo``.
"""

import json
import pathlib
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# tests/ itself for demo_fleet (pytest's prepend import mode adds it too; this keeps it true under any import mode).
for path in (REPO_ROOT, REPO_ROOT / "collections", REPO_ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ansible.module_utils import _internal as _module_internal  # noqa: E402  pylint: disable=wrong-import-position
from ansible.module_utils.common import warnings as warnings_module  # noqa: E402  pylint: disable=wrong-import-position
from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position

from demo_fleet import DEMO_ACCOUNTS, DEMO_REGIONS, OTHER_ACCOUNT, OTHER_ROLE, OWN_ACCOUNT  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from sandbox import Sandbox  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(autouse=True)
def credential_cache_dir(tmp_path, monkeypatch):
    """Each test its own STS credential cache (plugins/module_utils/_credential_cache.py), shared by the module runs of that test
    as a run's module processes share it; never the user's own cache, and never an entry of another test's sandbox state."""
    path = tmp_path / "sts-cache"
    monkeypatch.setenv("CMS_PATCHING_CREDENTIAL_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def sandbox():
    with Sandbox.start() as running:
        yield running


@pytest.fixture
def aws(sandbox, monkeypatch, tmp_path):
    """A reset sandbox, with the environment the modules read pointing at it."""
    sandbox.reset()
    # The controller-local caches (ssm_patch_run's run cache) belong to this test: a reset sandbox shares nothing with
    # another test's run of the same run ID, and the user's own ~/.cache is never touched.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for name, value in sandbox.env("us-east-1").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return sandbox


@pytest.fixture
def demo(aws):
    """The demo landing zone seeded: {name: instance summary row}."""
    summary = aws.seed("demo")
    aws.state.calls.reset()
    return {row["name"]: row for row in summary["instances"]}


class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get("failed"))


@pytest.fixture
def run_module(capsys, monkeypatch):
    """run_module(module, args, check_mode=False) -> the module's result dict (exit_json or fail_json)."""
    # Once a controller module is imported in this process (e.g. by the callback's tests), ansible-core sends module
    # warnings to the controller's Display instead of the result; a real module process is never the controller.
    monkeypatch.setattr(_module_internal, "is_controller", False)

    def run(module, args, check_mode=False):
        args = dict(args)
        if check_mode:
            args["_ansible_check_mode"] = True
        capsys.readouterr()
        # Module warnings live in process-wide tables that only a real (one-shot) module process starts empty.
        warnings_module._global_warnings.clear()  # pylint: disable=protected-access
        warnings_module._global_deprecations.clear()  # pylint: disable=protected-access
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return ModuleResult(json.loads(capsys.readouterr().out))

    return run
