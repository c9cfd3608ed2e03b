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
import stat
import tempfile
import time

VERSION = 1
MAX_AGE = 14 * 86400


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cms-patching", "runs")


def _private_dir(path):
    """Create the directory 0700 (parents too) and refuse one that is not ours or not a real directory."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError("%s is not a directory of this user" % path)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


class RunCache:
    """load() -> dict (empty when there is nothing usable); save(dict); remove(). Never raises for file problems."""

    def __init__(self, lz, run_id, wave, root=None):
        self.root = root or cache_root()
        self.identity = {"lz": lz, "run_id": run_id, "wave": wave}
        key = hashlib.sha256(json.dumps([lz, run_id, wave]).encode("utf-8")).hexdigest()[:40]
        self.path = os.path.join(self.root, key + ".json")

    def load(self):
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return {}
        try:
            with os.fdopen(fd, "r", encoding="utf-8") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
                    return {}
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION or data.get("identity") != self.identity:
            return {}
        return data

    def save(self, data):
        try:
            _private_dir(self.root)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")  # mkstemp makes it 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(dict(data, version=VERSION, identity=self.identity), handle, separators=(",", ":"))
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            self._prune()
        except (OSError, TypeError, ValueError):
            pass  # a cache that cannot be written costs reads in the next call, never correctness

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _prune(self):
        cutoff = time.time() - MAX_AGE
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            try:
                if name.endswith(".json") and os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
            except OSError:
                pass
