# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A file cache of STS answers shared by the module processes of a run (assumed-role credentials, the caller's account).

Every module call is a new process, and so is every progress return of the roles' ``until`` loops: without a
cache each one assumes every account's role again and asks GetCallerIdentity for the account it reaches with the
caller's own credentials (in a 1,000-instance run, 77 of about 2,000 calls).  The AWS CLI avoids the same by
keeping assumed-role credentials in ``~/.aws/cli/cache`` (botocore's ``JSONFileCache``, used by its
``AssumeRoleCredentialFetcher``: one JSON file per sha1 of the AssumeRole arguments, reused until 15 minutes before
``Expiration``).  This cache follows that pattern, with what a fleet tool needs on top:

* The key is a sha256 of everything that changes the credentials - the AssumeRole request (role ARN, external
  ID, session name, duration, a session policy if one is ever sent), the access key ID of the SOURCE
  credentials (botocore's key leaves it out, so another user's or another profile's credentials could be
  reused) and the STS endpoint (a sandbox is not AWS).  Secrets are never part of a key or a file name, and the
  source credentials' secret is never stored; the files hold the assumed credentials themselves, as the CLI's do.
* The directory is created 0700 and each file 0600 (``mkstemp``); writes go to a temporary file renamed over the
  entry, because the forks of a play and the slices of a job read and write at once.  A file that cannot be read
  or parsed is a miss (and the next answer replaces it), never an error: the cache only ever saves calls.  Files no
  session can use any more are removed (``STALE_ENTRY_SECONDS``).
* Expiry is judged on AWS's clock: an entry keeps the ``Date`` of the AssumeRole answer and the controller's time
  when it was written, so a later process estimates AWS's time from them (see ``aws_now``), whatever the
  controller's clock is off by.
* Default directory ``${XDG_CACHE_HOME:-~/.cache}/cms-patching/sts``; ``CMS_PATCHING_CREDENTIAL_CACHE`` names
  another directory, or ``off`` turns the cache off.  Under AWX every job runs in its own execution-environment
  container, so the cache lives as long as the job and is never shared between jobs (nor between the slices of a
  sliced job).

