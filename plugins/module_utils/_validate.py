# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Validators for the identifiers this collection accepts from users.

Every check returns an error sentence (or None) instead of raising, so the
landing-zone loader can collect all problems of a file in one pass and the
modules can name the exact option and item that is wrong.
"""

import difflib
import re

try:
    import botocore.exceptions
    import botocore.loaders

    HAS_BOTOCORE = True
except ImportError:
    HAS_BOTOCORE = False


ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
# arn:<partition>:iam::<account>:role/<path/name>; role names allow [\w+=,.@-] and paths "/".
# The partition must be one botocore knows (checked in role_arn_error), so a new partition needs no change here.
ROLE_ARN_RE = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/([\w+=,.@/-]{1,512})$")
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

_PARTITIONS = None
_KNOWN_REGIONS = None


class Partition:
    """One AWS partition as botocore describes it: its name, its named regions and the pattern of its region names."""

    def __init__(self, name, regions, pattern):
        self.name = name
        self.regions = frozenset(regions)
        self.pattern = re.compile(pattern)

    def matches(self, region):
        return region in self.regions or bool(self.pattern.match(region))


def partitions():
    """Every partition in botocore's own data (endpoints.json and partitions.json), or [] without botocore.

    Both files are read because they are updated separately: a region may appear in one before the other.
    The "<partition>-global" pseudo-regions of partitions.json are not regions one can run instances in.
    """
    global _PARTITIONS  # pylint: disable=global-statement
    if _PARTITIONS is None:
        if not HAS_BOTOCORE:
            return []
        loader = botocore.loaders.create_loader()
        found = {}
        for entry in loader.load_data("endpoints").get("partitions", []):
            found[entry["partition"]] = [set(entry.get("regions", {})), entry["regionRegex"]]
        try:
            extra = loader.load_data("partitions").get("partitions", [])
        except botocore.exceptions.DataNotFoundError:  # older botocore: endpoints.json alone
            extra = []
        for entry in extra:
            regions = {r for r in entry.get("regions", {}) if not r.endswith("-global")}
            item = found.setdefault(entry["id"], [set(), entry["regionRegex"]])
            item[0].update(regions)
        _PARTITIONS = [Partition(name, regions, pattern) for name, (regions, pattern) in found.items()]
    return _PARTITIONS


def known_regions():
    """All regions botocore names in every partition, or None when botocore is missing."""
    global _KNOWN_REGIONS  # pylint: disable=global-statement
    if _KNOWN_REGIONS is None and HAS_BOTOCORE:
        _KNOWN_REGIONS = frozenset(r for p in partitions() for r in p.regions)
    return _KNOWN_REGIONS


def partition_of(region):
    """The partition name of a region (a named region first, then the partitions' region patterns), or None."""
    if not isinstance(region, str):
        return None
    for partition in partitions():
        if region in partition.regions:
            return partition.name
    for partition in partitions():
        if partition.pattern.match(region):
            return partition.name
    return None


def arn_partition(arn):
    """The partition field of an ARN ('aws' in arn:aws:iam::...), or None."""
    parts = arn.split(":") if isinstance(arn, str) else []
    return parts[1] if len(parts) > 2 and parts[0] == "arn" else None


def account_id_error(value):
    if not isinstance(value, str) or not ACCOUNT_ID_RE.match(value):
        return "%r is not an AWS account ID (expected 12 digits, quoted in YAML so leading zeros survive)" % (value,)
    return None


def region_error(value):
    """None for a region botocore names, or whose name fits a partition's region pattern (a region newer than botocore)."""
    if not isinstance(value, str) or not value:
        return "%r is not an AWS region name (expected e.g. 'eu-west-1')" % (value,)
    if not HAS_BOTOCORE or partition_of(value) is not None:
        return None
    close = difflib.get_close_matches(value, sorted(known_regions()), n=1)
    hint = "; did you mean %r?" % close[0] if close else ""
    return "%r is not an AWS region name botocore knows, nor one that fits a partition's region pattern (expected e.g. 'eu-west-1'%s)" % (value, hint)


def region_note(value):
    """A warning for a region accepted only by its partition's pattern: it may be a typo, or newer than botocore."""
    if HAS_BOTOCORE and isinstance(value, str) and value not in known_regions() and partition_of(value) is not None:
        close = difflib.get_close_matches(value, sorted(known_regions()), n=1)
        return "region %r is not one botocore names; it is accepted because it fits the %s partition's pattern%s" % (
            value,
            partition_of(value),
            " (did you mean %r?)" % close[0] if close else " (a region newer than this botocore)",
        )
    return None


def partition_error(role_arn, regions, account_id):
    """An error when the role ARN's partition is not the partition of the account's regions (credentials never cross partitions)."""
    arn_part = arn_partition(role_arn)
    by_partition = {}
    for region in regions:
        by_partition.setdefault(partition_of(region), []).append(region)
    wrong = {p: r for p, r in by_partition.items() if p is not None and p != arn_part}
    if arn_part is None or not wrong:
        return None
    return "account %s: role %s is in partition %s but region(s) %s are in partition %s; credentials of one partition never work in another" % (
        account_id,
        role_arn,
        arn_part,
        ", ".join(r for rs in wrong.values() for r in rs),
        ", ".join(sorted(wrong)),
    )


def role_arn_error(value, account_id=None):
    match = ROLE_ARN_RE.match(value) if isinstance(value, str) else None
    if not match:
        return "%r is not an IAM role ARN (expected arn:aws:iam::<12-digit account>:role/<name>)" % (value,)
    known = [p.name for p in partitions()]
    if known and match.group(1) not in known:
        return "%r names partition %r, which botocore does not know (known: %s)" % (value, match.group(1), ", ".join(sorted(known)))
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
