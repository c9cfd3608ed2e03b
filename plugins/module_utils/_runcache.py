# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What one wave's progress calls learnt from AWS, kept on the controller for the next call of the same wave.

ssm_patch_run returns every ``progress_interval`` and the playbook calls it again (an ``until`` loop): each call is a
new process. Without this file every call reads again what the calls before it already read (the patch states of
every finished instance, the states from before the patch, the gate's AMIs for the command look-up bound, the
invocations of finished commands, the listing of locations where every command had finished).

It is a cache, never a source of truth: a missing, unreadable, foreign or corrupt file means "read it from AWS", as
before. Nothing that allows a send is taken from it (the gate and the command listing are read from AWS in every call
that sends). One file per landing zone + run ID + wave, 0600 in a 0700 directory
``${XDG_CACHE_HOME:-~/.cache}/cms-patching/runs/``, replaced atomically; the wave's last call removes it, and files
older than two weeks are removed by any write.
"""

import hashlib
import json
import os

from ansible_collections.cms.patching.plugins.module_utils._private_files import cache_base, prune, read_json, write_json

VERSION = 1
MAX_AGE = 14 * 86400


def cache_root():
    return os.path.join(cache_base(), "runs")


class RunCache:
    """load() -> dict (empty when there is nothing usable); save(dict); remove(). Never raises for file problems."""

    def __init__(self, lz, run_id, wave, root=None):
        self.root = root or cache_root()
        self.identity = {"lz": lz, "run_id": run_id, "wave": wave}
        key = hashlib.sha256(json.dumps([lz, run_id, wave]).encode("utf-8")).hexdigest()[:40]
        self.path = os.path.join(self.root, key + ".json")

    def load(self):
        data = read_json(self.path)
        if data.get("version") != VERSION or data.get("identity") != self.identity:
            return {}
        return data

    def save(self, data):
        # A cache that cannot be written costs reads in the next call, never correctness.
        if write_json(self.root, self.path, dict(data, version=VERSION, identity=self.identity)):
            prune(self.root, MAX_AGE, lambda name: name.endswith(".json"))

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass
