#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: ec2_patch_scan
short_description: Find the EC2 instances of a landing zone and say which are patch targets, and why not for the others
version_added: 0.1.0
description:
  - Scans every account and region of a landing zone concurrently, in one module run for the whole fleet.
  - Per account and region it makes one paginated C(ec2:DescribeInstances) call (1,000 instances a page) and one paginated
    C(ssm:DescribeInstanceProperties) call (1,000 managed instances a page), and joins them in memory.
  - Where C(ssm:DescribeInstanceProperties) is refused (C(AccessDeniedException), e.g. a policy written for the older call), that
    account/region is read with C(ssm:DescribeInstanceInformation) (50 a page) instead, and the module result carries one warning
    naming those accounts/regions and the permission to grant; the instances and their SSM status are the same.
  - Every instance seen is returned with RV(instances[].target) and, when it is not a target, a RV(instances[].skip_code) and a
    readable RV(instances[].skip_reason).
  - Rules are applied in this order and the first that matches decides the reason; O(exclude_tags), O(include_tags), O(platforms),
    O(instance_states), SSM status unknown, SSM registration, SSM ping status (when O(require_ssm_online=true)).
  - An account/region that cannot be scanned (the role cannot be assumed, C(DescribeInstances) or C(DescribeInstanceProperties) fails
    after retries) does not stop the others; it is returned in RV(errors) with the failed operation and what to check. When only
    the SSM read fails, that location's instances are still returned, with RV(instances[].ssm_status=Unknown), and
    are not targets whatever O(require_ssm_online) says - an instance is never patched without knowing its SSM status.
  - Read-only; never changes anything in AWS.
author:
  - CMS Platform Engineering (@cms-platform)
