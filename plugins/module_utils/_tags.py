# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The tags this collection puts on what it creates, and reads back to find it.

Only resources carrying ``cms:patching=pre-patch`` are ever considered ours:
retention never touches anything else, resumed runs find their AMIs by run ID,
and the patch gate finds the verified backup of each instance by run ID.
"""

PATCHING = "cms:patching"
PRE_PATCH = "pre-patch"
RUN_ID = "cms:patching:run-id"
INSTANCE_ID = "cms:patching:instance-id"
LZ = "cms:patching:lz"
VERIFIED_AT = "cms:patching:verified-at"

OURS = (PATCHING, RUN_ID, INSTANCE_ID, LZ, VERIFIED_AT)


def as_dict(aws_tags):
    return {t["Key"]: t.get("Value", "") for t in aws_tags or []}


def as_list(tags):
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]


def backup_tags(run_id, instance_id, lz, extra=None):
    """Tags of a pre-patch AMI and its snapshots; ours override same-named user tags."""
    tags = dict(extra or {})
    tags.update({PATCHING: PRE_PATCH, RUN_ID: run_id, INSTANCE_ID: instance_id, LZ: lz})
    return tags


def tag_filter(key, *values):
    return {"Name": "tag:%s" % key, "Values": list(values)}
