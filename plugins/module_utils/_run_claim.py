# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retention once per run: a claim in SSM Parameter Store that exactly one of the run's jobs wins.

Every job of a run can end with retention, which works over the whole landing zone: the slices of a sliced AWX job
template (AWX gives a slice no slice number, only its own ``awx_job_id`` and the shared ``awx_workflow_job_id``), the
nodes of a workflow, a resumed run. One of them must carry it out, and only one.

The claim is a String parameter ``/cms-patching/<lz>/<run_id>/retention/<n>`` in the landing zone's first account and
region, created with PutParameter and ``Overwrite=false``. Parameter Store creates a name once and answers every later
create with ``ParameterAlreadyExists`` ("The parameter already exists. You can't create duplicate parameters.";
PutParameter, AWS Systems Manager API Reference, https://docs.aws.amazon.com/systems-manager/latest/APIReference/
API_PutParameter.html: ``Overwrite`` defaults to false), so of the jobs racing for one name exactly one wins, whatever
their timing. Its value (JSON) names the claimant (``AWX job 812``, or ``user@host`` outside AWX), a random token and
the state: ``started``, then ``done`` or ``failed`` when the claimant's retention ended (the claimant overwrites its
own parameter).

Before claiming, a job reads generations 1-10 with one GetParameters (at most 10 names a call: GetParameters, Systems
Manager API reference) and looks at the newest:

* none: it creates generation 1;
* ``done``: retention of the run was carried out; the job does not repeat it;
* ``started`` by the same claimant (the same AWX job, or the same user on the same controller resuming the run): the
  job carries on with it;
* ``started`` by another claimant less than ``stale_after`` seconds ago (AWS's clock against the parameter's
  LastModifiedDate): that job is at it; this one leaves it to that one;
* ``failed``, or ``started`` longer ago than ``stale_after`` (the claimant was killed, or its controller lost): the job
  takes over by creating generation n+1, again with ``Overwrite=false``, so of several jobs taking over one wins.

A lost or won claim is never silent: the result says who holds it, since when, and where the parameter is. A failed
read or create is a FleetError naming the parameter, the account and region, the AWS error and the permissions. A
create that failed with a server error may have been carried out: it is sent again, and ``ParameterAlreadyExists``
then is read back: the job's own token means its first attempt won.
"""

import datetime
import getpass
import hashlib
import json
import secrets
import socket
import time

from ansible_collections.cms.patching.plugins.module_utils._errors import FleetError
from ansible_collections.cms.patching.plugins.module_utils._retry import error_code, is_transient
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error

PREFIX = "/cms-patching"
# GetParameters reads at most 10 names a call: one call sees every generation.
MAX_GENERATIONS = 10
DEFAULT_STALE_AFTER = 3600
STARTED, DONE, FAILED = "started", "done", "failed"
# A create or an update that failed with a server error is sent this many times in all.
PUT_ATTEMPTS = 3
PUT_RETRY_SECONDS = 2.0
PERMISSIONS = "ssm:GetParameters and ssm:PutParameter on arn:aws:ssm:<region>:<account>:parameter%s/<lz>/* (iam/retention.json)" % PREFIX


def parameter_base(lz, run_id):
    """The claim's name without its generation. Parameter names allow letters, digits, '.', '-', '_' and '/'; a run
    ID may also hold ':', which becomes '_' plus a hash of the run ID (so 'a:b' and 'a_b' never share a claim)."""
    segment = run_id
    if ":" in run_id:
        segment = "%s-%s" % (run_id.replace(":", "_"), hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:8])
    return "%s/%s/%s/retention" % (PREFIX, lz, segment)


def default_claimant():
    """Who claims outside AWX: the controller's user and host (a resume from there carries on with its own claim)."""
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except  # no user name in this environment (a container without passwd entry)
        user = "unknown"
    return "%s@%s" % (user, socket.gethostname())


def _timestamp(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _iso(stamp):
    if stamp is None:
        return ""
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(parameter):
    try:
        value = json.loads(parameter.get("Value") or "")
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"claimant": "(unreadable claim %r)" % parameter.get("Value"), "state": STARTED}


