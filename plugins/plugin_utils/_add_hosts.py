# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The hosts of a cms.patching.add_hosts task, shared by its action plugin (run in a worker, any strategy) and the
cms.patching.linear_outcome strategy (registers them in the controller): both must read the arguments the same way, and
the same way as ansible.builtin.add_host reads one host's."""

from collections.abc import Mapping

from ansible.parsing.utils.addresses import parse_address

OPTIONS = ("hosts",)
# ansible.builtin.add_host's (2.19) reading of one host, kept as it is: the host's name is name, else hostname, else host;
# its groups groupname, else groups, else group; every key but these four is a host variable (host and group included).
SPECIAL = frozenset(("name", "hostname", "groupname", "groups"))


def _entry(host):
    """One host's ansible.builtin.add_host arguments -> its add_host result ({host_name, groups, host_vars}), as that action makes it."""
    name = host.get("name", host.get("hostname", host.get("host")))
    if name is None:
        raise ValueError("every host needs a name (name, host or hostname): %r" % (dict(host),))
    try:
        host_name, port = parse_address(str(name), allow_ranges=False)
    except Exception:  # pylint: disable=broad-except  # add_host keeps a name it cannot parse as it is
        host_name, port = str(name), None
    host_vars = {k: v for k, v in host.items() if k not in SPECIAL}
    if port:
        host_vars["ansible_ssh_port"] = port
    groups = host.get("groupname", host.get("groups", host.get("group", "")))
    if isinstance(groups, str):
        groups = groups.split(",") if groups else []
    if not isinstance(groups, list):
        raise ValueError("the groups of host %s must be a list, not %r" % (host_name, groups))
    new_groups = []
    for group in groups:
        if group not in new_groups:
            new_groups.append(str(group).strip())
    return {"host_name": host_name, "groups": new_groups, "host_vars": host_vars}


def add_host_entries(args):
    """The task's arguments -> (add_host results, one per host, in order; None) or (None, the error message)."""
    unknown = sorted(set(args) - set(OPTIONS))
    if unknown:
        return None, "add_hosts: unsupported option(s) %s; supported: %s" % (", ".join(unknown), ", ".join(OPTIONS))
    hosts = args.get("hosts")
    hosts = [] if hosts is None else hosts
    if not isinstance(hosts, list) or not all(isinstance(h, Mapping) for h in hosts):
        return None, "add_hosts: hosts must be a list of ansible.builtin.add_host arguments (dicts with name, groups and variables)"
    try:
        return [_entry(h) for h in hosts], None
    except ValueError as exc:
        return None, "add_hosts: %s" % exc
