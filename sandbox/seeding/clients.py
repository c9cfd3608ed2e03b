"""boto3 clients against the sandbox's own endpoint, one set per account.

The caller's own account (moto's default, 123456789012) uses the plain test
credentials; every other account is reached the way the collection reaches
it, by STS AssumeRole (moto maps the temporary keys to the role's account).
Requests carry ``X-Cms-Sandbox-Internal`` so seeding is not counted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3
from botocore.config import Config

from sandbox.middleware import INTERNAL_HEADER

DEFAULT_ACCOUNT = "123456789012"
TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=300)


@dataclasses.dataclass(frozen=True)
class Account:
    account_id: str
    role_arn: str | None = None
    external_id: str | None = None


def _mark_internal(request: Any, **_: Any) -> None:
    request.headers[INTERNAL_HEADER] = "seed"


def _client(service: str, region: str, endpoint: str, credentials: dict[str, str]) -> Any:
    client = boto3.client(service, region_name=region, endpoint_url=endpoint, config=_CONFIG, **credentials)
    client.meta.events.register("before-sign", _mark_internal)
    return client


class AccountClients:
    """EC2 and SSM clients for one account, per region, created on first use."""

    def __init__(self, account: Account, endpoint: str) -> None:
        self._endpoint = endpoint
        self._clients: dict[tuple[str, str], Any] = {}
        if account.role_arn is None:
            if account.account_id != DEFAULT_ACCOUNT:
                raise ValueError(f"account {account.account_id} needs a role_arn (only {DEFAULT_ACCOUNT} is reached without assuming a role)")
            self._credentials = dict(TEST_CREDENTIALS)
        else:
            sts = _client("sts", "us-east-1", endpoint, TEST_CREDENTIALS)
            options = {"ExternalId": account.external_id} if account.external_id else {}
            assumed = sts.assume_role(RoleArn=account.role_arn, RoleSessionName="cms-sandbox-seed", **options)["Credentials"]
            self._credentials = {
                "aws_access_key_id": assumed["AccessKeyId"],
                "aws_secret_access_key": assumed["SecretAccessKey"],
                "aws_session_token": assumed["SessionToken"],
            }

    def ec2(self, region: str) -> Any:
        return self._service("ec2", region)

    def ssm(self, region: str) -> Any:
        return self._service("ssm", region)

    def _service(self, service: str, region: str) -> Any:
        if (service, region) not in self._clients:
            self._clients[(service, region)] = _client(service, region, self._endpoint, self._credentials)
        return self._clients[(service, region)]