class RetentionClaim:
    """The claim of one job on the retention of one run: ``acquire()`` once, then ``finish(ok)`` if it was won."""

    def __init__(self, fleet, location, lz, run_id, claimant, stale_after=DEFAULT_STALE_AFTER, check_mode=False, sleep=time.sleep):
        self.fleet = fleet
        self.location = tuple(location)
        self.lz = lz
        self.run_id = run_id
        self.claimant = claimant or default_claimant()
        self.stale_after = stale_after
        self.check_mode = check_mode
        self.sleep = sleep
        self.base = parameter_base(lz, run_id)
        self.token = secrets.token_hex(8)
        self.name = None
        self.info = None

    # -- reading and writing -------------------------------------------------------------------------------------

    def _where(self, name=None):
        return "%s in %s/%s" % (name or self.base + "/<n>", self.location[0], self.location[1])

    def _fail(self, doing, exc, name=None):
        return FleetError(
            "could not %s the retention claim of run %s (SSM parameter %s): %s; the role needs %s"
            % (doing, self.run_id, self._where(name), describe_aws_error(exc), PERMISSIONS)
        )

    def _client(self):
        return self.fleet.client("ssm", *self.location)

    def _now(self):
        clock = getattr(self.fleet, "server_clock", None)
        now = clock.now() if clock is not None else None
        return now if now is not None else time.time()

    def _read(self):
        """{generation: parameter} of every claim of the run."""
        names = ["%s/%d" % (self.base, n) for n in range(1, MAX_GENERATIONS + 1)]
        try:
            answer = self._client().get_parameters(Names=names)
        except Exception as exc:  # pylint: disable=broad-except
            raise self._fail("read", exc) from None
        found = {}
        for parameter in answer.get("Parameters") or []:
            tail = parameter.get("Name", "").rsplit("/", 1)[-1]
            if tail.isdigit():
                found[int(tail)] = parameter
        return found

    def _document(self, state):
        return json.dumps({"claimant": self.claimant, "state": state, "token": self.token, "run_id": self.run_id, "lz": self.lz}, sort_keys=True)

    def _create(self, name):
        """True when this job created ``name`` (it won), False when another job had (it lost)."""
        ssm = self._client()
        for attempt in range(PUT_ATTEMPTS):
            if attempt:
                self.sleep(PUT_RETRY_SECONDS * attempt)
            try:
                ssm.put_parameter(
                    Name=name,
                    Value=self._document(STARTED),
                    Type="String",
                    Overwrite=False,
                    Description="cms.patching: retention of run %s in landing zone %s, claimed by one job of the run" % (self.run_id, self.lz),
                )
                return True
            except Exception as exc:  # pylint: disable=broad-except
                if error_code(exc) == "ParameterAlreadyExists":
                    # Ours when an earlier attempt of this call was carried out although its answer was a server error.
                    mine = self._read().get(int(name.rsplit("/", 1)[-1]))
                    return bool(mine) and _value(mine).get("token") == self.token
                if not is_transient(exc) or attempt + 1 == PUT_ATTEMPTS:
                    raise self._fail("create", exc, name) from None
        return False  # not reached: the last attempt returns or raises

    # -- the decision --------------------------------------------------------------------------------------------

    def _result(self, won, status, message, parameter=None, holder=None):
        value = _value(parameter) if parameter else {}
        since = _timestamp(parameter.get("LastModifiedDate")) if parameter else None
        self.info = {
            "won": won,
            "status": status,
            "message": message,
            "parameter": (parameter or {}).get("Name") or self.name or "",
            "account_id": self.location[0],
            "region": self.location[1],
            "claimant": self.claimant,
            "held_by": holder if holder is not None else value.get("claimant", ""),
            "state": value.get("state", ""),
            "since": _iso(since),
            "stale_after": self.stale_after,
        }
        return self.info

    def acquire(self):
        """Claim the run's retention, or learn who has it; the claim info (``won`` says whether this job runs retention)."""
        found = self._read()
        now = self._now()
        newest = max(found) if found else 0
        taking_over = None
        if newest:
            parameter = found[newest]
            value = _value(parameter)
            holder, state = value.get("claimant", ""), value.get("state")
            since = _timestamp(parameter.get("LastModifiedDate"))
            age = max(0, int(now - since)) if since is not None else None
            ago = "%ds ago" % age if age is not None else "at an unknown time"
            if state == DONE:
                message = "retention of run %s was claimed by %s and carried out (finished %s, %s): this job does not repeat it" % (
                    self.run_id, holder, ago, self._where(parameter["Name"]))
                return self._result(False, "done", message, parameter)
            if state != FAILED and holder == self.claimant:
                self.name = parameter["Name"]
                message = "retention of run %s was claimed by this job (%s) %s and is carried on (%s)" % (self.run_id, holder, ago, self._where(self.name))
                return self._result(True, "resumed", message, parameter)
            if state != FAILED and (age is None or age < self.stale_after):
                message = (
                    "retention of run %s was claimed by %s %s and is in progress (%s): this job leaves it to that one; a resumed run "
                    "takes the claim over once it is %ds old and still not finished"
                ) % (self.run_id, holder, ago, self._where(parameter["Name"]), self.stale_after)
                return self._result(False, "held", message, parameter)
            if newest >= MAX_GENERATIONS:
                raise FleetError(
                    "retention of run %s was claimed %d times and never finished (SSM parameters %s); find out why in the "
                    "jobs named there, then delete those parameters to claim it anew, or run retention in a new run"
                    % (self.run_id, newest, self._where())
                )
            taking_over = "%s, whose claim %s" % (holder, "failed" if state == FAILED else "was not finished after %s" % ago.replace(" ago", ""))
        name = "%s/%d" % (self.base, newest + 1)
        if self.check_mode:
            self.name = name
            verb = "take over retention of run %s from %s" % (self.run_id, taking_over) if taking_over else "claim retention of run %s" % self.run_id
            return self._result(True, "would_claim", "check mode: this job (%s) would %s (%s)" % (self.claimant, verb, self._where(name)), holder="")
        if self._create(name):
            self.name = name
            if taking_over:
                message = "this job (%s) took over retention of run %s from %s (%s)" % (self.claimant, self.run_id, taking_over, self._where(name))
            else:
                message = "this job (%s) claimed retention of run %s (%s)" % (self.claimant, self.run_id, self._where(name))
            return self._result(True, "claimed", message, {"Name": name, "Value": self._document(STARTED), "LastModifiedDate": now}, holder=self.claimant)
        # Another job created that generation between the read and the create.
        winner = self._read().get(newest + 1) or {"Name": name}
        holder = _value(winner).get("claimant", "another job") if winner.get("Value") else "another job"
        message = "retention of run %s was claimed by %s a moment ago (%s): this job leaves it to that one" % (self.run_id, holder, self._where(name))
        return self._result(False, "held", message, winner, holder=holder)

    def finish(self, ok):
        """Mark the claim done (``ok``) or failed (a resumed run takes it over at once); a sentence when that failed, else None.

        Never fails retention: a claim left ``started`` only makes a resumed run wait ``stale_after`` seconds.
        """
        if not self.info or not self.info["won"] or self.check_mode or not self.name:
            return None
        state = DONE if ok else FAILED
        ssm = self._client()
        for attempt in range(PUT_ATTEMPTS):
            if attempt:
                self.sleep(PUT_RETRY_SECONDS * attempt)
            try:
                # Overwrite of the job's own generation with the same kind of value: sending it again changes nothing more.
                ssm.put_parameter(Name=self.name, Value=self._document(state), Type="String", Overwrite=True)
                self.info["state"] = state
                return None
            except Exception as exc:  # pylint: disable=broad-except
                if not is_transient(exc) or attempt + 1 == PUT_ATTEMPTS:
                    return "retention of run %s ended, but its claim could not be marked %s (%s): %s; a resumed run takes it over after %ds" % (
                        self.run_id, state, self._where(self.name), describe_aws_error(exc), self.stale_after)
        return None
