# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""How a fleet is cut into API calls: per account and region, then in chunks of what one call accepts."""


def chunks(items, size):
    """Consecutive slices of at most size items (the per-call limits: 50 InstanceIds, 200 filter values, ...)."""
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


def by_location(instances):
    """{(account_id, region): [instance, ...]} in the order the instances were given."""
    groups = {}
    for item in instances:
        groups.setdefault((item["account_id"], item["region"]), []).append(item)
    return groups
