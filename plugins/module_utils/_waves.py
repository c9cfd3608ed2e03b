# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Split a batch of instances into the landing zone's patch waves, deterministically, and check the waves against the targets.

The same instances and the same wave list always give the same waves, so a
resumed run finds each wave's commands again.  Waves are taken in order:

* ``instance_ids`` or ``names`` (the Name tag) pick those instances.  They are
  reserved for their wave: a ``count``/``percent``/rest wave before it never
  takes them, so a named wave gets what it names wherever it stands.
* ``count`` or ``percent`` (of all the instances, rounded up, at least one)
  take the first unreserved instances not yet in a wave, in instance-ID order.
* a wave without a selector takes every unreserved instance left.

Instances left after the last wave form a final wave named ``rest`` (``rest-2``
if a configured wave is called ``rest``).  Empty waves are dropped from the
plan; ``check_waves`` is what makes sure no wave is empty by mistake (a name
that matches no target fails the run before anything is backed up).
"""

import difflib
import math

EXPLICIT = ("instance_ids", "names")


def selector(wave):
    for key in ("instance_ids", "names", "count", "percent"):
        if wave.get(key):
            return key
    return None


def picker(wave):
    """For an explicit wave (instance_ids / names): a function telling whether it selects an instance; None for the others."""
    if wave.get("instance_ids"):
        wanted = frozenset(wave["instance_ids"])
        return lambda instance: instance["instance_id"] in wanted
    if wave.get("names"):
        wanted = frozenset(wave["names"])
        return lambda instance: instance.get("name") in wanted
    return None


def plan_waves(instances, waves):
    remaining = sorted(instances, key=lambda i: i["instance_id"])
    total = len(remaining)
    pickers = [picker(w) for w in waves or []]
    reserved = {i["instance_id"] for i in remaining for picks in pickers if picks and picks(i)}
    plan = []
    for wave, picks in zip(waves or [], pickers):
        if not remaining:
            break
        kind = selector(wave)
        if picks:
            chosen = [i for i in remaining if picks(i)]
        else:
            free = [i for i in remaining if i["instance_id"] not in reserved]
            if kind == "count":
                chosen = free[: int(wave["count"])]
            elif kind == "percent":
                chosen = free[: max(1, int(math.ceil(total * float(wave["percent"]) / 100.0)))]
            else:
                chosen = free
        taken = {i["instance_id"] for i in chosen}
        remaining = [i for i in remaining if i["instance_id"] not in taken]
        if chosen:
            plan.append({"name": wave["name"], "instances": chosen})
    if remaining:
        plan.append({"name": _rest_name(waves), "instances": remaining})
    return plan


def _rest_name(waves):
    """'rest', or 'rest-2', 'rest-3'... when a configured wave is already called so: wave names find a run's commands again."""
    taken = {w.get("name") for w in waves or []}
    name, number = "rest", 1
    while name in taken:
        number += 1
        name = "rest-%d" % number
    return name


def _label(instance):
    return instance.get("name") or instance["instance_id"]


def _unknown(value, kind, seen_by_key, candidates):
    """Why a name or ID of a wave selects no target: the instance is not a target (with its reason), or the closest targets."""
    if value in seen_by_key:
        reasons = sorted({r.get("skip_reason") or "not a target" for r in seen_by_key[value]})
        return "%s is not a target (%s)" % (value, "; ".join(reasons))
    guesses = difflib.get_close_matches(value, candidates, n=3, cutoff=0.6)
    hint = ""
    if guesses:
        hint = " (did you mean %s?)" % (guesses[0] if len(guesses) == 1 else "%s or %s" % (", ".join(guesses[:-1]), guesses[-1]))
    return "no target has the %s %s%s" % (kind, value, hint)


def check_waves(instances, waves, path="cms_patching_landing_zone.patching.waves"):
    """Check the waves against the discovered instances (targets have ``target`` true); return (problems, warnings).

    A problem is a wave that names an instance (by Name tag or ID) that is not a target: its instances would silently
    go to a later wave - with a canary, the whole fleet would be patched at once. The same instance selected by two
    waves, once by name and once by ID, is a problem too. A warning is a count/percent/rest wave that gets nothing.
    """
    targets = [i for i in instances if i.get("target", True)]
    others = [i for i in instances if not i.get("target", True)]
    by_name, by_id = {}, {}
    for item in targets:
        by_name.setdefault(item.get("name"), []).append(item)
        by_id[item["instance_id"]] = item
    other_names, other_ids = {}, {}
    for item in others:
        other_names.setdefault(item.get("name"), []).append(item)
        other_ids.setdefault(item["instance_id"], []).append(item)
    names = sorted(n for n in by_name if n)
    problems = []
    owner = {}
    for index, wave in enumerate(waves or []):
        where = "%s[%d] (wave %r)" % (path, index, wave.get("name"))
        kind = selector(wave)
        if kind not in EXPLICIT:
            continue
        if kind == "names":
            missing = [n for n in wave["names"] if n not in by_name]
            details = [_unknown(n, "name", other_names, names) for n in missing]
        else:
            missing = [i for i in wave["instance_ids"] if i not in by_id]
            details = [_unknown(i, "instance ID", other_ids, sorted(by_id)) for i in missing]
        if missing:
            problems.append("%s.%s: %s" % (where, kind, "; ".join(details)))
        picks = picker(wave)
        for item in targets:
            if not picks(item):
                continue
            if item["instance_id"] in owner:
                first = owner[item["instance_id"]]
                problems.append("%s.%s: %s (%s) is already in %s; an instance belongs to one wave" % (where, kind, item["instance_id"], _label(item), first))
            else:
                owner[item["instance_id"]] = where
    planned = {w["name"] for w in plan_waves(targets, waves)}
    warnings = [
        "%s[%d] (wave %r): gets no instance - the waves before it and the named waves take all %d target(s)" % (path, index, wave.get("name"), len(targets))
        for index, wave in enumerate(waves or [])
        if selector(wave) not in EXPLICIT and wave.get("name") not in planned and targets
    ]
    return problems, warnings


def plan_lines(plan):
    """One line per wave: its name, its size and its instances (Name tag, else ID), as --check and the log show it."""
    lines = []
    for wave in plan:
        size = len(wave["instances"])
        lines.append("wave %s: %d instance%s: %s" % (wave["name"], size, "" if size == 1 else "s", ", ".join(_label(i) for i in wave["instances"])))
    return lines
