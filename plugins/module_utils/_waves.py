# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Split a batch of instances into the landing zone's patch waves, deterministically.

The same instances and the same wave list always give the same waves, so a
resumed run finds each wave's commands again.  Waves are taken in order; each
takes its instances from those not yet in an earlier wave: ``instance_ids`` or
``names`` (the Name tag) pick instances, ``count`` or ``percent`` (rounded up,
at least one) take the first ones in instance-ID order, and a wave without a
selector takes the rest.  Instances left after the last wave form a final wave
named ``rest``.  Empty waves are dropped.
"""

import math


def plan_waves(instances, waves):
    remaining = sorted(instances, key=lambda i: i["instance_id"])
    total = len(remaining)
    plan = []
    for wave in waves or []:
        if not remaining:
            break
        if wave.get("instance_ids"):
            wanted = set(wave["instance_ids"])
            chosen = [i for i in remaining if i["instance_id"] in wanted]
        elif wave.get("names"):
            wanted = set(wave["names"])
            chosen = [i for i in remaining if i.get("name") in wanted]
        elif wave.get("count"):
            chosen = remaining[: int(wave["count"])]
        elif wave.get("percent"):
            chosen = remaining[: max(1, int(math.ceil(total * float(wave["percent"]) / 100.0)))]
        else:
            chosen = list(remaining)
        taken = {i["instance_id"] for i in chosen}
        remaining = [i for i in remaining if i["instance_id"] not in taken]
        if chosen:
            plan.append({"name": wave["name"], "instances": chosen})
    if remaining:
        plan.append({"name": "rest", "instances": remaining})
    return plan
