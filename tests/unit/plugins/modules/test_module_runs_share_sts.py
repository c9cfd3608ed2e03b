"""Module runs of one play share their STS answers (plugins/module_utils/_credential_cache.py): each module call is a process of
its own, and without the cache every one of them assumed each role and asked GetCallerIdentity again."""

import os
import stat

import pytest
from conftest import DEMO_ACCOUNTS, DEMO_REGIONS

from ansible_collections.cms.patching.plugins.modules import ec2_patch_scan

ARGS = dict(accounts=DEMO_ACCOUNTS, regions=DEMO_REGIONS, filters={"tag:Environment": "demo"})


def sts_calls(aws):
    ops = [c["operation"] for c in aws.state.calls.log()]
    return ops.count("sts:AssumeRole"), ops.count("sts:GetCallerIdentity")


@pytest.mark.parametrize("setting,expected", [(None, (1, 1)), ("off", (2, 2))])
def test_two_module_runs_make_one_assume_role_and_one_caller_check(demo, aws, run_module, monkeypatch, credential_cache_dir, setting, expected):
    if setting:
        monkeypatch.setenv("CMS_PATCHING_CREDENTIAL_CACHE", setting)
    first = run_module(ec2_patch_scan, ARGS)
    second = run_module(ec2_patch_scan, ARGS)
    assert not first.failed and not second.failed, (first.get("msg"), second.get("msg"))
    assert first["summary"] == second["summary"] and second["summary"]["seen"] == 30
    assert sts_calls(aws) == expected
    # What each run reports as its own calls says the same.
    assert second["api_calls"]["calls"].get("sts:AssumeRole", 0) == expected[0] - 1
    if setting is None:
        assert stat.S_IMODE(os.stat(credential_cache_dir).st_mode) == 0o700 and len(os.listdir(credential_cache_dir)) == 2
    else:
        assert not credential_cache_dir.exists()
