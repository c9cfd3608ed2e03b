# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller-local JSON files that only this user may read: the caches the module processes of one run share.

Both caches (assumed-role credentials in ``_credential_cache``, a wave's progress in ``_runcache``) hold what several
processes, possibly running at once (forks, AWX slices on one node), learnt from AWS. So: a 0700 directory of this user
(one of another user, or not a real directory, is refused), files made 0600 by ``mkstemp`` and renamed over the old one
(a reader never sees half a file), read without following a symlink, and a problem with a file is a miss, never an error:
a cache that cannot be used costs AWS calls, never correctness.
"""

import json
import os
import stat
import tempfile
import time


def cache_base(environ=None):
    """``${XDG_CACHE_HOME:-~/.cache}/cms-patching``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cms-patching")


def private_dir(path):
    """Make the directory 0700 (parents too); False when it cannot be made or is not a directory of this user."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(path, 0o700)
        return True
    except OSError:
        return False


def read_json(path):
    """The file's JSON object, or {} when it is missing, unreadable, not ours, open to others, a symlink or not an object."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "r", encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
                return {}
            data = json.load(handle)
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(directory, path, data):
    """Replace ``path`` (in ``directory``) with ``data`` atomically; False when it could not be written."""
    if not private_dir(directory):
        return False
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")  # 0600
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(tmp, path)
        return True
    except (OSError, TypeError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def prune(directory, max_age, is_entry, wall=time.time):
    """Remove entries (names for which ``is_entry`` is true) older than ``max_age`` seconds, and temporary files a killed
    process left behind after an hour. Errors are ignored: another process may be pruning too."""
    now = wall()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and name.endswith(".tmp"):
            limit = 3600
        elif is_entry(name):
            limit = max_age
        else:
            continue  # not ours
        path = os.path.join(directory, name)
        try:
            if now - os.lstat(path).st_mtime > limit:
                os.unlink(path)
        except OSError:
            pass
