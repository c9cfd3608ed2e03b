"""``python -m sandbox serve / wait / stop`` as separate processes, the way scripts use them."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import urllib.request

import boto3
import pytest

from sandbox import realism

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def _sandbox_cli(*args, **options):
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False, **options)


def _serve(env_file, *extra):
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--scenario", "none", "--env-file", str(env_file), "--time-scale", "10", *extra],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _sandbox_cli("wait", "--env-file", str(env_file), "--timeout", "30").returncode == 0
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One serve process for the module; the last test stops it."""
    env_file = tmp_path_factory.mktemp("cli") / "sandbox.env"
    yield from ((process, env_file) for process in _serve(env_file))


@pytest.fixture
def served_alone(tmp_path):
    yield from _serve(tmp_path / "sandbox.env")


def _env(env_file):
    values = {}
    for line in env_file.read_text(encoding="utf-8").splitlines():
        name, value = line.removeprefix("export ").split("=", 1)
        values[name] = value
    return values


def test_env_file_holds_the_exports_a_client_needs(served):
    env_file = served[1]
    env = _env(env_file)
    assert set(env) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED", "CMS_SANDBOX_URL"}
    sts = boto3.client(
        "sts",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    assert sts.get_caller_identity()["Account"] == "123456789012"


def test_sigterm_stops_serve_with_exit_code_zero(served_alone):
    process = served_alone
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == 0


def test_stop_shuts_the_server_down_and_serve_exits_zero(served):
    process, env_file = served
    assert _sandbox_cli("stop", "--env-file", str(env_file)).returncode == 0
    stdout = process.communicate(timeout=20)[0]
    assert process.returncode == 0
    assert "export AWS_ENDPOINT_URL=" in stdout


def test_profile_aws_turns_realism_on_and_keeps_the_time_scale(tmp_path):
    for _process in _serve(tmp_path / "sandbox.env", "--profile", "aws"):
        url = _env(tmp_path / "sandbox.env")["CMS_SANDBOX_URL"]
        with urllib.request.urlopen(f"{url}/settings", timeout=10) as response:  # nosec - loopback
            settings = json.loads(response.read())
        assert (settings["realism"], settings["throttle_buckets"], settings["time_scale"]) == ("aws", True, 10.0)
        assert settings["server_error_rate"] == realism.profile("aws")["server_error_rate"]


def test_wait_times_out_without_a_sandbox(tmp_path):
    env_file = tmp_path / "missing.env"
    result = _sandbox_cli("wait", "--env-file", str(env_file), "--timeout", "0.5", env={**os.environ})
    assert result.returncode == 1
