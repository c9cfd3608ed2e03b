# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Validators for the identifiers this collection accepts from users.

Every check returns an error sentence (or None) instead of raising, so the
landing-zone loader can collect all problems of a file in one pass and the
modules can name the exact option and item that is wrong.
"""

import re

try:
    import botocore.session

    HAS_BOTOCORE = True
except ImportError:
    HAS_BOTOCORE = False


ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
# arn:<partition>:iam::<account>:role/<path/name>; role names allow [\w+=,.@-] and paths "/".
ROLE_ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-[a-z]|aws-eusc):iam::(\d{12}):role/([\w+=,.@/-]{1,512})$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?|-eusc)?-[a-z]+-\d{1,2}$")
INSTANCE_ID_RE = re.compile(r"^i-([0-9a-f]{8}|[0-9a-f]{17})$")
IMAGE_ID_RE = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# SSM's own patterns for SendCommand MaxConcurrency / MaxErrors.
RATE_RE = re.compile(r"^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$")
MAX_ERRORS_RE = re.compile(r"^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$")
S3_URL_RE = re.compile(r"^(https://[^\s]+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]*)$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")

_KNOWN_REGIONS = None


def known_regions():
    """All regions botocore knows in every partition, or None when botocore is missing."""
    global _KNOWN_REGIONS  # pylint: disable=global-statement
    if _KNOWN_REGIONS is None and HAS_BOTOCORE:
        session = botocore.session.get_session()
        regions = set()
        for partition in session.get_available_partitions():
            regions.update(session.get_available_regions("ec2", partition_name=partition))
        _KNOWN_REGIONS = frozenset(regions)
    return _KNOWN_REGIONS


def account_id_error(value):
    if not isinstance(value, str) or not ACCOUNT_ID_RE.match(value):
        return "%r is not an AWS account ID (expected 12 digits, quoted in YAML so leading zeros survive)" % (value,)
    return None


def region_error(value):
    if not isinstance(value, str) or not REGION_RE.match(value):
        return "%r is not an AWS region name (expected e.g. 'eu-west-1')" % (value,)
    regions = known_regions()
    if regions is not None and value not in regions:
        return "%r is not a region botocore knows (check the spelling; a region newer than botocore needs a botocore upgrade)" % (value,)
    return None


def role_arn_error(value, account_id=None):
    match = ROLE_ARN_RE.match(value) if isinstance(value, str) else None
    if not match:
        return "%r is not an IAM role ARN (expected arn:aws:iam::<12-digit account>:role/<name>)" % (value,)
    if account_id is not None and match.group(2) != account_id:
        return "%r belongs to account %s, not to account %s it is configured for" % (value, match.group(2), account_id)
    return None


def instance_id_error(value):
    if not isinstance(value, str) or not INSTANCE_ID_RE.match(value):
        return "%r is not an EC2 instance ID (expected i- followed by 8 or 17 hex digits)" % (value,)
    return None


def run_id_error(value):
    if not isinstance(value, str) or not RUN_ID_RE.match(value):
        return "%r is not a valid run ID (1-64 characters: letters, digits and . _ : -, starting with a letter or digit)" % (value,)
    return None


def rate_error(value, allow_zero=False):
    """MaxConcurrency ('10', '10%') or, with allow_zero, MaxErrors ('0', '5%')."""
    pattern = MAX_ERRORS_RE if allow_zero else RATE_RE
    if not isinstance(value, str) or not pattern.match(value):
        low = "0" if allow_zero else "1"
        return "%r is not a count or percentage as SSM expects (e.g. '10' or '10%%', at least %s, at most 100%%)" % (value, low)
    return None


def s3_url_error(value):
    if not isinstance(value, str) or not S3_URL_RE.match(value):
        return "%r is not an S3 URL (expected https://... or s3://bucket/key)" % (value,)
    return None


def uuid_error(value):
    if not isinstance(value, str) or not UUID_RE.match(value):
        return "%r is not a UUID (expected 8-4-4-4-12 hex digits)" % (value,)
    return None


def session_name_error(value):
    if not isinstance(value, str) or not SESSION_NAME_RE.match(value):
        return "%r is not a valid STS role session name (2-64 characters: letters, digits and +=,.@_-)" % (value,)
    return None


def external_id_error(value):
    if not isinstance(value, str) or not EXTERNAL_ID_RE.match(value):
        return "external ID must be 2-1224 characters of letters, digits and +=,.@:/_- (value not shown)"
    return None
