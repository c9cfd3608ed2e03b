"""One in-process sandbox for the whole session; every test starts from a reset one.

Durations stay at the demo defaults (seconds), so nothing changes state on its
own during a test: tests move sandbox time with ``advance`` and assert the
state transitions, without sleeping.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sandbox_testkit import LINUX_AMI  # noqa: E402  pylint: disable=wrong-import-position

from sandbox import Sandbox  # noqa: E402  pylint: disable=wrong-import-position

# No retries: a throttled or failing call must surface at once.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The session's sandbox: the one already serving this process (another conftest's), else our own."""
    shared = Sandbox.running()
    if shared is not None:
        yield shared
        return
    with Sandbox.start() as started:
        yield started


@pytest.fixture(autouse=True)
def fresh(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


@pytest.fixture
def client(sandbox: Sandbox) -> Callable[..., Any]:
    """``client("ec2", region="eu-west-1")``: a boto3 client for the sandbox as the default account."""

    def make(service: str, region: str = "us-east-1", **credentials: str) -> Any:
        credentials = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return boto3.client(service, region_name=region, endpoint_url=sandbox.endpoint, config=NO_RETRY, **credentials)

    return make


@pytest.fixture
def ec2(client: Callable[..., Any]) -> Any:
    return client("ec2")


@pytest.fixture
def ssm(client: Callable[..., Any]) -> Any:
    return client("ssm")


@pytest.fixture
def launch(ec2: Any) -> Callable[..., list[str]]:
    """``launch(count, image_id=..., tags=..., data_volume=..., ec2_client=...)``: one reservation, explicit root volume (as the seeder does)."""

    def run(count: int = 1, image_id: str = LINUX_AMI, tags: dict[str, str] | None = None, data_volume: bool = False, ec2_client: Any = None) -> list[str]:
        devices = [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}]
        if data_volume:
            devices.append({"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20, "VolumeType": "gp2"}})
        options: dict[str, Any] = {"BlockDeviceMappings": devices}
        if tags:
            options["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        reservation = (ec2_client or ec2).run_instances(ImageId=image_id, MinCount=count, MaxCount=count, **options)
        return [instance["InstanceId"] for instance in reservation["Instances"]]

    return run


@pytest.fixture
def launch_managed(sandbox: Sandbox, launch: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """Like ``launch``, and register the instances as SSM-managed (agent online)."""

    def run(count: int = 1, **options: Any) -> list[str]:
        ids = launch(count, **options)
        sandbox.state.register_managed(ids)
        return ids

    return run