options:
  accounts:
    description:
      - The AWS accounts the instances live in (see the suboptions below).
      - May be empty when O(organization) is given; an account listed here and also found in the OUs keeps these settings.
      - Assumed-role credentials and the caller's account are shared with the run's other module calls through a file cache
        (C(${XDG_CACHE_HOME:-~/.cache}/cms-patching/sts), mode 0700/0600); the environment variable C(CMS_PATCHING_CREDENTIAL_CACHE)
        names another directory, or C(off) turns it off. See M(cms.patching.ami_backup_verified) for how it is keyed and reused.
    type: list
    elements: dict
    required: false
    default: []
  organization:
    description:
      - Take (more) accounts from AWS Organizations - every account of these OUs, with the role O(organization.role_name) to assume in
        each - before scanning.
      - The OU tree is read with C(organizations:ListAccountsForParent), C(organizations:ListChildren) (when O(organization.recursive))
        and, only with a tag filter, C(organizations:ListTagsForResource), every page followed, through the same retry policy.
      - An account that is not C(ACTIVE), or that an account tag filter or O(organization.exclude_accounts) leaves out, is not scanned
        and comes back in RV(skipped_accounts) with the reason. An account whose role cannot be assumed is a location error in
        RV(errors) for each region, like any account.
      - An OU that does not exist or cannot be read fails the module, naming the call, the OU and who read it.
    type: dict
    suboptions:
      ous:
        description: OU IDs (C(ou-<root>-<ou>)) or a root ID (C(r-<root>)).
        type: list
        elements: str
        required: true
      recursive:
        description: Also the accounts of every OU below them; V(false) takes only the accounts directly in O(organization.ous).
        type: bool
        default: true
      role_name:
        description: The IAM role name to assume in every member account (C(arn:<partition>:iam::<account>:role/<role_name>)).
        type: str
        required: true
      external_id:
        description: The external ID the members' role trust policy requires, if any.
        type: str
      duration_seconds:
        description: The lifetime of each member's role session (900 to 43200), as O(accounts[].duration_seconds).
        type: int
      include_tags:
        description: Account tags a member must carry; every key must match one of its values (C(*) any value).
        type: dict
        default: {}
      exclude_tags:
        description: Account tags that leave an account out; any key matching one of its values.
        type: dict
        default: {}
      exclude_accounts:
        description: Account IDs to leave out (e.g. the management account, which is found under the root).
        type: list
        elements: str
        default: []
      management_role_arn:
        description:
          - A role in the management account or a delegated administrator account to read Organizations through.
          - Without it, the caller's own credentials read Organizations.
        type: str
      management_external_id:
        description: The external ID of O(organization.management_role_arn)'s trust policy, if any.
        type: str
  accounts_only:
    description:
      - Only resolve the accounts (from O(organization)) and return them in RV(accounts), RV(organization_accounts) and
        RV(skipped_accounts); scan nothing (RV(instances) is empty).
    type: bool
    default: false
  regions:
    description: The regions to scan in every account.
    type: list
    elements: str
    required: true
  filters:
    description:
      - EC2 C(DescribeInstances) filters that define the landing zone's scope, as a dict of filter name to value or list of values.
      - Instances outside the filters are not seen at all (not reported).
    type: dict
    default: {}
  include_tags:
    description:
      - Tags an instance must carry to be a target; every key must match one of its values. C(*) matches any value.
    type: dict
    default: {}
  exclude_tags:
    description:
      - Tags that exclude an instance; any key matching one of its values excludes it. C(*) matches any value.
    type: dict
    default: {}
  instance_states:
    description: The instance states that are patch targets.
    type: list
    elements: str
    default: [running]
  platforms:
    description: The platforms that are patch targets.
    type: list
    elements: str
    choices: [linux, windows]
    default: [linux, windows]
  require_ssm_online:
    description: Whether an instance must have an SSM agent with ping status C(Online) to be a target.
    type: bool
    default: true
  instance_ids:
    description:
      - Restrict the scan to these candidate instances, e.g. the hosts of an inventory narrowed by C(--limit).
      - A candidate found in none of the accounts and regions is reported with RV(instances[].skip_code=not_found).
      - Up to 200 candidates are asked for by ID (one C(DescribeInstances) per account and region). With more - an AWX slice of a
        large landing zone - each account and region is listed with O(filters) (1,000 instances a page) and the candidates are
        picked from the listing, with the same result and fewer calls.
      - When omitted, every instance matching O(filters) is scanned.
    type: list
    elements: str
  max_workers:
    description: How many account/region pairs are scanned at the same time.
    type: int
    default: 8
  allow_partial:
    description:
      - What to do when some account/region pairs could not be scanned (RV(errors) not empty).
      - V(false) fails the module (the instances of the other pairs are returned all the same).
      - V(true) returns normally with RV(errors) filled, so a playbook can go on with the locations that were scanned and report the others.
    type: bool
    default: false
extends_documentation_fragment:
  - cms.patching.fleet
  - cms.patching.attributes
  - cms.patching.attributes.ACTIONGROUP_AWS
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - IAM permissions needed in every account; C(ec2:DescribeInstances), C(ssm:DescribeInstanceProperties) (or
    C(ssm:DescribeInstanceInformation), 50 instances a call instead of 1,000), plus C(sts:AssumeRole) on the roles from the caller, or
    C(sts:GetCallerIdentity) for an account reached without a role.
  - With O(organization), whoever reads Organizations (the caller, or O(organization.management_role_arn)) needs
    C(organizations:ListAccountsForParent), C(organizations:ListChildren) and C(organizations:ListTagsForResource) (the collection's
    C(iam/organizations-read.json)).
"""

EXAMPLES = r"""
- name: Discover the targets of a landing zone
  cms.patching.ec2_patch_scan:
    accounts:
      - account_id: "111111111111"
      - account_id: "222222222222"
        role_arn: arn:aws:iam::222222222222:role/CmsPatching
        external_id: my-external-id
    regions: [eu-west-1, eu-central-1]
    filters:
      "tag:Environment": prod
    exclude_tags:
      Patch: never
  register: scan

