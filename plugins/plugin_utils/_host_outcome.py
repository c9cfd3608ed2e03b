# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The result of a host_outcome task, shared by its action plugin (run in a worker, any strategy) and the
cms.patching.linear_outcome strategy (computed in the controller, no worker): both must give a host the same status."""

from ansible.module_utils.parsing.convert_bool import boolean

OPTIONS = ("failed", "msg", "changed")


def outcome_result(args):
    """{failed, msg} -> failed with msg; else {changed} -> changed; else skipped. Bad arguments fail the host, saying which."""
    unknown = sorted(set(args) - set(OPTIONS))
    if unknown:
        return {"failed": True, "changed": False, "msg": "host_outcome: unsupported option(s) %s; supported: %s" % (", ".join(unknown), ", ".join(OPTIONS))}
    try:
        failed = boolean(args.get("failed", False), strict=True)
        changed = boolean(args.get("changed", False), strict=True)
    except TypeError as exc:
        return {"failed": True, "changed": False, "msg": "host_outcome: failed and changed must be booleans (%s)" % exc}
    msg = args.get("msg")
    msg = "" if msg is None else str(msg)
    if failed:
        return {"failed": True, "changed": False, "msg": msg or "failed"}
    if changed:
        return {"changed": True, "msg": msg or "changed"}
    return {"skipped": True, "changed": False, "skip_reason": msg or "nothing to do for this host", "msg": msg or "nothing to do for this host"}
