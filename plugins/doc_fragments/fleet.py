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
      - Every other account is reached by C(sts:AssumeRole); credentials are assumed once per module run and never returned.
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
      name:
        description: A label for the account, used in messages only.
        type: str
  role_session_name:
    description: The role session name used when assuming roles (visible in CloudTrail).
    type: str
    default: cms-patching
  retries:
    description:
      - How throttled calls (and transient errors of read-only calls) are retried, with full-jitter exponential backoff.
      - Mutating calls (C(CreateImage), C(SendCommand), ...) are retried on throttling only, so a retry can never create a second AMI or
        send a command twice.
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