- name: Discover the targets of every account of two OUs (and the OUs below them)
  cms.patching.ec2_patch_scan:
    organization:
      ous: [ou-ab12-cdef3456, ou-ab12-0987zyxw]
      role_name: CmsPatchingRole
      external_id: my-external-id
      exclude_tags:
        Patching: manual
    regions: [eu-west-1]
    allow_partial: true
  register: scan

- name: Show why each instance is skipped
  ansible.builtin.debug:
    msg: "{{ scan.instances | rejectattr('target') | map(attribute='skip_reason') | list }}"

- name: Scan only the hosts of the current inventory, honouring --limit
  cms.patching.ec2_patch_scan:
    accounts: "{{ lz.config.accounts }}"
    regions: "{{ lz.config.regions }}"
    instance_ids: "{{ ansible_play_hosts | map('extract', hostvars, 'instance_id') | list }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
instances:
  description: Every instance seen, sorted by account, region, name and ID.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance ID.
      type: str
      sample: i-0abc123def4567890
    account_id:
      description: The account the instance lives in (empty for RV(instances[].skip_code=not_found)).
      type: str
      sample: "111111111111"
    region:
      description: The region the instance lives in.
      type: str
      sample: eu-west-1
    name:
      description: The value of the C(Name) tag, or empty.
      type: str
      sample: web-1
    platform:
      description: C(linux) or C(windows).
      type: str
      sample: linux
    platform_details:
      description: EC2's C(PlatformDetails), e.g. C(Linux/UNIX).
      type: str
    instance_type:
      description: The instance type.
      type: str
    state:
      description: The EC2 instance state.
      type: str
      sample: running
    private_ip:
      description: The private IP address.
      type: str
    patch_group:
      description: The value of the C(Patch Group) (or C(PatchGroup)) tag, or empty.
      type: str
    tags:
      description: All tags of the instance.
      type: dict
    volumes:
      description: The attached EBS volumes, which a backup must cover.
      type: list
      elements: dict
      sample: [{"device_name": "/dev/xvda", "volume_id": "vol-0123456789abcdef0"}]
    ssm_status:
      description:
        - The SSM agent's ping status (C(Online), C(ConnectionLost), C(Inactive)) or C(NotManaged).
        - C(Unknown) when the SSM read (C(DescribeInstanceProperties)) failed for the instance's account/region (see RV(errors)).
      type: str
      sample: Online
    ssm_platform_name:
      description: The platform name SSM reports.
      type: str
    ssm_agent_version:
      description: The SSM agent version.
      type: str
    target:
      description: Whether the instance is a patch target.
      type: bool
    skip_code:
      description:
        - Why it is not a target, as a stable code; null for targets.
        - One of C(excluded_by_tag), C(not_included), C(platform), C(state), C(ssm_unknown), C(not_ssm_managed), C(ssm_offline), C(not_found).
      type: str
      sample: ssm_offline
    skip_reason:
      description: Why it is not a target, in words; empty for targets.
      type: str
      sample: SSM agent is ConnectionLost, not Online
summary:
  description: Counts of instances seen, targets, and skipped instances per RV(instances[].skip_code).
  returned: always
  type: dict
  sample: {"seen": 30, "targets": 18, "skipped": {"state": 4, "not_ssm_managed": 5, "excluded_by_tag": 1, "ssm_offline": 2}}
