# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Phase 1, discovery: every instance of a landing zone, joined with SSM, each with the reason it is or is not a target.

Per account and region: one paginated DescribeInstances (1,000 instances a
page) and one paginated DescribeInstanceProperties (1,000 managed instances a
page; DescribeInstanceInformation, 50 a page, for a principal refused it: see
_ssm_nodes), joined in memory.  Account/region pairs run concurrently.

A pair that cannot be scanned never hides the others: it comes back as a
*location error* (account, region, the operation that failed, what to check).
When only the SSM read fails, the pair's instances are still
reported, with SSM status ``Unknown``, and none of them is a target: an
instance is never patched without knowing its SSM status.
"""

from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import error_code, is_transient, paginate
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError, describe_aws_error
from ansible_collections.cms.patching.plugins.module_utils._ssm_nodes import PROPERTIES, managed_nodes

try:
    # A cancelled run (controller gone, SIGINT/SIGTERM) must end the module, not become one location's error.
    from ansible_collections.cms.patching.plugins.module_utils._cancel import Cancelled
except ImportError:  # before the cancel mechanism exists there is nothing to let through
    Cancelled = ()

# EC2 accepts at most 200 values per filter.
FILTER_VALUES_MAX = 200
PATCH_GROUP_TAGS = ("Patch Group", "PatchGroup")
SSM_UNKNOWN = "Unknown"
# The operation that reads SSM status, as location errors and skip reasons name it.
SSM_READ = PROPERTIES

SKIP_REASONS = {
    "excluded_by_tag": "excluded by tag {detail}",
    "not_included": "lacks the include tag {detail}",
    "platform": "platform {detail} is not targeted",
    "state": "instance is {detail} (targets must be {states})",
    "ssm_unknown": "SSM status unknown ({detail}); not patched without knowing it",
    "not_ssm_managed": "not managed by SSM (no agent registered for this instance)",
    "ssm_offline": "SSM agent is {detail}, not Online",
    "not_found": "not found in the landing zone's accounts and regions",
}


def ec2_filters(filters):
    """{'tag:Env': 'prod', 'instance-type': ['t3.micro']} -> EC2 Filters list."""
    return [{"Name": name, "Values": value if isinstance(value, list) else [value]} for name, value in sorted((filters or {}).items())]


def _tags(aws_tags):
    return {t["Key"]: t.get("Value", "") for t in aws_tags or []}


def _matches(tags, key, wanted):
    if key not in tags:
        return False
    values = wanted if isinstance(wanted, list) else [wanted]
    return "*" in values or tags[key] in values


def _describe_instances(ec2, filters, instance_ids):
    """The location's instances matching ``filters`` (and in ``instance_ids`` when given).

    Up to 200 candidates (one filter's values) are asked for by ID: one call. More candidates would take a call per 200
    in every location - an AWX slice of n hosts is asked for in each account and region, wherever its hosts are - so the
    location is listed with the landing zone's filters instead (1,000 a page) and the candidates are picked here: the
    same instances, as both ways apply the same filters.
    """
    if instance_ids is not None and not instance_ids:
        return  # no candidate: nothing to ask for
    request = ec2_filters(filters)
    picked = None  # the candidates to pick from a listing of the whole location
    if instance_ids is not None and len(instance_ids) <= FILTER_VALUES_MAX:
        request = request + [{"Name": "instance-id", "Values": sorted(instance_ids)}]
    elif instance_ids is not None:
        picked = set(instance_ids)
    for reservation in paginate(ec2.describe_instances, "Reservations", Filters=request, MaxResults=1000):
        for instance in reservation.get("Instances", []):
            if picked is None or instance.get("InstanceId") in picked:
                yield instance


def instance_record(instance, account_id, region, info):
    """The fields discovery reports for one instance (before classification)."""
    tags = _tags(instance.get("Tags"))
    platform = "windows" if (instance.get("Platform") or "").lower() == "windows" else "linux"
    patch_group = next((tags[k] for k in PATCH_GROUP_TAGS if tags.get(k)), "")
    return {
        "instance_id": instance["InstanceId"],
        "account_id": account_id,
        "region": region,
        "name": tags.get("Name", ""),
        "platform": platform,
        "platform_details": instance.get("PlatformDetails", ""),
        "instance_type": instance.get("InstanceType", ""),
        "state": instance.get("State", {}).get("Name", ""),
        "private_ip": instance.get("PrivateIpAddress", ""),
        "patch_group": patch_group,
        "tags": tags,
        "volumes": [
            {"device_name": m["DeviceName"], "volume_id": m["Ebs"]["VolumeId"]}
            for m in instance.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("VolumeId")
        ],
        "ssm_status": info.get("PingStatus", "NotManaged") if info else "NotManaged",
        "ssm_platform_name": (info or {}).get("PlatformName", ""),
        "ssm_agent_version": (info or {}).get("AgentVersion", ""),
    }


def classify(record, rules):
    """(skip_code, skip_reason) for a record, or (None, '') when it is a target. First matching rule wins."""
    tags = record["tags"]
    for key, wanted in sorted((rules.get("exclude_tags") or {}).items()):
        if _matches(tags, key, wanted):
            return "excluded_by_tag", SKIP_REASONS["excluded_by_tag"].format(detail="%s=%s" % (key, tags[key]))
    for key, wanted in sorted((rules.get("include_tags") or {}).items()):
        if not _matches(tags, key, wanted):
            shown = "|".join(wanted) if isinstance(wanted, list) else wanted
            return "not_included", SKIP_REASONS["not_included"].format(detail="%s=%s" % (key, shown))
    platforms = rules.get("platforms") or ["linux", "windows"]
    if record["platform"] not in platforms:
        return "platform", SKIP_REASONS["platform"].format(detail=record["platform"])
    states = rules.get("instance_states") or ["running"]
    if record["state"] not in states:
        return "state", SKIP_REASONS["state"].format(detail=record["state"], states=" or ".join(states))
    # Whatever require_ssm_online says: an instance whose SSM status could not be read is never a target.
    if record["ssm_status"] == SSM_UNKNOWN:
        detail = "%s failed in %s/%s" % (SSM_READ, record["account_id"], record["region"])
        return "ssm_unknown", SKIP_REASONS["ssm_unknown"].format(detail=detail)
    if record["ssm_status"] == "NotManaged":
        return "not_ssm_managed", SKIP_REASONS["not_ssm_managed"]
    if rules.get("require_ssm_online", True) and record["ssm_status"] != "Online":
        return "ssm_offline", SKIP_REASONS["ssm_offline"].format(detail=record["ssm_status"])
    return None, ""


# Error codes that mean the caller may not make the call (EC2: UnauthorizedOperation, "Error codes for the Amazon EC2 API";
# SSM/STS: AccessDenied(Exception)) or that the account cannot use the region (EC2 OptInRequired / AuthFailure, same page:
# a region not enabled in the account answers AuthFailure).
DENIED_CODES = frozenset(["UnauthorizedOperation", "AccessDenied", "AccessDeniedException"])
REGION_CODES = frozenset(["OptInRequired", "AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId"])


class LocationError(Exception):
    """One account/region could not be scanned (or not fully): which operation failed, and what to check."""

    def __init__(self, operation, message, records=None):
        super().__init__(message)
        self.operation = operation
        self.message = message
        # Instances still reported for this location (the SSM read failed after DescribeInstances worked).
        self.records = records or []


def explain(operation, exc, account_id, region):
    """'<operation> failed: <AWS error>; check ...' - the failure and what to look at."""
    if isinstance(exc, FleetError):
        # Credentials: the session layer's message already names the role, the account and the fix.
        return str(exc)
    code = error_code(exc)
    if code in DENIED_CODES:
        hint = "check that the role used in account %s allows %s" % (account_id, operation)
    elif code in REGION_CODES:
        hint = "check that region %s is enabled in account %s and that the credentials are valid there" % (region, account_id)
    elif is_transient(exc) or code in ("RequestLimitExceeded", "ThrottlingException", "Throttling"):
        hint = "AWS kept failing after retries; run again later (a resumed run, -e run_id=..., scans again)"
    else:
        hint = "check the role's permissions for %s in account %s and region %s" % (operation, account_id, region)
    return "%s failed: %s; %s" % (operation, describe_aws_error(exc), hint)


def scan_account_region(fleet, account_id, region, filters, instance_ids):
    """Records of every instance in one account/region (unclassified); raises LocationError naming the failed step."""
    try:
        ec2 = fleet.client("ec2", account_id, region)
        found = list(_describe_instances(ec2, filters, instance_ids))
    except Cancelled:
        raise
    except Exception as exc:  # pylint: disable=broad-except  # any failure of this location is reported for it, the others go on
        raise LocationError("ec2:DescribeInstances", explain("ec2:DescribeInstances", exc, account_id, region)) from None
    if not found:
        return []
    try:
        managed = managed_nodes(fleet, account_id, region)
    except Cancelled:
        raise
    except Exception as exc:  # pylint: disable=broad-except  # the instances are kept, with their SSM status unknown
        message = explain(SSM_READ, exc, account_id, region)
        records = [instance_record(instance, account_id, region, None) for instance in found]
        for record in records:
            record["ssm_status"] = SSM_UNKNOWN
        raise LocationError(
            SSM_READ, "%s (its %d instance(s) are reported with SSM status Unknown and not patched)" % (message, len(records)), records
        ) from None
    return [instance_record(instance, account_id, region, managed.get(instance["InstanceId"])) for instance in found]


def location_error(account_id, region, exc):
    """The module's errors[] entry for a location."""
    if isinstance(exc, LocationError):
        return {"account_id": account_id, "region": region, "operation": exc.operation, "error": exc.message, "instances": len(exc.records)}
    return {"account_id": account_id, "region": region, "operation": "", "error": describe_aws_error(exc), "instances": 0}


def scan(fleet, account_ids, regions, filters, rules, instance_ids=None, max_workers=8):
    """Scan every account/region pair; return (records, errors). Errors name the pair, the failed operation and what to check."""
    pairs = [(a, r) for a in account_ids for r in regions]
    wanted = None if instance_ids is None else set(instance_ids)
    outcomes = fan_out(lambda pair: scan_account_region(fleet, pair[0], pair[1], filters, wanted), pairs, max_workers)
    records, errors = [], []
    for outcome in outcomes:
        account_id, region = outcome.item
        if Cancelled and isinstance(outcome.error, Cancelled):
            raise outcome.error
        if not outcome.ok:
            errors.append(location_error(account_id, region, outcome.error))
            records.extend(getattr(outcome.error, "records", []))
            continue
        records.extend(outcome.result)
    for record in records:
        record["skip_code"], record["skip_reason"] = classify(record, rules)
        record["target"] = record["skip_code"] is None
    # A candidate is "not found" only when every location could be searched for it.
    if wanted is not None and not [e for e in errors if e["operation"] != SSM_READ]:
        for missing in sorted(wanted - {r["instance_id"] for r in records}):
            records.append(not_found_record(missing))
    records.sort(key=lambda r: (r["account_id"], r["region"], r["name"], r["instance_id"]))
    return records, errors


def not_found_record(instance_id):
    return {
        "instance_id": instance_id,
        "account_id": "",
        "region": "",
        "name": "",
        "platform": "",
        "platform_details": "",
        "instance_type": "",
        "state": "",
        "private_ip": "",
        "patch_group": "",
        "tags": {},
        "volumes": [],
        "ssm_status": "",
        "ssm_platform_name": "",
        "ssm_agent_version": "",
        "skip_code": "not_found",
        "skip_reason": SKIP_REASONS["not_found"],
        "target": False,
    }


def summarize(records):
    """Counts for the module result: seen, targets, skipped per reason code."""
    skipped = {}
    for record in records:
        if not record["target"]:
            skipped[record["skip_code"]] = skipped.get(record["skip_code"], 0) + 1
    return {"seen": len(records), "targets": sum(1 for r in records if r["target"]), "skipped": dict(sorted(skipped.items()))}
