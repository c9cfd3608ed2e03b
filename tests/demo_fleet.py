"""The demo landing zone as tests drive the fleet logic: its accounts and regions, the discovery rules, and the module
options (the modules' defaults) that BackupRun, PatchRun and RollbackRun take.

One place for every test directory: pytest puts tests/ on sys.path when it loads tests/conftest.py, so unit tests,
integration tests and fleet_helpers import this module by name. Tests derive their variants with ``dict(OPTIONS, ...)``.
"""

OWN_ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
OTHER_ROLE = "arn:aws:iam::%s:role/CmsPatchingRole" % OTHER_ACCOUNT
DEMO_ACCOUNTS = [{"account_id": OWN_ACCOUNT}, {"account_id": OTHER_ACCOUNT, "role_arn": OTHER_ROLE, "external_id": "cms-demo"}]
DEMO_REGIONS = ["us-east-1", "eu-west-1"]
DEMO_RULES = {"exclude_tags": {"Patch": "never"}, "instance_states": ["running"], "require_ssm_online": True}

BACKUP_OPTIONS = dict(
    no_reboot=True,
    name_template="cms-patching-{instance_id}-{run_id}",
    description_template="Pre-patch backup of {instance_id} ({name}) for run {run_id} in landing zone {lz}",
    tags={"Team": "platform"},
    snapshot_tags_on_create=True,
    wait_timeout=300,
    poll_interval=2,
    max_concurrent_creates=10,
    max_workers=4,
)

PATCH_OPTIONS = dict(
    wave="all",
    operation="Install",
    reboot_option="RebootIfNeeded",
    baseline_override=None,
    install_override_list=None,
    snapshot_id=None,
    max_concurrency="50%",
    max_errors="100%",
    delivery_timeout=600,
    execution_timeout=7200,
    wait_timeout=10800,
    poll_interval=2,
    output_s3_bucket=None,
    output_s3_prefix=None,
    cloudwatch_output=False,
    require_backup=True,
    pre_checks={},
    post_checks={},
    max_workers=4,
)

ROLLBACK_OPTIONS = dict(max_concurrent=5, wait_timeout=600, poll_interval=1, max_workers=4, post_checks={})