errors:
  description:
    - Account/region pairs that could not be scanned, or not fully. The module fails when this is not empty, unless O(allow_partial=true).
  returned: always
  type: list
  elements: dict
  contains:
    account_id:
      description: The account.
      type: str
    region:
      description: The region.
      type: str
    operation:
      description:
        - The step that failed; C(ec2:DescribeInstances) (also when the account's credentials could not be obtained, before it),
          C(ssm:DescribeInstanceProperties) (the SSM read, also when its fallback C(ssm:DescribeInstanceInformation) failed; the
          instances are returned with RV(instances[].ssm_status=Unknown)), or empty.
      type: str
    error:
      description: The failure, the AWS error and what to check.
      type: str
    instances:
      description: How many of the location's instances are returned all the same (only after a failure of the SSM read).
      type: int
  sample:
    - account_id: "222222222222"
      region: eu-west-1
      operation: ec2:DescribeInstances
      error: >-
        ec2:DescribeInstances failed: UnauthorizedOperation: You are not authorized to perform this operation.;
        check that the role used in account 222222222222 allows ec2:DescribeInstances
      instances: 0
cancelled:
  description:
    - V(true) when the run was cancelled and the module stopped between two AWS calls, making no further call. A run is cancelled when a
      SIGINT, SIGTERM or SIGHUP reaches the module or when its controller (C(ansible-playbook)) exits, which is what a Ctrl-C or an
      AWX / ansible-runner cancel amounts to (ansible-core runs modules in their own session, so the controller's signal never reaches them).
    - The module then fails; C(msg) starts with C(cancelled) and names the reason (the signal received, or the controller process that exited),
      and the result has RV(api_calls). The other keys are missing when the cancel stopped the work mid-way; a resumed run with the same run ID finds
      and adopts what this one had made.
  returned: when the run was cancelled
  type: bool
  sample: true
accounts:
  description:
    - Every account of the landing zone as the fleet modules take it (O(accounts) first, then the members found in O(organization)),
      with the role to assume in each; pass it as the O(accounts) of the later phases.
  returned: always
  type: list
  elements: dict
  sample: [{"account_id": "333333333333", "name": "prod-a", "role_arn": "arn:aws:iam::333333333333:role/CmsPatchingRole"}]
organization_accounts:
  description: The member accounts found in the OUs of O(organization), each with the OU or root it was found in; empty without it.
  returned: always
  type: list
  elements: dict
  contains:
    account_id:
      description: The account ID.
      type: str
    name:
      description: The account's name in Organizations.
      type: str
    parent_id:
      description: The OU or root the account is in.
      type: str
    role_arn:
      description: The role that is assumed in it.
      type: str
skipped_accounts:
  description: Accounts of the OUs that are not scanned, with the reason (not ACTIVE, excluded by an account tag or by exclude_accounts).
  returned: always
  type: list
  elements: dict
  contains:
    account_id:
      description: The account ID.
      type: str
    name:
      description: The account's name in Organizations.
      type: str
    parent_id:
      description: The OU or root the account is in.
      type: str
    state:
      description: The account's state in Organizations (C(ACTIVE), C(SUSPENDED), C(PENDING_CLOSURE), ...).
      type: str
    reason:
      description: Why it is not scanned.
      type: str
  sample: [{"account_id": "444444444444", "name": "closed", "parent_id": "ou-ab12-cdef3456", "state": "SUSPENDED",
            "reason": "account is SUSPENDED in AWS Organizations, not ACTIVE"}]
empty_accounts:
  description:
    - Member accounts found in O(organization) that were scanned in every region without error and hold no instance of the landing
      zone (none matched O(filters)); the report gives each a row, so an account that joined the OU is never silently left out.
    - Empty when O(instance_ids) narrows the scan.
  returned: always
  type: list
  elements: dict
  contains:
    account_id:
      description: The account ID.
      type: str
    name:
      description: The account's name in Organizations.
      type: str
    parent_id:
      description: The OU or root the account is in.
      type: str
accounts_only:
  description: True when O(accounts_only) was set (nothing was scanned).
  returned: when O(accounts_only=true)
  type: bool
api_calls:
  description: The AWS API calls this run made, per operation, with retries.
  returned: always
  type: dict
  sample: {"calls": {"ec2:DescribeInstances": 4, "ssm:DescribeInstanceProperties": 4, "sts:AssumeRole": 1}, "retries": {}, "total": 9}
"""

from ansible_collections.cms.patching.plugins.module_utils import _module, _organizations
from ansible_collections.cms.patching.plugins.module_utils._scan import scan, summarize
from ansible_collections.cms.patching.plugins.module_utils._validate import instance_id_error

RULE_OPTIONS = ("include_tags", "exclude_tags", "instance_states", "platforms", "require_ssm_online")


def argument_spec():
    return dict(
        regions=dict(type="list", elements="str", required=True),
        filters=dict(type="dict", default={}),
        include_tags=dict(type="dict", default={}),
        exclude_tags=dict(type="dict", default={}),
        instance_states=dict(type="list", elements="str", default=["running"]),
        platforms=dict(type="list", elements="str", choices=["linux", "windows"], default=["linux", "windows"]),
        require_ssm_online=dict(type="bool", default=True),
        instance_ids=dict(type="list", elements="str"),
        max_workers=dict(type="int", default=8),
        allow_partial=dict(type="bool", default=False),
        # With an organization source, accounts may be empty: the OUs give them.
        accounts=dict(type="list", elements="dict", default=[], options=_module.ACCOUNT_OPTIONS),
        organization=dict(
            type="dict",
            options=dict(
                ous=dict(type="list", elements="str", required=True),
                recursive=dict(type="bool", default=True),
                role_name=dict(type="str", required=True),
                external_id=dict(type="str", no_log=False),
                duration_seconds=dict(type="int"),
                include_tags=dict(type="dict", default={}),
                exclude_tags=dict(type="dict", default={}),
                exclude_accounts=dict(type="list", elements="str", default=[]),
                management_role_arn=dict(type="str"),
                management_external_id=dict(type="str", no_log=False),
            ),
        ),
        accounts_only=dict(type="bool", default=False),
    )


def input_problems(params):
    problems = _module.region_problems(params["regions"])
    if not params["regions"]:
        problems.append("regions: give at least one region")
    if not params["accounts"] and not params["organization"]:
        problems.append("accounts: give at least one account, or an organization source")
    if params["organization"]:
        problems += _organizations.source_problems(params["organization"], [r for r in params["regions"] if not _module.region_problems([r])])
        if params["organization"].get("duration_seconds") is not None:
            error = _module.duration_error(params["organization"]["duration_seconds"])
            if error:
                problems.append("organization.duration_seconds: %s" % error)
    for i, instance_id in enumerate(params["instance_ids"] or []):
        error = instance_id_error(instance_id)
        if error:
            problems.append("instance_ids[%d]: %s" % (i, error))
    return problems


def work(module, fleet):
    params = module.params
    accounts, skipped, members = params["accounts"], [], []
    if params["organization"]:
        # Read through the fleet session: retries, call counts, partition-aware STS for the management role.
        accounts, skipped, members = _organizations.resolve_accounts(fleet, params["accounts"], params["organization"], params["regions"])
    result = dict(
        changed=False,
        accounts=[{k: a[k] for k in _module.ACCOUNT_OPTIONS if a.get(k) is not None} for a in accounts],
        skipped_accounts=skipped,
        organization_accounts=members,
        empty_accounts=[],
    )
    if params["accounts_only"]:
        result.update(instances=[], summary=summarize([]), errors=[], accounts_only=True)
        return result
    records, errors = scan(
        fleet,
        [a["account_id"] for a in accounts],
        params["regions"],
        params["filters"],
        {k: params[k] for k in RULE_OPTIONS},
        instance_ids=params["instance_ids"],
        max_workers=max(1, params["max_workers"]),
    )
    result.update(instances=records, summary=summarize(records), errors=errors)
    if params["instance_ids"] is None:
        # A member of the OUs with nothing in the landing zone still gets a report row, so a new account is seen, not silent.
        result["empty_accounts"] = _organizations.empty_accounts(members, records, errors)
    if errors:
        result["failed"] = not params["allow_partial"]
        result["msg"] = "Could not scan %d of %d account/region pairs: %s" % (
            len(errors),
            len(accounts) * len(params["regions"]),
            "; ".join("%s/%s: %s" % (e["account_id"], e["region"], e["error"]) for e in errors),
        )
    return result


def main():
    _module.run_module(argument_spec(), input_problems, work)


if __name__ == "__main__":
    main()
