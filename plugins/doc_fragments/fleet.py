# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # Options shared by the fleet modules: the accounts of a landing zone and the retry policy.
    DOCUMENTATION = r"""
options:
  accounts:
    description:
      - The AWS accounts the instances live in.
      - An account without O(accounts[].role_arn) is reached with the caller's own credentials, which must belong to that account
        (checked once with C(sts:GetCallerIdentity)).
      - Every other account is reached by C(sts:AssumeRole). The assumed credentials renew themselves before they expire (botocore
        refreshable credentials), so a module may run for any length of time; they are never returned or logged.
      - STS is called at the Regional endpoint of the partition of the account's regions (the module's region when it is in that
        partition, else the region the account is first used in), never at the global endpoint; a role ARN of another partition than
        the regions' is an error.
      - A call that AWS rejects because the credentials expired (C(ExpiredToken), C(RequestExpired)) renews them and is repeated once.
        Expired credentials of the caller itself cannot be renewed here, so the module fails asking to renew them.
      - Every module call is a process of its own, so the module calls of a run share assumed-role credentials and the caller's
        account (from C(sts:GetCallerIdentity)) through a file cache, as the AWS CLI does in C(~/.aws/cli/cache). An entry is keyed
        by a hash of the role ARN, external ID, session name, duration, the caller's access key ID and the STS endpoint, so other
        credentials never share it; the caller's secret is never stored. Credentials are reused while at least botocore's refresh
        window plus 5 minutes of their lifetime are left (on AWS's clock); the caller's account for an hour. Cached credentials that
        AWS refuses (expired, revoked, unknown key) are dropped, the role is assumed again once and the call repeated.
      - The cache is in C(${XDG_CACHE_HOME:-~/.cache}/cms-patching/sts) (directory mode 0700, files 0600, written atomically);
        the environment variable C(CMS_PATCHING_CREDENTIAL_CACHE) names another directory, or C(off) turns the cache off. Under
        AWX each job runs in its own execution-environment container, so the cache lives as long as the job.
    type: list
    elements: dict
    required: true
    suboptions:
      account_id:
        description: The 12-digit account ID, as a string.
        type: str
        required: true
      role_arn:
        description: The IAM role to assume in this account. Must belong to O(accounts[].account_id).
        type: str
      external_id:
        description: The external ID the role's trust policy requires, if any.
        type: str
      session_name:
        description: The role session name for this account; defaults to O(role_session_name).
        type: str
      duration_seconds:
        description:
          - The lifetime of each assumed-role session, in seconds, from 900 to 43200. Sessions are renewed before they end, so this is
            not a limit on the run's length; a shorter one renews more often.
          - The role's C(MaxSessionDuration) must allow it, and when the caller's credentials are themselves a role session (role
            chaining, e.g. an instance profile or an AWX credential that assumes a role) AWS allows at most 3600.
          - Only for an account with O(accounts[].role_arn). Defaults to 3600.
        type: int
      name:
        description: A label for the account, used in messages only.
        type: str
  role_session_name:
    description: The role session name used when assuming roles (visible in CloudTrail).
    type: str
    default: cms-patching
  retries:
    description:
      - How throttled calls, and server errors (5xx), failed or broken connections and read timeouts of read-only calls, are retried,
        with full-jitter exponential backoff.
      - Mutating calls (C(CreateImage), C(SendCommand), ...) are never blindly retried after such a failure, which they may have
        survived; they are retried on throttling only, so a retry can never create a second AMI or send a command twice.
      - Whatever the setting, the module stops before its next AWS call when the run is cancelled (a SIGINT, SIGTERM or SIGHUP to the
        module, or the C(ansible-playbook) that started it has exited, as on Ctrl-C or an AWX cancel) and fails with C(cancelled=true).
    type: dict
    default: {}
    suboptions:
      max_attempts:
        description: Attempts per call, the first included.
        type: int
        default: 10
      base_delay:
        description: The first backoff ceiling in seconds; each retry doubles it.
        type: float
        default: 1.0
      max_delay:
        description: The largest backoff ceiling in seconds.
        type: float
        default: 30.0
"""
