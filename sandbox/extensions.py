"""Install every sandbox extension onto moto's classes (idempotent)."""

from __future__ import annotations

from sandbox import iam_enforcement, speedups, sts
from sandbox.ec2 import api as ec2_api, catalogue
from sandbox.ec2 import rollback as ec2_rollback
from sandbox.ssm import api as ssm_api


def install(full_ami_catalogue: bool = False) -> None:
    catalogue.install(full_ami_catalogue)
    ec2_api.install()
    # After ec2_api: it wraps that module's DescribeInstanceStatus.
    ec2_rollback.install()
    ssm_api.install()
    sts.install()
    iam_enforcement.install()
    # Last: the method-name cache must see every method installed above.
    speedups.install()
