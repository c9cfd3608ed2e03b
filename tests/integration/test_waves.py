"""site.yml on the sandbox: waves are checked against the targets before anything is backed up, and landing-zone names are plain names."""

import re

import yaml
from conftest import REPO, calls, write_calls


def demo_config():
    return yaml.safe_load((REPO / "inventories/demo/.landing_zone.yml").read_text())


def write_lz(root, name, config):
    target = root / name
    target.mkdir(parents=True, exist_ok=True)
    (target / ".landing_zone.yml").write_text(yaml.safe_dump(config))


def test_a_wave_naming_no_target_stops_the_run_before_any_backup(aws, playbook, tmp_path):
    config = demo_config()
    # A typo in the canary: before, web-1 matched nothing, the canary was dropped and the whole fleet went in one wave.
    config["cms_patching_landing_zone"]["patching"]["waves"] = [
        {"name": "canary", "names": ["web-1", "pay-eu-web-01"]},
        {"name": "rest"},
        {"name": "late", "percent": 10},
    ]
    write_lz(tmp_path / "lzs", "typo", config)
    run = playbook(lz="typo", env={"CMS_PATCHING_LZ_PATH": str(tmp_path / "lzs")})
    assert run.rc != 0
    assert "Traceback" not in run.output
    # The config role warns about the wave that can get nothing; it is not an error.
    assert re.search(r"\[WARNING\]: \S+landing_zone.yml: cms_patching_landing_zone.patching.waves\[2\] \(wave 'late'\): gets no instance", run.output)
    assert "The patch waves of landing zone typo do not match the targets, so nothing was backed up or patched" in run.output
    assert "cms_patching_landing_zone.patching.waves[0] (wave 'canary').names: no target has the name web-1 (did you mean web-01" in run.output
    # Discovery ran (read-only); no AMI was created, nothing was sent.
    assert calls(aws).get("ec2:DescribeInstances", 0) > 0
    assert write_calls(aws) == {}


def test_a_limit_that_leaves_out_a_named_canary_stops_the_run_and_says_why(aws, playbook):
    # The demo's canary names web-01 (account 123456789012); the limit keeps only the other account's hosts.
    run = playbook("-i", "inventories/demo", "--limit", "account_210987654321", "--check")
    assert run.rc != 0
    assert "only the inventory hosts of this run, narrowed by -i/--limit, are candidates" in run.output
    assert "(wave 'canary').names: no target has the name web-01" in run.output
    assert "ec2:CreateImage" not in calls(aws) and write_calls(aws) == {}


def test_check_mode_shows_the_plan_of_every_wave(aws, playbook):
    run = playbook("--check", "--tags", "patching")
    assert run.rc == 0, run.output[-3000:]
    lines = dict(re.findall(r'"wave (\w+): (\d+ instances?: [^"]*)"', run.output))
    assert set(lines) == {"canary", "rest"}
    assert lines["canary"].startswith("2 instances: ") and set(lines["canary"].split(": ", 1)[1].split(", ")) == {"web-01", "pay-eu-web-01"}
    rest = lines["rest"].split(": ", 1)[1].split(", ")
    assert lines["rest"].startswith("19 instances: ") and len(rest) == 19 and "web-03" in rest and "web-01" not in rest
    assert write_calls(aws) == {}


def test_a_landing_zone_name_with_dots_is_refused_before_any_file_is_read(aws, playbook, tmp_path):
    # A valid landing zone one directory above the search path: -e lz=.. used to load it.
    write_lz(tmp_path, "", demo_config())
    (tmp_path / "zones").mkdir()
    run = playbook("--tags", "config", lz="..", env={"CMS_PATCHING_LZ_PATH": str(tmp_path / "zones")})
    assert run.rc != 0
    assert "landing zone name '..' is not valid: a landing zone is a plain directory name under the search paths" in run.output
    assert "Traceback" not in run.output
    assert aws.state.calls.snapshot()["total"] == 0
