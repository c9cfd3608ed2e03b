# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The SSM view of a location's EC2 instances (ping status, agent, platform): one reader for discovery, post-checks and Run Command.

SSM API reference, DescribeInstanceProperties: the same per-node data as DescribeInstanceInformation (InstanceId,
PingStatus, LastPingDateTime, AgentVersion, PlatformType/Name/Version, ResourceType, ... under the same names) with
MaxResults up to 1,000 where DescribeInstanceInformation stops at 50: a location of 1,000 managed instances is read in
one call instead of 20. InstancePropertyFilter takes at most 40 values per filter.

A principal whose policy was written for DescribeInstanceInformation may be refused DescribeInstanceProperties
(AccessDeniedException): that location is then read with DescribeInstanceInformation, as before, and the module result
carries a one-line warning (FleetSession.warn) saying which permission to grant. Never silent, never a failure.
"""

import threading

from ansible_collections.cms.patching.plugins.module_utils._batching import chunks
from ansible_collections.cms.patching.plugins.module_utils._retry import error_code, paginate

PROPERTIES = "ssm:DescribeInstanceProperties"
INFORMATION = "ssm:DescribeInstanceInformation"
PAGE_MAX = 1000  # DescribeInstanceProperties MaxResults: 5..1000
VALUES_MAX = 40  # InstancePropertyFilter valueSet: 1..40 items
INFORMATION_PAGE_MAX = 50  # DescribeInstanceInformation MaxResults: 5..50
INFORMATION_VALUES_MAX = 50
# SSM answers a refused action with AccessDeniedException (SSM API reference, Common Errors).
DENIED_CODES = frozenset(["AccessDeniedException", "AccessDenied"])
EC2_ONLY = [{"key": "ResourceType", "valueSet": ["EC2Instance"]}]
_WARNING_LOCK = threading.Lock()


def _properties(ssm, instance_ids):
    if instance_ids is None:
        return paginate(ssm.describe_instance_properties, "InstanceProperties", InstancePropertyFilterList=EC2_ONLY, MaxResults=PAGE_MAX)
    return _properties_of(ssm, instance_ids)


def _properties_of(ssm, instance_ids):
    """The nodes among instance_ids, in the fewest calls.

    Up to 40 IDs fit one filtered call. More need one filtered call per 40 IDs; one unfiltered page instead holds up to
    1,000 nodes of the location, which covers every location of up to 1,000 managed instances in a single call whatever
    the number of IDs (a wave of 300 instances: 1 call instead of 8). Only a location with more than 1,000 nodes needs
    more: then the IDs not on that first page are asked for by filter, 40 a call, so the cost stays bounded by the IDs
    (at most one call more than filtering from the start), never by the size of the location.
    """
    ids = list(dict.fromkeys(instance_ids))
    if len(ids) <= VALUES_MAX:
        return _filtered(ssm, ids)
    wanted = set(ids)
    first = ssm.describe_instance_properties(InstancePropertyFilterList=EC2_ONLY, MaxResults=PAGE_MAX)
    found = [node for node in first.get("InstanceProperties", []) if node["InstanceId"] in wanted]
    if first.get("NextToken"):
        seen = {node["InstanceId"] for node in found}
        found.extend(_filtered(ssm, [i for i in ids if i not in seen]))
    return found


def _filtered(ssm, ids):
    nodes = []
    for chunk in chunks(ids, VALUES_MAX):
        by_id = [{"key": "InstanceIds", "valueSet": chunk}]
        nodes.extend(paginate(ssm.describe_instance_properties, "InstanceProperties", InstancePropertyFilterList=by_id, MaxResults=PAGE_MAX))
    return nodes


def _information(ssm, instance_ids):
    """The former reads, for a principal refused DescribeInstanceProperties: 50 a page, 50 IDs a filter."""
    if instance_ids is None:
        return list(paginate(ssm.describe_instance_information, "InstanceInformationList",
                             Filters=[{"Key": "ResourceType", "Values": ["EC2Instance"]}], MaxResults=INFORMATION_PAGE_MAX))
    nodes = []
    for chunk in chunks(list(dict.fromkeys(instance_ids)), INFORMATION_VALUES_MAX):
        nodes.extend(paginate(ssm.describe_instance_information, "InstanceInformationList",
                              Filters=[{"Key": "InstanceIds", "Values": chunk}], MaxResults=INFORMATION_PAGE_MAX))
    return nodes


def managed_nodes(fleet, account_id, region, instance_ids=None):
    """{instance_id: node} of the location's SSM-managed EC2 instances (all of them, or those among instance_ids).

    A node has DescribeInstanceInformation's field names (InstanceId, PingStatus, PlatformName, AgentVersion, ...),
    whichever call read it. Errors other than the refusal of DescribeInstanceProperties propagate (reads are retried by
    the client first).
    """
    ssm = fleet.client("ssm", account_id, region)
    denied = fleet.refused(PROPERTIES, account_id, region)
    if denied is None:
        try:
            return {node["InstanceId"]: node for node in _properties(ssm, instance_ids)}
        except Exception as exc:  # pylint: disable=broad-except  # only a refusal falls back; anything else is re-raised
            if error_code(exc) not in DENIED_CODES:
                raise
            denied = exc
        # Remembered for the run: later reads of this location (each post-check round) go straight to the fallback.
        # One warning line names every such location; locations run in parallel threads, so the line is rebuilt under a lock.
        with _WARNING_LOCK:
            locations = fleet.refuse(PROPERTIES, account_id, region, denied)
            fleet.warn(
                "%s refused (%s) in %s: SSM status read there with %s instead (50 instances a call); grant %s "
                "(iam/discovery.json, patching.json, rollback.json) to read 1,000 a call"
                % (PROPERTIES, error_code(denied), ", ".join(locations), INFORMATION, PROPERTIES),
                key=PROPERTIES,
            )
    try:
        return {node["InstanceId"]: node for node in _information(ssm, instance_ids)}
    except Exception as exc:  # pylint: disable=broad-except  # re-raised, as itself or as the first refusal
        if error_code(exc) in DENIED_CODES:
            # Both refused: report the refusal of the action the collection's policies grant, which is what to fix.
            raise denied from exc
        raise
