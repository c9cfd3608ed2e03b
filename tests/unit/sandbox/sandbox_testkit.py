"""Constants shared by the sandbox tests (a uniquely named module: every test directory has a conftest)."""

OWN_ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
LINUX_AMI = "ami-04681a1dbd79675a5"
WINDOWS_AMI = "ami-b7e93bce"
OTHER_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/CmsPatchingRole"