An entry is never trusted blindly: ``_session`` renews credentials that AWS rejects as expired or unknown
(``ExpiredToken``, ``RequestExpired``, ``InvalidClientTokenId``...) once, dropping the entry first.
"""

import hashlib
import json
import os
import time

from ansible_collections.cms.patching.plugins.module_utils._private_files import cache_base, prune, private_dir, read_json, write_json

ENV = "CMS_PATCHING_CREDENTIAL_CACHE"
OFF = frozenset(["off", "false", "no", "0", "none", "disabled"])
FORMAT = 1
# The caller's account for an access key never changes (an access key belongs to one principal for its whole life): the bound
# only keeps a file from living on after the run, and lets a deleted-and-recreated profile be checked again within the hour.
CALLER_TTL = 3600
# How far the controller's clock may have stepped back since an entry was written before the entry's time estimate is
# not trusted (an NTP step); beyond it the entry is a miss.
CLOCK_STEP_TOLERANCE = 60
# Files nothing can use any more are removed (once per process, when it first writes): an entry older than the longest
# session AWS hands out (43,200 s) plus an hour, and a temporary file a killed process left behind, after an hour.  On a
# long-lived controller whose source credentials rotate, the directory would otherwise grow for ever.
STALE_ENTRY_SECONDS = 43200 + 3600


def default_directory(environ=None):
    """The cache directory the environment asks for, or None when the cache is off."""
    environ = os.environ if environ is None else environ
    value = (environ.get(ENV) or "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return os.path.expanduser(value)
    return os.path.join(cache_base(environ), "sts")


def _digest(kind, fields):
    text = json.dumps(dict(fields, kind=kind, format=FORMAT), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source_id(access_key):
    """The identity of the source credentials as it goes into a key: a hash of the access key ID, never the key or its secret."""
    return hashlib.sha256(access_key.encode("utf-8")).hexdigest()


class CredentialCache:
    """One directory of JSON entries; every method is safe to call from several threads and processes at once."""

    def __init__(self, directory, wall=time.time):
        self.directory = directory
        self._wall = wall
        self._usable = None  # None: not checked yet; the directory is made (or refused) on first use
        self._pruned = False

    @classmethod
    def from_environment(cls, environ=None):
        directory = default_directory(environ)
        return None if directory is None else cls(directory)

    # Keys ---------------------------------------------------------------------------------------------------------
    @staticmethod
    def role_key(request, source_access_key, endpoint):
        """The entry of one AssumeRole request made with one source access key at one STS endpoint."""
        request = dict(request)
        if isinstance(request.get("Policy"), str):
            try:  # the same policy written differently is the same session policy
                request["Policy"] = json.loads(request["Policy"])
            except ValueError:
                pass
        return _digest("assume-role", {"request": request, "source": source_id(source_access_key), "endpoint": endpoint or ""})

    @staticmethod
    def caller_key(source_access_key, partition, endpoint):
        """The entry of GetCallerIdentity for one access key in one partition at one STS endpoint."""
        return _digest("caller", {"source": source_id(source_access_key), "partition": partition or "", "endpoint": endpoint or ""})

    # Assumed-role credentials -------------------------------------------------------------------------------------
    def load_role(self, key, account_id, min_remaining, aws_now=None):
        """The cached credentials for key if they still have min_remaining(lifetime) seconds on AWS's clock, else None.

        aws_now: AWS's time if this process already knows it (an answer's Date), else the entry's estimate is used.

        Returns a dict: access_key, secret_key, token, expiration (AWS epoch seconds), lifetime, aws_time and wall_time
        (AWS's time and the controller's when the entry was written), remaining (seconds left now, estimated).
        """
        entry = self._read(key)
        try:
            found = dict(
                access_key=str(entry["access_key"]),
                secret_key=str(entry["secret_key"]),
                token=str(entry["token"]),
                expiration=float(entry["expiration"]),
                lifetime=float(entry["lifetime"]),
                aws_time=float(entry["aws_time"]),
                wall_time=float(entry["wall_time"]),
            )
            if str(entry["account"]) != str(account_id):
                return None
        except (KeyError, TypeError, ValueError):
            return None
        aws_now = self.aws_now(found) if aws_now is None else aws_now
        if aws_now is None or found["lifetime"] <= 0:
            return None
        found["remaining"] = found["expiration"] - aws_now
        if not min_remaining(found["lifetime"]) <= found["remaining"] <= found["lifetime"] + CLOCK_STEP_TOLERANCE:
            return None
        return found

    def store_role(self, key, account_id, credentials, expiration, lifetime, aws_time):
        """Keep assumed credentials: expiration and aws_time (the answer's Date) as epoch seconds on AWS's clock."""
        self._write(
            key,
            dict(
                kind="assume-role",
                account=str(account_id),
                access_key=credentials["access_key"],
                secret_key=credentials["secret_key"],
                token=credentials["token"],
                expiration=float(expiration),
                lifetime=float(lifetime),
                aws_time=float(aws_time),
                wall_time=self._wall(),
            ),
        )

    def aws_now(self, entry):
        """AWS's time now, estimated from when entry was written: its aws_time plus the controller's time since.

        The controller's offset from AWS cancels out (both times of the entry were taken together); only a clock
        stepped back since makes the estimate unusable (None).
        """
        elapsed = self._wall() - entry["wall_time"]
        if elapsed < -CLOCK_STEP_TOLERANCE:
            return None
        return entry["aws_time"] + max(0.0, elapsed)

    # The caller's account -----------------------------------------------------------------------------------------
    def load_caller(self, key):
        """The cached account of the caller's credentials (written less than CALLER_TTL ago), or None."""
        entry = self._read(key)
        try:
            account, written = str(entry["account"]), float(entry["wall_time"])
        except (KeyError, TypeError, ValueError):
            return None
        if not account.isdigit() or not -CLOCK_STEP_TOLERANCE <= self._wall() - written < CALLER_TTL:
            return None
        return account

    def store_caller(self, key, account_id):
        self._write(key, dict(kind="caller", account=str(account_id), wall_time=self._wall()))

    # Entries ------------------------------------------------------------------------------------------------------
    def drop(self, key, access_key=None):
        """Remove an entry (only if it still holds access_key, when given: another process may have renewed it since)."""
        if access_key is not None:
            entry = self._read(key)
            if entry.get("access_key") != access_key:
                return
        try:
            os.unlink(self._path(key))
        except OSError:
            pass

    def _path(self, key):
        return os.path.join(self.directory, key + ".json")

    def _ready(self):
        """Make the directory (0700) on first use; a directory of another user, or not a directory, is not used."""
        if self._usable is None:
            self._usable = private_dir(self.directory)
        return self._usable

    def _read(self, key):
        if not self._ready():
            return {}
        entry = read_json(self._path(key))
        return entry if entry.get("format") == FORMAT else {}

    def _write(self, key, entry):
        if not self._ready():
            return
        if not self._pruned:
            # Once per process, when it first writes (see STALE_ENTRY_SECONDS).
            self._pruned = True
            prune(self.directory, STALE_ENTRY_SECONDS, lambda name: name.endswith(".json") and len(name) == 69, self._wall)
        entry["format"] = FORMAT
        write_json(self.directory, self._path(key), entry)
